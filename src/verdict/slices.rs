//! The slices of one schedule, audited side by side once merged: how each kept the common
//! instant zero, its own lateness and CPU, and what its clock did. In: one [`SliceAudit`] per
//! slice (the results stage reads them from the folders). Out: the findings they call for.

use super::{Finding, FindingKind, Severity};
use serde::{Deserialize, Serialize};

/// One slice of a merged run, as its folder shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SliceAudit {
    /// K of K/N.
    pub index: u32,
    pub count: u32,
    /// The slice's run folder.
    pub dir: String,
    /// Requests it recorded.
    pub requests: u64,
    /// The intended offset of its first send from the common instant zero, ms.
    pub first_intended_ms: Option<f64>,
    /// How late its first send went against that intended instant, ms: a slice whose process
    /// started after the instant zero shows it here.
    pub first_send_late_ms: Option<f64>,
    /// Its send lateness p99, ms (from its own summary; `None`: the slice wrote none).
    pub lateness_p99_ms: Option<f64>,
    /// The CPU its process used, in cores, and its busiest thread's busy share.
    pub cpu_cores_busy: Option<f64>,
    pub busiest_thread_busy: Option<f64>,
    /// Where its records place its clock's zero against the instant zero, ms: how far this
    /// host's wall clock moved against its monotonic clock between taking the instant and the
    /// sends (a step or a slew during the run). Skew between hosts cannot show here: each
    /// host reads the instant zero on its own clock.
    pub clock_offset_ms: Option<f64>,
    /// The spread of that offset over its records, ms.
    pub clock_spread_ms: Option<f64>,
}

impl SliceAudit {
    fn name(&self) -> String {
        format!("slice {}/{} ({})", self.index, self.count, self.dir)
    }

    /// One line for the console and the Markdown.
    pub fn line(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.3} ms"));
        let share = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{:.0} %", x * 100.0));
        format!(
            "{}: {} requests; first send {} late; lateness p99 {}; CPU {} cores, busiest thread \
             {}; clock moved {}",
            self.name(),
            self.requests,
            ms(self.first_send_late_ms),
            ms(self.lateness_p99_ms),
            self.cpu_cores_busy
                .map_or("-".to_owned(), |c| format!("{c:.2}")),
            share(self.busiest_thread_busy),
            ms(self.clock_spread_ms),
        )
    }
}

/// The findings of the slices' audit: a slice that started late against the common instant (by
/// more than the lateness bound) makes the merged load another than the schedule's: the
/// measurement is invalid. A clock that moved during a slice is a warning: latencies are timed
/// on the monotonic clock, only the slices' alignment is in doubt.
pub fn findings(slices: &[SliceAudit], bound_ms: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in slices {
        if let Some(late) = s.first_send_late_ms.filter(|l| *l > bound_ms) {
            let m = format!(
                "{}: its first send went {late:.1} ms after its intended instant (bound \
                 {bound_ms} ms): the slice started late against the common instant zero, so the \
                 merged load is not the schedule's. Start the slices earlier (a later \
                 --start-at) or find what delayed this one",
                s.name()
            );
            out.push(Finding::new(
                FindingKind::SliceLate,
                Severity::Error,
                None,
                m,
            ));
        }
        let moved = [s.clock_offset_ms.map(f64::abs), s.clock_spread_ms]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max);
        if moved > bound_ms {
            let m = format!(
                "{}: its wall clock moved {moved:.1} ms against its monotonic clock during the \
                 run (an NTP step or slew): its latencies stand, its alignment with the other \
                 slices is uncertain by as much",
                s.name()
            );
            out.push(Finding::new(
                FindingKind::SliceClock,
                Severity::Warning,
                None,
                m,
            ));
        }
    }
    out
}
