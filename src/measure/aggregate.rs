//! Folds request records into per-feature distributions as they arrive, so a run of any length
//! holds histograms, not samples.
//!
//! In: [`RequestRecord`]s, one at a time, and the per-feature SLOs. Out: an [`Aggregate`]:
//! counts by disposition and error class, one [`Metric`] per (feature, latency metric), send
//! lateness, output tokens, SLO hits and the measured window, which `summary` turns into
//! `summary.json` and `histograms.json`.

use super::hist::Metric;
use super::{Disposition, ErrorClass, RequestRecord, TokenSource};
use crate::plan::Slo;
use std::collections::BTreeMap;

/// Request-error messages kept per feature for the findings; the rest are counted.
pub const ERROR_MESSAGES_KEPT: usize = 20;

/// One feature's figures (warm-up requests excluded, except from `warmup`).
#[derive(Debug, Clone, Default)]
pub struct FeatureAgg {
    /// Completed requests (successful or failed), cut-off ones not included.
    pub requests: u64,
    /// Requests the gateway answered with a 2xx, whatever followed (a stream cut after its
    /// start was still served by some model: what the routing checks judge).
    pub answered: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    pub cut_off: u64,
    pub skipped: u64,
    /// Warm-up requests, sent and recorded but left out of every other figure.
    pub warmup: u64,
    pub ttft: Metric,
    pub ttft_from_intended: Metric,
    /// Gaps between consecutive content chunks, pooled over requests.
    pub itl: Metric,
    pub tpot: Metric,
    pub e2e: Metric,
    pub queue_wait: Metric,
    pub output_tokens: u64,
    pub tokens_estimated: u64,
    pub multi_token_chunks: u64,
    /// Successful requests that met every bound of the feature's SLO.
    pub slo_met: u64,
    /// Successful requests that missed the SLO: the smallest receive-side delay of the harness
    /// that would explain the miss (their own send lateness already taken off). What the
    /// self-audit needs to tell whether its own delay could have decided the SLO verdict.
    pub slo_miss_correction: Metric,
    /// Requests that met an SLO with a TPOT bound: their span's headroom under it, ms
    /// ((bound − TPOT) × (tokens − 1)); a harness delay beyond it could hide a miss.
    pub slo_tpot_headroom: Metric,
    /// The fewest output tokens of a request with a TPOT figure (bounds TPOT's error).
    pub min_tpot_tokens: Option<u64>,
    /// Successful requests by where their output token count came from.
    pub token_sources: BTreeMap<TokenSource, u64>,
    /// Reads that carried content, and those that carried more than one content event.
    pub content_reads: u64,
    pub multi_event_reads: u64,
    /// Agent Platform sessions (gRPC lines), when the feature has any.
    pub sessions: Option<super::session::SessionAgg>,
    /// Successful answers: whole or streamed, how they ended, which model served them.
    pub answers: super::answers::Answers,
    /// The same figures per stream mode (`summary.json` shows them where a feature has both).
    pub modes: BTreeMap<super::StreamMode, ModeMetrics>,
    /// Requests that met a pooled connection the server had closed, and how their retry went.
    pub stale: super::answers::StaleConnections,
    /// Successful requests the SLO could not judge: every bound it sets is one the answer
    /// cannot measure (TPOT of an answer that came whole).
    pub slo_unjudged: u64,
    /// The first request errors: class and message (`id (METHOD path): class: message`).
    pub error_messages: Vec<(ErrorClass, String)>,
    /// Per corpus case (interaction id): what its measured sends came to (the JUnit cases).
    pub cases: BTreeMap<String, CaseTally>,
}

impl FeatureAgg {
    /// A failed request: its class counted, its message kept while there are few.
    fn add_error(&mut self, r: &RequestRecord, e: &super::RequestError) {
        self.errors += 1;
        *self.errors_by_class.entry(e.class).or_default() += 1;
        if self.error_messages.len() < ERROR_MESSAGES_KEPT {
            let m = format!(
                "request '{}' ({} {}): {}: {}",
                r.id,
                r.method,
                r.path,
                e.class.name(),
                e.message
            );
            self.error_messages.push((e.class, m));
        }
    }

    /// A successful request: its figures recorded, its tokens counted, its SLO judged.
    fn add_ok(&mut self, r: &RequestRecord, slo: Option<Slo>) {
        let record = |m: &mut Metric, v: Option<f64>| v.into_iter().for_each(|v| m.record(v));
        let (ttft, tpot, e2e) = (r.ttft_ms(), r.tpot_ms(), r.e2e_ms());
        record(&mut self.ttft, ttft);
        record(&mut self.ttft_from_intended, r.ttft_from_intended_ms());
        record(&mut self.tpot, tpot);
        record(&mut self.e2e, e2e);
        let mode = self
            .modes
            .entry(super::StreamMode::of(r.stream))
            .or_default();
        record(&mut mode.ttft, ttft);
        record(&mut mode.tpot, tpot);
        record(&mut mode.e2e, e2e);
        r.content_gaps_ms()
            .into_iter()
            .for_each(|g| self.itl.record(g));
        self.output_tokens += r.output_tokens.unwrap_or(0);
        self.tokens_estimated += u64::from(r.tokens_estimated);
        self.content_reads += r.chunks.iter().filter(|c| !c.content.is_empty()).count() as u64;
        self.multi_event_reads += r.multi_event_reads;
        if let Some(src) = r.token_source {
            *self.token_sources.entry(src).or_default() += 1;
        }
        self.multi_token_chunks += u64::from(r.multi_token_chunks);
        if r.tpot_ms().is_some() {
            let n = r.output_tokens.unwrap_or(0);
            self.min_tpot_tokens = Some(self.min_tpot_tokens.map_or(n, |m| m.min(n)));
        }
        self.answers.add(r);
        match slo.map(|s| standing(&s, r)) {
            None => self.slo_met += 1,
            Some(SloStanding::Unjudged) => self.slo_unjudged += 1,
            Some(SloStanding::Met { tpot_headroom_ms }) => {
                self.slo_met += 1;
                if let Some(h) = tpot_headroom_ms {
                    self.slo_tpot_headroom.record(h);
                }
            }
            Some(SloStanding::Missed { correction_ms }) => {
                if let Some(c) = correction_ms {
                    self.slo_miss_correction.record(c);
                }
            }
        }
    }
}

/// One stream mode's figures of a feature: measured, successful requests.
#[derive(Debug, Clone, Default)]
pub struct ModeMetrics {
    pub ttft: Metric,
    pub tpot: Metric,
    pub e2e: Metric,
}

/// One corpus case's measured sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseTally {
    pub requests: u64,
    pub errors: u64,
    pub cut_off: u64,
    /// The first error: `class: message`.
    pub first_error: Option<String>,
    /// An Agent Platform session's first difference from its case's `expect`.
    pub first_mismatch: Option<String>,
}

/// The whole run's figures.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub features: BTreeMap<String, FeatureAgg>,
    /// Send lateness of measured requests.
    pub lateness: Metric,
    /// Requests sent (warm-up included).
    pub sent: u64,
    /// Warm-up requests that failed (left out of the verdict, reported as a warning).
    pub warmup_errors: u64,
    /// Measured (non-warm-up) sends (counted in `sends`): first and last send, last end, ms after
    /// the run start.
    pub first_sent_ms: Option<f64>,
    pub last_sent_ms: Option<f64>,
    pub last_end_ms: Option<f64>,
    /// When measured sends were meant to go, and when they went.
    pub sends: SendWindows,
    /// The run second by second (what the report draws over time).
    pub timeline: super::timeline::Timeline,
    slos: BTreeMap<String, Slo>,
}

/// The delivered arrival process beside the intended one, per second of the run.
#[derive(Debug, Clone, Default)]
pub struct SendWindows {
    /// Second of the run → (sends meant for it, sends whose task started in it).
    pub windows: BTreeMap<u64, (u64, u64)>,
    /// First and last intended instant of a measured send, ms after the run start.
    pub first_intended_ms: Option<f64>,
    pub last_intended_ms: Option<f64>,
    pub count: u64,
}

impl SendWindows {
    /// Counts a measured send in the second it was meant for and the second its task started.
    fn add(&mut self, r: &RequestRecord) {
        let second = |ms: f64| (ms.max(0.0) / 1000.0) as u64;
        let started = r.intended_ms + r.lateness_ms.max(0.0);
        self.windows.entry(second(r.intended_ms)).or_default().0 += 1;
        self.windows.entry(second(started)).or_default().1 += 1;
        let (a, b) = (&mut self.first_intended_ms, &mut self.last_intended_ms);
        *a = Some(a.map_or(r.intended_ms, |t| t.min(r.intended_ms)));
        *b = Some(b.map_or(r.intended_ms, |t| t.max(r.intended_ms)));
        self.count += 1;
    }

    /// The schedule's own rate over the measured sends: (sends − 1) over the span from the
    /// first to the last intended instant (what the achieved rate is held against).
    pub fn intended_rps(&self) -> Option<f64> {
        rate(self.count, self.first_intended_ms?, self.last_intended_ms?)
    }

    /// The schedule's mean gap between measured sends, ms.
    pub fn mean_gap_ms(&self) -> Option<f64> {
        self.intended_rps().map(|r| 1000.0 / r)
    }
}

/// Waits on the runtime that can delay a request's TTFT or E2E: its connection (the request
/// goes out late, and the server starts late) and the read of the chunk itself (writing to a
/// fresh socket does not wait, and a late read of the head moves no chunk's arrival). A gap
/// between two chunks carries one delay, either way.
pub const RUNTIME_WAITS: f64 = 2.0;

/// The rate of `n` sends from the first at `first_ms` to the last at `last_ms`: (n − 1) / span.
fn rate(n: u64, first_ms: f64, last_ms: f64) -> Option<f64> {
    (n >= 2 && last_ms > first_ms).then(|| (n - 1) as f64 / ((last_ms - first_ms) / 1000.0))
}

/// How a successful request stands against its SLO.
enum SloStanding {
    Met {
        /// Headroom of the span under the TPOT bound, when there is one.
        tpot_headroom_ms: Option<f64>,
    },
    /// Missed: the harness receive-side delay that would explain the miss (`None`: none would).
    Missed { correction_ms: Option<f64> },
    /// Nothing to judge: the SLO bounds only what this answer cannot measure.
    Unjudged,
}

/// Whether a request counts toward goodput: it succeeded and met every bound of the SLO.
pub fn meets(slo: &Slo, r: &RequestRecord) -> bool {
    r.ok() && matches!(standing(slo, r), SloStanding::Met { .. })
}

/// Judges one successful request against its SLO (TTFT and E2E from the intended send).
///
/// A miss is explained by the harness when taking off the request's own send lateness and a
/// receive-side delay `d` per wait makes it meet: TTFT and E2E shrink by up to
/// [`RUNTIME_WAITS`] × `d`, the TPOT span (E2E − TTFT) moves by up to `d` either way. The
/// smallest such `d` is the correction.
fn standing(slo: &Slo, r: &RequestRecord) -> SloStanding {
    // An answer that came whole has no time between tokens: its TPOT bound is not judged.
    let slo = &Slo {
        tpot_ms: slo.tpot_ms.filter(|_| !r.single_event()),
        ..*slo
    };
    if slo.ttft_ms.or(slo.tpot_ms).or(slo.e2e_ms).is_none() {
        return SloStanding::Unjudged;
    }
    let late_by = r.sent_ms - r.intended_ms;
    let (ttft, e2e, tpot) = (
        r.ttft_from_intended_ms(),
        r.e2e_ms().map(|e| e + late_by),
        r.tpot_ms(),
    );
    let within =
        |bound: Option<f64>, v: Option<f64>| bound.is_none_or(|b| v.is_some_and(|v| v <= b));
    let span_tokens = r.output_tokens.filter(|n| *n > 1).map(|n| (n - 1) as f64);
    if within(slo.ttft_ms, ttft) && within(slo.tpot_ms, tpot) && within(slo.e2e_ms, e2e) {
        let tpot_headroom_ms = slo
            .tpot_ms
            .zip(tpot)
            .zip(span_tokens)
            .map(|((b, t), n)| (b - t) * n);
        return SloStanding::Met { tpot_headroom_ms };
    }
    // Each bound's excess once the request's own send lateness is taken off; `None` when the
    // figure is missing (no content: no harness delay explains that).
    let excess = |bound: Option<f64>, v: Option<f64>, scale: f64, own: f64| match bound {
        None => Some(0.0),
        Some(b) => v.map(|v| ((v - own - b) * scale).max(0.0)),
    };
    let own = r.lateness_ms.max(0.0);
    let correction_ms = [
        excess(slo.ttft_ms, ttft, 1.0 / RUNTIME_WAITS, own),
        excess(slo.e2e_ms, e2e, 1.0 / RUNTIME_WAITS, own),
        match slo.tpot_ms {
            None => Some(0.0),
            Some(_) => span_tokens.and_then(|n| excess(slo.tpot_ms, tpot, n, 0.0)),
        },
    ]
    .into_iter()
    .try_fold(0.0f64, |acc, e| e.map(|e| acc.max(e)));
    SloStanding::Missed { correction_ms }
}

impl Aggregate {
    pub fn new(slos: BTreeMap<String, Slo>) -> Self {
        Self {
            slos,
            ..Self::default()
        }
    }

    /// The SLO of a feature: its own, else (chat sub-features) General Chat's, else the
    /// scenario's `[slo.default]`, which covers every feature the scenario does not name.
    pub fn slo(&self, feature: &str) -> Option<&Slo> {
        self.slos
            .get(feature)
            .or_else(|| self.slos.get(crate::features::fallback(feature)?))
            .or_else(|| self.slos.get(crate::plan::DEFAULT_SLO))
    }

    /// Folds one record in.
    pub fn add(&mut self, r: &RequestRecord) {
        let slo = self.slo(&r.feature).copied();
        let f = self.features.entry(r.feature.clone()).or_default();
        if r.disposition != Disposition::Skipped {
            self.sent += 1;
        }
        if r.warmup {
            f.warmup += 1;
            self.warmup_errors += u64::from(r.failed());
            return;
        }
        match r.disposition {
            Disposition::Skipped => {
                f.skipped += 1;
                return;
            }
            Disposition::CutOff => f.cut_off += 1,
            Disposition::Completed => {
                f.requests += 1;
                f.answered += u64::from(r.status.is_some_and(|s| (200..300).contains(&s)));
            }
        }
        f.stale.add(r);
        if let (Disposition::Completed, Some(s)) = (r.disposition, &r.session) {
            let agg = f.sessions.get_or_insert_with(Default::default);
            agg.add(&r.id, r.end_ms, s);
        }
        let case = f.cases.entry(r.id.clone()).or_default();
        case.requests += 1;
        case.cut_off += u64::from(r.disposition == Disposition::CutOff);
        if let Some(m) = r.session.as_ref().and_then(|s| s.mismatches.first()) {
            case.first_mismatch.get_or_insert_with(|| m.clone());
        }
        if let (true, Some(e)) = (r.failed(), &r.error) {
            case.errors += 1;
            case.first_error
                .get_or_insert_with(|| format!("{}: {}", e.class.name(), e.message));
        }
        self.lateness.record(r.lateness_ms);
        self.sends.add(r);
        self.timeline.add(r);
        f.queue_wait.record(r.queue_wait_ms);
        self.first_sent_ms = Some(self.first_sent_ms.map_or(r.sent_ms, |t| t.min(r.sent_ms)));
        self.last_sent_ms = Some(self.last_sent_ms.map_or(r.sent_ms, |t| t.max(r.sent_ms)));
        let end = r.sent_ms + r.end_ms;
        self.last_end_ms = Some(self.last_end_ms.map_or(end, |t| t.max(end)));
        if let (true, Some(e)) = (r.failed(), &r.error) {
            f.add_error(r, e);
        }
        if r.ok() {
            f.add_ok(r, slo);
        }
    }

    /// Completed requests over all features (what `requests` totals; cut-off ones excluded).
    pub fn completed(&self) -> u64 {
        self.features.values().map(|f| f.requests).sum()
    }

    pub fn errors(&self) -> u64 {
        self.features.values().map(|f| f.errors).sum()
    }

    pub fn cut_off(&self) -> u64 {
        self.features.values().map(|f| f.cut_off).sum()
    }

    pub fn skipped(&self) -> u64 {
        self.features.values().map(|f| f.skipped).sum()
    }

    /// Seconds from the first measured send to the last measured end.
    pub fn window_s(&self) -> f64 {
        match (self.first_sent_ms, self.last_end_ms) {
            (Some(a), Some(b)) if b > a => (b - a) / 1000.0,
            _ => 0.0,
        }
    }

    /// The achieved send rate: (sends − 1) over the span from first to last send.
    pub fn achieved_rps(&self) -> Option<f64> {
        rate(self.sends.count, self.first_sent_ms?, self.last_sent_ms?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Chunk, RequestError};

    /// A request sent at `sent` (intended at `intended`) whose content chunks arrived at `t`.
    fn rec(feature: &str, intended: f64, sent: f64, t: &[f64], tokens: u64) -> RequestRecord {
        let chunks: Vec<Chunk> = t
            .iter()
            .map(|&t_ms| Chunk {
                t_ms,
                bytes: 10,
                content: "x".into(),
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema": "duo-harness/result/v1", "seq": 0, "id": "r", "feature": feature,
            "method": "POST", "path": "/v1/completions", "stream": true, "sent_at": "",
            "sent_ms": sent, "intended_ms": intended, "lateness_ms": sent - intended,
            "queue_wait_ms": 0.0, "warmup": false, "disposition": "completed", "status": 200,
            "headers": {}, "framing": "open_ai_sse", "headers_ms": 1.0,
            "first_content_ms": t.first(), "last_content_ms": t.last(),
            "end_ms": t.last().copied().unwrap_or(0.0) + 1.0, "chunks": chunks, "content": "",
            "usage": null, "output_tokens": tokens, "tokens_estimated": false,
            "multi_token_chunks": false, "error": null
        }))
        .unwrap()
    }

    /// The hand-computed trace: vLLM bench's formulas on the same timestamps give
    /// TTFT = first − start, TPOT = (latency − TTFT)/(n − 1), ITL = every chunk gap pooled.
    #[test]
    fn metric_formulas_match_a_hand_computed_trace() {
        let mut agg = Aggregate::new(BTreeMap::new());
        // A: TTFT 20, chunks 5 ms apart, 4 tokens: TPOT 15/3 = 5, gaps 5,5,5, E2E 35.
        agg.add(&rec(
            "code_completions",
            0.0,
            0.0,
            &[20.0, 25.0, 30.0, 35.0],
            4,
        ));
        // B: sent 2 ms late, TTFT 30, gaps 10 and 20, 5 tokens in 3 chunks: TPOT 30/4 = 7.5.
        agg.add(&rec(
            "code_completions",
            100.0,
            102.0,
            &[30.0, 40.0, 60.0],
            5,
        ));
        // C: one token only: TTFT 40, no TPOT, no gap.
        agg.add(&rec("code_completions", 200.0, 200.0, &[40.0], 1));
        let f = &agg.features["code_completions"];
        let ttft = f.ttft.percentiles();
        assert_eq!(
            (ttft.n, ttft.mean, ttft.p50, ttft.max),
            (3, Some(30.0), Some(30.0), Some(40.0))
        );
        // numpy.percentile([20, 30, 40], 99) = 39.8
        assert_eq!(ttft.p99, Some(39.8));
        let tpot = f.tpot.percentiles();
        assert_eq!((tpot.n, tpot.mean, tpot.p50), (2, Some(6.25), Some(6.25)));
        let itl = f.itl.percentiles();
        // gaps 5,5,5,10,20: mean 9, median 5, p90 = 10 + 0.6·10 = 16
        assert_eq!(
            (itl.n, itl.mean, itl.p50, itl.p90),
            (5, Some(9.0), Some(5.0), Some(16.0))
        );
        let from_intended = f.ttft_from_intended.percentiles();
        assert_eq!(from_intended.p50, Some(32.0)); // 20, 32, 40
        assert_eq!(f.e2e.percentiles().max, Some(60.0));
        assert_eq!(agg.lateness.percentiles().max, Some(2.0));
        assert_eq!(f.output_tokens, 10);
        // Sends at 0, 102, 200: (3 − 1) / 0.2 s.
        assert_eq!(agg.achieved_rps(), Some(10.0));
        // Window: first send 0 → last end 200 + 41.
        assert!((agg.window_s() - 0.241).abs() < 1e-12);
    }

    #[test]
    fn slo_warmup_cut_off_and_errors_are_counted_apart() {
        let slo = Slo {
            ttft_ms: Some(25.0),
            tpot_ms: Some(6.0),
            e2e_ms: None,
            max_length_share: None,
            attainment: 0.99,
        };
        let mut agg = Aggregate::new(BTreeMap::from([("duo_chat".to_owned(), slo)]));
        agg.add(&rec("duo_chat_fix_code", 0.0, 0.0, &[20.0, 25.0], 2)); // meets (fallback SLO)
        agg.add(&rec("duo_chat_fix_code", 10.0, 16.0, &[20.0, 25.0], 2)); // 26 from intended
        let mut warm = rec("duo_chat_fix_code", 0.0, 0.0, &[1.0], 1);
        warm.warmup = true;
        agg.add(&warm);
        let mut cut = rec("duo_chat_fix_code", 20.0, 20.0, &[], 0);
        cut.disposition = Disposition::CutOff;
        agg.add(&cut);
        let mut bad = rec("duo_chat_fix_code", 30.0, 30.0, &[], 0);
        bad.error = Some(RequestError {
            class: ErrorClass::Http5xx,
            message: "boom".into(),
        });
        agg.add(&bad);
        let f = &agg.features["duo_chat_fix_code"];
        assert_eq!(
            (f.requests, f.errors, f.cut_off, f.warmup, f.slo_met),
            (3, 1, 1, 1, 1)
        );
        assert_eq!(f.ttft.len(), 2);
        assert!(f.error_messages[0].1.contains("http5xx: boom"));
        assert_eq!(agg.sent, 5);
    }
}
