//! Exit codes of the whole tool, as `DESIGN.md` defines them.

/// The process exit status. One value per documented outcome; nothing else is ever returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The verdict passed.
    Pass = 0,
    /// The verdict failed: conformance, routing, SLO, errors or regression.
    VerdictFailed = 1,
    /// Usage or configuration error (bad scenario, corpus, flags).
    Usage = 2,
    /// The target did not answer, or infrastructure failed.
    Unreachable = 3,
    /// The harness could not keep its own schedule: the measurement is invalid.
    Invalid = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Panics seen in any thread of the process (pacer, collector, taps, request tasks).
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Installs a panic hook that notes every panic, so that no run can fall through to "pass"
/// after one: the run's verdict carries an `internal_error` finding and exits 3.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        let message = format!("thread '{thread}' panicked{at}: {what}");
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
        eprintln!("internal error: the harness panicked; this is a bug, and the run cannot pass");
        default(info);
    }));
}

/// Every panic noted so far.
pub fn panics() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
