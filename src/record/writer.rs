//! Durable corpus output: each line is appended whole with one write and flushed, so a crash or
//! a kill leaves at most a torn last line (which reading detects and reports). A write that
//! fails (a full disk) is undone back to the last line boundary, so no later line is glued to a
//! fragment. Output rotates by size: `corpus.jsonl`, then `corpus.1.jsonl`, `corpus.2.jsonl`...
//! An existing corpus is never truncated: [`CorpusWriter::open`] refuses it, or appends to it.
//! Files are created readable by their owner only (they hold developers' code and prompts).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct CorpusWriter {
    base: PathBuf,
    rotate_bytes: Option<u64>,
    file: File,
    /// Bytes of the current part: the last line boundary.
    written: u64,
    part: u32,
    /// Lines already in the corpus when it was opened for appending.
    existing_lines: u64,
}

/// The path of part `n` of a rotated corpus (`n = 0` is the base path).
pub fn part_path(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return base.to_owned();
    }
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let ext = base
        .extension()
        .map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    base.with_file_name(format!("{stem}.{n}{ext}"))
}

impl CorpusWriter {
    /// Creates (truncates) `base`, a file of the harness's own run folder (`taps.ndjson`);
    /// `rotate_bytes` starts a new part once a part would pass it.
    pub fn create(base: &Path, rotate_bytes: Option<u64>) -> std::io::Result<Self> {
        Ok(Self {
            file: crate::files::create_private(base)?,
            base: base.to_owned(),
            rotate_bytes,
            written: 0,
            part: 0,
            existing_lines: 0,
        })
    }

    /// Opens a corpus to record into. A corpus that already holds lines is refused unless
    /// `append` is set, and then appended to (after its last part); it is never truncated.
    pub fn open(base: &Path, rotate_bytes: Option<u64>, append: bool) -> std::io::Result<Self> {
        let mut parts = Vec::new();
        while let Ok(meta) = std::fs::metadata(part_path(base, parts.len() as u32)) {
            parts.push(meta.len());
        }
        let held: u64 = parts.iter().sum();
        if held > 0 && !append {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} already holds a corpus ({held} bytes): choose another --out, or pass \
                     --force to append to it",
                    base.display()
                ),
            ));
        }
        let existing_lines = (0..parts.len() as u32)
            .map(|n| {
                std::fs::read(part_path(base, n))
                    .map(|b| memchr::memchr_iter(b'\n', &b).count() as u64)
            })
            .sum::<std::io::Result<u64>>()?;
        let part = parts.len().saturating_sub(1) as u32;
        let path = part_path(base, part);
        let file = crate::files::append_private(&path)?;
        let held = std::fs::read(&path)?;
        // A torn last line left by a crash (unreadable, and skipped by every reader) is cut back
        // to the last line boundary, so the next line is not glued to it.
        let written = memchr::memrchr(b'\n', &held).map_or(0, |i| i as u64 + 1);
        if written < held.len() as u64 {
            file.set_len(written)?;
        }
        Ok(Self {
            file,
            base: base.to_owned(),
            rotate_bytes,
            written,
            part,
            existing_lines,
        })
    }

    /// Lines the corpus held before this writer appended to it.
    pub fn existing_lines(&self) -> u64 {
        self.existing_lines
    }

    /// Appends one line (a newline is added) in a single write, then flushes it to the OS.
    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if self
            .rotate_bytes
            .is_some_and(|max| self.written > 0 && self.written + buf.len() as u64 > max)
        {
            self.part += 1;
            self.file = crate::files::append_private(&part_path(&self.base, self.part))?;
            self.written = self.file.metadata()?.len();
        }
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.flush()) {
            // Undo a partial write: the file ends on the last whole line again.
            let _ = self.file.set_len(self.written);
            return Err(e);
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Every part written so far.
    pub fn parts(&self) -> Vec<PathBuf> {
        (0..=self.part).map(|n| part_path(&self.base, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_with_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c.jsonl");
        let mut w = CorpusWriter::create(&base, Some(25)).unwrap();
        for i in 0..5 {
            w.append(&format!("{{\"line\":{i}}}")).unwrap(); // 11 bytes with the newline
        }
        let parts = w.parts();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], d.path().join("c.1.jsonl"));
        let all: String = parts
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(all.lines().count(), 5);
        assert!(parts
            .iter()
            .all(|p| std::fs::read_to_string(p).unwrap().ends_with('\n')));
    }

    #[test]
    fn an_existing_corpus_is_refused_or_appended_never_truncated() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c.jsonl");
        std::fs::write(&base, "{\"line\":0}\n{\"torn\"").unwrap();
        let e = CorpusWriter::open(&base, None, false).err().unwrap();
        assert!(e.to_string().contains("--force"), "{e}");
        let mut w = CorpusWriter::open(&base, None, true).unwrap();
        assert_eq!(w.existing_lines(), 1);
        w.append("{\"line\":1}").unwrap();
        let text = std::fs::read_to_string(&base).unwrap();
        assert_eq!(text, "{\"line\":0}\n{\"line\":1}\n");
    }
}
