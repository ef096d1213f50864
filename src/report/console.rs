//! The console report: the text table printed at the end of a run: one line per feature, then the load and the
//! harness's self-audit.

use crate::verdict::{FindingKind, Severity, Summary};

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |x| format!("{x:.1}"))
}

impl Summary {
    /// The per-feature table (latencies in ms).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<32} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
            "feature",
            "reqs",
            "errs",
            "ttft p50",
            "ttft p99",
            "tpot p50",
            "e2e p99",
            "goodput",
            "out tok"
        );
        let mut marked = false;
        for (k, f) in &self.features {
            let l = &f.latency_ms;
            let good = f
                .goodput
                .as_ref()
                .and_then(|g| g.attainment)
                .map_or("-".to_owned(), |a| format!("{:.1}%", a * 100.0));
            let mark = |figure: &str, text: String| {
                let t = f.trust.get(figure);
                let degraded = t.is_some_and(|t| !t.is_ok());
                let estimated = t.is_some_and(|t| t.estimated);
                format!(
                    "{text}{}{}",
                    if estimated { "~" } else { "" },
                    if degraded { "!" } else { "" }
                )
            };
            let row = [
                mark("ttft", ms(l.ttft.p50)),
                mark("ttft", ms(l.ttft.p99)),
                match f.answers.all_single_event() {
                    true => "n/m".to_owned(), // not measurable: explained under the table
                    false => mark("tpot", ms(l.tpot.p50)),
                },
                mark("e2e", ms(l.e2e.p99)),
                mark("goodput", good),
                mark("output_tokens", f.output_tokens.to_string()),
            ];
            marked |= row.iter().any(|c| c.ends_with('~') || c.ends_with('!'));
            out.push_str(&format!(
                "{:<32} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
                k, f.requests, f.errors, row[0], row[1], row[2], row[3], row[4], row[5]
            ));
        }
        out.push_str(&self.whole_answers_line());
        if marked {
            out.push_str(
                "marks: ~ estimated from token counts without usage; ! degraded: the harness's own \
                 error can pass 5 % of it (findings say by how much)\n",
            );
        }
        out.push_str(&self.coverage_lines());
        out.push_str(&self.errors_by_class_line());
        out.push_str(&self.dws_pool_lines());
        let l = &self.load;
        let rate = |v: Option<f64>| v.map_or("-".to_owned(), |r| format!("{r:.1}"));
        out.push_str(&format!(
            "load: {} loop, {} arrivals, target {} req/s, achieved {} req/s; {} sent, {} cut off, {} skipped, {} warm-up\n",
            l.mode,
            l.arrival.name(),
            rate(l.target_rps),
            rate(l.achieved_rps),
            l.sent,
            l.cut_off,
            l.skipped,
            l.warmup
        ));
        out.push_str(&self.audit_lines());
        out.extend(self.slices.iter().map(|s| s.line() + "\n"));
        out.push_str(&self.findings_lines(FINDING_LINES));
        out.push_str(&format!(
            "verdict: {} ({} requests, {} errors, {:.1} s)\n",
            self.verdict, self.requests, self.errors, l.duration_s
        ));
        out
    }
}

impl Summary {
    /// The self-audit: the schedule against the intended one, then the receive side and CPU.
    /// Features whose answers all came whole: what their TTFT and TPOT cells mean.
    fn whole_answers_line(&self) -> String {
        let whole = self.whole_answer_features();
        if whole.is_empty() {
            return String::new();
        }
        format!(
            "n/m: not measurable. Answers that came whole ({}): TTFT is the time to the whole \
             answer; TPOT and ITL are not measurable and no SLO is judged on them\n",
            whole.join(", ")
        )
    }

    /// The twin DWS's worker pool, when scraped: its queue is the Agent Platform's first limit.
    fn dws_pool_lines(&self) -> String {
        let pools = self.backend_metrics.iter();
        pools
            .filter_map(|(target, o)| Some((target, o.dws_pool()?)))
            .map(|(target, p)| {
                let queued = match p.saturated() {
                    true => ": saturated, sessions queue for it",
                    false => "",
                };
                format!("dws ({target}): {}{queued}\n", p.text())
            })
            .collect()
    }

    /// Errors by class as well as by kind: `connect` (unreachable) is not `stale_connection`.
    fn errors_by_class_line(&self) -> String {
        if self.errors_by_class.is_empty() {
            return String::new();
        }
        let classes: Vec<String> = (self.errors_by_class.iter())
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        format!("errors by class: {}\n", classes.join(", "))
    }

    fn audit_lines(&self) -> String {
        let l = &self.load;
        let s = &l.send_lateness_ms;
        let lateness = format!(
            "lateness p50/p99/max {}/{}/{} ms",
            fmt3(s.p50),
            fmt3(s.p99),
            fmt3(s.max)
        );
        let schedule = match &l.schedule {
            None => format!("closed loop (no schedule to keep); {lateness}"),
            Some(a) => {
                let windows = a.windows.as_ref().map_or(String::new(), |w| {
                    format!(
                        "; per second {:.0}–{:.0} intended, {:.0}–{:.0} delivered",
                        w.intended_min, w.intended_max, w.delivered_min, w.delivered_max
                    )
                });
                format!(
                    "schedule {}: {:.2} % of {} sends later than {:.3} ms (95 % interval \
                     {:.2}–{:.2} %, tolerance {:.2} %){windows}; {lateness}",
                    if a.kept { "kept" } else { "NOT kept" },
                    a.late_share * 100.0,
                    a.sends,
                    a.late_threshold_ms,
                    a.late_share_ci95[0] * 100.0,
                    a.late_share_ci95[1] * 100.0,
                    a.max_late_share * 100.0
                )
            }
        };
        let r = &l.receive.delay_ms;
        let c = &l.client;
        let thread = c.busiest_thread.as_ref().map_or(String::new(), |t| {
            format!(
                "; busiest harness thread {} {:.0} %",
                t.name,
                t.busy * 100.0
            )
        });
        let cores: Vec<String> = c
            .cores
            .iter()
            .map(|k| {
                let steal = match k.steal {
                    x if x >= 0.001 => format!(" (steal {:.1} %)", x * 100.0),
                    _ => String::new(),
                };
                format!("{} {:.0} %{steal}", k.cpu, k.busy * 100.0)
            })
            .collect();
        let cores = match cores.is_empty() {
            true => String::new(),
            false => format!("; cores busy {}", cores.join(", ")),
        };
        let cpu = c
            .cpu_us_per_request
            .map_or("-".to_owned(), |v| format!("{v:.0} µs/request"));
        format!(
            "self-audit: {schedule}\nself-audit: receive delay p50/p99 {}/{} ms ({} probes){thread}{cores}; harness CPU {:.2} s, {cpu}\n",
            fmt3(r.p50),
            fmt3(r.p99),
            r.n,
            c.cpu_s
        )
    }

    /// One line per feature whose latency figures cover fewer requests than were measured:
    /// failures and cut-offs remove requests, and a reader must see from how many a p99 comes.
    fn coverage_lines(&self) -> String {
        let mut out = String::new();
        for (k, f) in &self.features {
            if let Some(s) = &f.sessions {
                out.push_str(&session_line(k, s, f.latency_ms.ttft.n));
                continue;
            }
            let measured = f.requests + f.cut_off;
            let covered = f.latency_ms.ttft.n;
            if measured == 0 || covered >= measured {
                continue;
            }
            out.push_str(&format!(
                "note: {k}: TTFT from {covered} of {measured} requests ({} failed, {} cut off)\n",
                f.errors, f.cut_off
            ));
        }
        out
    }
}

/// One feature's Agent Platform sessions: how they ended and their own times.
fn session_line(k: &str, s: &crate::verdict::sessions::SessionSummary, with_text: u64) -> String {
    let counts = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p50 =
        |p: &crate::stats::Percentiles| p.p50.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    let served = match s.served_models.is_empty() {
        true => "no checkpoint named a model".to_owned(),
        false => format!(
            "served by {}",
            s.served_models
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "sessions {k}: {} ({}; last checkpoint {}); first action p50 {}, first text (TTFT) in {with_text}, \
         tool round trip p50 {} over {} tool calls, session p50 {}; {served}\n",
        s.sessions,
        counts(&s.codes),
        counts(&s.checkpoint_statuses),
        p50(&s.first_action_ms),
        p50(&s.tool_round_trip_ms),
        s.tool_calls,
        p50(&s.session_ms),
    )
}

/// Finding groups printed at most (kinds that always print are never counted out).
const FINDING_LINES: usize = 20;

/// Order of importance on the console: the kind's rank (`verdict::kind`), errors first.
fn rank(kind: FindingKind, severity: Severity) -> u8 {
    kind.rank() + if severity == Severity::Error { 0 } else { 10 }
}

impl Summary {
    /// The findings, grouped by kind and feature with counts, most important first; past
    /// `limit` groups, one line says how many more there are and where they are.
    fn findings_lines(&self, limit: usize) -> String {
        struct Group<'a> {
            kind: FindingKind,
            feature: Option<&'a str>,
            severity: Severity,
            first: &'a str,
            count: usize,
        }
        let mut groups: Vec<Group> = Vec::new();
        for f in self
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
        {
            let feature = f.feature.as_deref();
            match groups
                .iter_mut()
                .find(|g| g.kind == f.kind && g.feature == feature && g.severity == f.severity)
            {
                Some(g) => g.count += 1,
                None => groups.push(Group {
                    kind: f.kind,
                    feature,
                    severity: f.severity,
                    first: &f.message,
                    count: 1,
                }),
            }
        }
        groups.sort_by_key(|g| rank(g.kind, g.severity)); // stable: first seen first
        let (mut out, mut shown, mut hidden, mut hidden_groups) = (String::new(), 0, 0, 0);
        for g in &groups {
            if shown >= limit && !g.kind.always_printed() {
                hidden += g.count;
                hidden_groups += 1;
                continue;
            }
            shown += 1;
            let feature = g.feature.map_or(String::new(), |f| format!(" [{f}]"));
            let more = match g.count {
                1 => String::new(),
                n => format!(" (and {} more like it)", n - 1),
            };
            out.push_str(&format!(
                "{}: {}{feature}: {}{more}\n",
                g.severity.name(),
                g.kind,
                crate::escape::console(g.first)
            ));
        }
        if hidden > 0 {
            out.push_str(&format!(
                "and {hidden} more findings in {hidden_groups} groups: summary.json\n"
            ));
        }
        for n in self.notes_folded() {
            let first = crate::escape::console(n.first);
            out.push_str(&format!("info: {} ×{}: {first}\n", n.kind, n.count));
        }
        out
    }
}

fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |x| format!("{x:.3}"))
}

#[cfg(test)]
mod tests {
    use crate::measure::aggregate::Aggregate;
    use crate::plan::LoadSpec;
    use crate::verdict::*;

    fn summary_with(findings: Vec<Finding>) -> Summary {
        let info = RunInfo {
            cores: 2,
            request_timeout_s: 60.0,
            ..RunInfo::default()
        };
        let mut s = summarise(
            info,
            &LoadSpec::default(),
            &Aggregate::default(),
            &Checks::default(),
        );
        s.findings = findings;
        s
    }

    /// Many content findings never crowd a routing or parameter finding out, and the console
    /// says how many more there are and where.
    #[test]
    fn findings_are_grouped_and_routing_is_never_crowded_out() {
        let mut findings: Vec<Finding> = (0..40)
            .map(|i| {
                let feature = format!("feature_{}", i % 25);
                Finding::new(
                    FindingKind::ConformanceContent,
                    Severity::Error,
                    Some(&feature),
                    format!("text {i} differs"),
                )
            })
            .collect();
        findings.push(Finding::new(
            FindingKind::ParameterDrift,
            Severity::Error,
            Some("duo_chat"),
            "temperature 0.1 → 0.9".into(),
        ));
        findings.push(Finding::new(
            FindingKind::Routing,
            Severity::Error,
            Some("code_completions"),
            "wrong_model: m2".into(),
        ));
        let table = summary_with(findings).table();
        assert!(
            table.contains("error: routing [code_completions]: wrong_model"),
            "{table}"
        );
        assert!(
            table.contains("error: parameter_drift [duo_chat]"),
            "{table}"
        );
        assert!(table.contains("(and 1 more like it)"), "{table}");
        // 25 content groups: 18 fit beside the two above; the last 7 (one finding each) do not.
        assert!(
            table.contains("and 7 more findings in 7 groups: summary.json"),
            "{table}"
        );
    }
}
