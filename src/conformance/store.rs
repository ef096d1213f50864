//! The snapshot store: `<dir>/<corpus>/<feature>/<case>.json`, a `<case>.pending.json` beside
//! it for a person to accept or reject, and what accepting one would change.

use super::Snapshot;
use std::path::{Path, PathBuf};

/// Where a case's snapshot lives.
pub fn snapshot_path(dir: &Path, corpus: &str, feature: &str, id: &str) -> PathBuf {
    dir.join(corpus).join(feature).join(format!("{id}.json"))
}

/// The pending file beside a snapshot.
pub fn pending_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("pending.json")
}

pub(super) fn write_pending(snapshot: &Path, s: &Snapshot) -> std::io::Result<()> {
    if let Some(parent) = snapshot.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(s).expect("snapshots serialise") + "\n";
    std::fs::write(pending_path(snapshot), text)
}

/// Every pending file under `dir` whose path contains `filter`.
pub fn pending(dir: &Path, filter: Option<&str>) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(".pending.json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.retain(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)));
    out.sort();
    out
}

/// The snapshot a pending file would replace.
pub fn accepted_path(pending: &Path) -> PathBuf {
    let name = pending.file_name().unwrap_or_default().to_string_lossy();
    pending.with_file_name(name.replace(".pending.json", ".json"))
}

/// What changes if a pending file is accepted: one line per differing field.
pub fn describe(pending: &Path) -> String {
    let read = |p: &Path| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    let (Some(new), old) = (read(pending), read(&accepted_path(pending))) else {
        return format!("{}: unreadable", pending.display());
    };
    let Some(old) = old else {
        return format!(
            "{}: new snapshot\n{}",
            pending.display(),
            serde_json::to_string_pretty(&new).unwrap_or_default()
        );
    };
    let mut out = format!("{}:\n", pending.display());
    for (k, v) in new.as_object().into_iter().flatten() {
        if old.get(k) != Some(v) {
            out.push_str(&format!(
                "  {k}:\n    - {}\n    + {v}\n",
                old.get(k).cloned().unwrap_or_default()
            ));
        }
    }
    out
}
