//! The harness's own receive-side delay, measured while the run goes.
//!
//! A response chunk is timed when the task reading it runs, not when it reached the socket:
//! between the two lie the runtime's wake-up path (the I/O driver noticing readiness, the task
//! waiting for a free worker) and any time the OS kept the worker off a core. This probe walks
//! that same path: a thread of its own sends a loopback datagram to each of one receiving task
//! per runtime worker on a fixed schedule, one every [`PERIOD`], stamped with its *intended*
//! instant; each task notes how long after the stamp it read it. Stamping the schedule, not the
//! send, keeps a stall of the whole process (a paused VM, a stopped process) in the figures:
//! the sender stalls too, and sends what it owes late. The distribution bounds how late any
//! chunk of the run can have been read, so how far TTFT, ITL and E2E can be off.
//!
//! In: the runtime (the tasks run on the harness's own). Out: a [`Metric`] of delays in ms.
//! Traffic stays on 127.0.0.1.

use super::hist::Metric;
use std::net::UdpSocket as StdSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// How often each receiving task is probed.
pub const PERIOD: Duration = Duration::from_millis(4);
/// Ticks a stalled sender still sends once it runs again (a second's worth).
const MAX_OWED: u32 = 250;

/// A running probe; [`Probe::finish`] stops it and returns what it measured.
pub struct Probe {
    stop_sender: Arc<AtomicBool>,
    stop_tasks: watch::Sender<bool>,
    sender: Option<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<Metric>>,
}

/// Starts `receivers` probe tasks (one per runtime worker) on the current runtime.
pub async fn start(receivers: usize) -> std::io::Result<Probe> {
    let epoch = Instant::now();
    let (stop_tasks, stopped) = watch::channel(false);
    let mut targets = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..receivers.max(1) {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        targets.push(socket.local_addr()?);
        tasks.push(tokio::spawn(receive(socket, epoch, stopped.clone())));
    }
    let out = StdSocket::bind("127.0.0.1:0")?;
    let stop_sender = Arc::new(AtomicBool::new(false));
    let stop = stop_sender.clone();
    let sender = std::thread::Builder::new()
        .name("audit-probe".into())
        .spawn(move || {
            let _ = crate::clock::precise_thread();
            let mut tick = epoch;
            while !stop.load(Ordering::Relaxed) {
                tick += PERIOD;
                crate::clock::sleep_until(tick);
                // After a stall, the ticks owed go at once, each with its own instant; past
                // MAX_OWED the oldest are dropped (the stall still shows in the rest).
                let now = Instant::now();
                if now.saturating_duration_since(tick) > PERIOD * MAX_OWED {
                    tick = now - PERIOD * MAX_OWED;
                }
                let stamp = tick.duration_since(epoch).as_nanos() as u64;
                for t in &targets {
                    let _ = out.send_to(&stamp.to_le_bytes(), t);
                }
            }
        })?;
    Ok(Probe {
        stop_sender,
        stop_tasks,
        sender: Some(sender),
        tasks,
    })
}

async fn receive(socket: UdpSocket, epoch: Instant, mut stop: watch::Receiver<bool>) -> Metric {
    let mut delays = Metric::default();
    let mut buf = [0u8; 16];
    loop {
        tokio::select! {
            r = socket.recv(&mut buf) => {
                let now = epoch.elapsed().as_nanos() as u64;
                if let Ok(8) = r {
                    let stamp = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    delays.record(now.saturating_sub(stamp) as f64 / 1e6);
                }
            }
            _ = stop.wait_for(|s| *s) => return delays,
        }
    }
}

impl Probe {
    /// Stops the probe; the delays of every receiving task, pooled.
    pub async fn finish(mut self) -> Metric {
        self.stop_sender.store(true, Ordering::Relaxed);
        let _ = self.stop_tasks.send(true);
        if let Some(t) = self.sender.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let mut all = Metric::default();
        for t in self.tasks.drain(..) {
            if let Ok(m) = t.await {
                all.merge(&m);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle runtime reads its probes within a few milliseconds; a worker blocked on purpose
    /// shows as a delay about as long as the block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocked_worker_shows_as_receive_delay() {
        let probe = start(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Block the only worker for 30 ms, twice (the test body itself runs off the workers).
        for _ in 0..2 {
            let block = || std::thread::sleep(Duration::from_millis(30));
            tokio::spawn(async move { block() }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let m = probe.finish().await;
        let p = m.percentiles();
        assert!(p.n > 10, "{p:?}");
        assert!(p.max.unwrap() >= 25.0, "{p:?}");
        assert!(p.p50.unwrap() < 25.0, "{p:?}");
    }
}
