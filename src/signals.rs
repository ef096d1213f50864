//! Stop signals: SIGINT, and SIGTERM (which CI runners and Kubernetes send). `run` drains on
//! the first and cuts off on the second; `record` stops its proxy.
//!
//! The signals are caught from the first instant of a command that handles them ([`install`]),
//! on a thread of their own: a signal during the preflight is not the default death (with only
//! `plan.json` left), and one at 20,000 requests/s is seen at once, not when a saturated
//! runtime next polls a task. The pacer reads [`received`] before every send.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{LazyLock, Once};
use tokio::sync::watch;

/// Signals received since [`install`]: lock-free, for the pacer's read before every send.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// The same count, for those who wait on it (a watch's read takes a lock).
static COUNT: LazyLock<watch::Sender<u32>> = LazyLock::new(|| watch::channel(0).0);
static INSTALL: Once = Once::new();

/// Starts catching SIGINT and SIGTERM for the rest of the process (once; later calls do
/// nothing). Until then a signal has its default effect.
pub fn install() {
    INSTALL.call_once(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || listen(ready_tx));
        // Wait until the handlers are in place, so no signal falls between.
        if spawned.is_ok() {
            let _ = ready_rx.recv();
        }
    });
}

fn listen(ready: std::sync::mpsc::Sender<()>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let _ = ready.send(());
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                note();
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ready.send(());
            while tokio::signal::ctrl_c().await.is_ok() {
                note();
            }
        }
    });
}

fn note() {
    let n = RECEIVED.fetch_add(1, SeqCst) + 1;
    COUNT.send_replace(n);
}

/// How many stop signals have arrived (0 before [`install`]).
pub fn received() -> u32 {
    RECEIVED.load(SeqCst)
}

/// Stop signals, one at a time, counted from `seen`.
pub struct Stops {
    rx: watch::Receiver<u32>,
    seen: u32,
}

impl Stops {
    /// The next signal not yet taken (at once if one already arrived).
    pub async fn recv(&mut self) {
        let seen = self.seen;
        if self.rx.wait_for(|n| *n > seen).await.is_err() {
            std::future::pending::<()>().await;
        }
        self.seen = seen + 1;
    }

    /// Takes a signal that arrived, if one did.
    pub fn try_recv(&mut self) -> bool {
        let arrived = received() > self.seen;
        self.seen += u32::from(arrived);
        arrived
    }
}

/// Every stop signal since [`install`], those already arrived included: a command that meets
/// its loop late still sees the signal sent while it set up.
pub fn stop_signals() -> Stops {
    install();
    Stops {
        rx: COUNT.subscribe(),
        seen: 0,
    }
}

/// Resolves on the next SIGINT or SIGTERM from now.
pub async fn wait_for_stop() {
    install();
    let mut s = Stops {
        rx: COUNT.subscribe(),
        seen: received(),
    };
    s.recv().await
}
