//! A running `duo-harness record` (test tree only): started on a free loopback port, stopped
//! with SIGINT, its corpus read back.

use super::bin;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `duo-harness record`: stopped with SIGINT by [`Recorder::stop`], killed if dropped
/// before.
pub struct Recorder {
    child: Child,
    pub url: String,
    pub out: PathBuf,
}

impl Recorder {
    pub fn start(upstream: &str, out: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["record", "--upstream", upstream, "--listen", "127.0.0.1:0"];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let mut child = Command::new(bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let info = super::first_json_line(&mut child);
        let url = info["listen"].as_str().unwrap().to_owned();
        Self {
            child,
            url,
            out: out.to_owned(),
        }
    }

    /// Stops the proxy; returns its exit code and stderr, and the corpus lines.
    /// Waits (up to 10 s) until the corpus file holds `n` lines, the way a client would poll.
    #[allow(dead_code)]
    pub fn wait_for_lines(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if text.lines().count() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn stop(self) -> (i32, String, Vec<Value>) {
        self.stop_with(libc::SIGINT)
    }

    /// As [`stop`](Self::stop), with `signal`.
    pub fn stop_with(mut self, signal: libc::c_int) -> (i32, String, Vec<Value>) {
        // SAFETY: kill sends a signal to the child we spawned.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (status.code().unwrap_or(-1), err, lines)
    }
}

/// A test that fails before [`Recorder::stop`] leaves no proxy behind.
impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
