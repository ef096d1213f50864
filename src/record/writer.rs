//! Durable corpus output: each line is appended whole with one write and flushed, so a crash or
//! a kill leaves at most a torn last line (which reading detects and reports). Output rotates by
//! size: `corpus.jsonl`, then `corpus.1.jsonl`, `corpus.2.jsonl`...

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct CorpusWriter {
    base: PathBuf,
    rotate_bytes: Option<u64>,
    file: File,
    written: u64,
    part: u32,
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
    /// Creates (truncates) `base`; `rotate_bytes` starts a new part once a part would pass it.
    pub fn create(base: &Path, rotate_bytes: Option<u64>) -> std::io::Result<Self> {
        Ok(Self {
            file: File::create(base)?,
            base: base.to_owned(),
            rotate_bytes,
            written: 0,
            part: 0,
        })
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
            self.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(part_path(&self.base, self.part))?;
            self.written = 0;
        }
        self.file.write_all(&buf)?;
        self.file.flush()?;
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
}
