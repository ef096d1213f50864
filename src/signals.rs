//! Stop signals: SIGINT, and SIGTERM (which CI runners and Kubernetes send). `run` drains on
//! the first and cuts off on the second; `record` stops its proxy.

use tokio::sync::mpsc;

/// SIGINT and SIGTERM (CI runners and Kubernetes send the latter), one message per signal.
pub fn stop_signals() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
        #[cfg(not(unix))]
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Resolves on the next SIGINT or SIGTERM.
pub async fn wait_for_stop() {
    let _ = stop_signals().recv().await;
}
