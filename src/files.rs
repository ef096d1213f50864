//! Writing the harness's own files: run files and corpora hold developers' code and prompts, so
//! they are created readable by their owner only; whole documents (`summary.json`, reports) are
//! written to a temporary file and renamed over the target, so a reader never sees half of one
//! and a full disk leaves the previous version, not a fragment.
//!
//! Shared by every stage that writes; depends on nothing of the crate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn private(o: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Creates (or truncates) `path`, readable and writable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    private(OpenOptions::new().write(true).create(true).truncate(true)).open(path)
}

/// Opens `path` for appending, creating it readable by its owner only.
pub fn append_private(path: &Path) -> std::io::Result<File> {
    private(OpenOptions::new().append(true).create(true)).open(path)
}

/// The temporary sibling a document is written to before the rename.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temporary file, flushed, then renamed), owner-only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path);
    let written = create_private(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates a folder and its parents; the last one readable by its owner only when new.
pub fn create_dir_private(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Refuses a folder that already holds something: a run (or a capacity search) writes its
/// documents into a folder of its own, never beside another run's, so no folder can hold a new
/// plan next to an old summary. A missing or empty folder is fine.
pub fn refuse_used_dir(path: &Path, what: &str) -> Result<(), String> {
    let used = std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
    match used {
        true => Err(format!(
            "{} already holds files: a {what} writes into a folder of its own; choose another \
             --out, or remove that folder",
            path.display()
        )),
        false => Ok(()),
    }
}

/// Writes a JSON document atomically (pretty-printed, owner-only), the harness's own secrets
/// scrubbed from it first.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, crate::redact::known(&text).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_and_stay_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("summary.json");
        write_atomic(&p, b"{\"a\":1}").unwrap();
        write_atomic(&p, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":2}");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
