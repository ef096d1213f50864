//! The text table printed at the end of a run: one line per feature, then the load and the
//! harness's self-audit.

use super::Summary;

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
        for (k, f) in &self.features {
            let l = &f.latency_ms;
            let good = f
                .goodput
                .as_ref()
                .and_then(|g| g.attainment)
                .map_or("-".to_owned(), |a| format!("{:.1}%", a * 100.0));
            out.push_str(&format!(
                "{:<32} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
                k,
                f.requests,
                f.errors,
                ms(l.ttft.p50),
                ms(l.ttft.p99),
                ms(l.tpot.p50),
                ms(l.e2e.p99),
                good,
                f.output_tokens
            ));
        }
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
        let s = &l.send_lateness_ms;
        let cpu = l
            .client
            .cpu_us_per_request
            .map_or("-".to_owned(), |c| format!("{c:.0} µs/request"));
        out.push_str(&format!(
            "self-audit: send lateness p50 {} / p99 {} / max {} ms (bound {} ms); harness CPU {:.2} s, {cpu}\n",
            fmt3(s.p50), fmt3(s.p99), fmt3(s.max), l.max_send_lateness_ms, l.client.cpu_s
        ));
        for f in self
            .findings
            .iter()
            .filter(|f| f.severity != "info")
            .take(20)
        {
            out.push_str(&format!("{}: {}: {}\n", f.severity, f.kind, f.message));
        }
        out.push_str(&format!(
            "verdict: {} ({} requests, {} errors, {:.1} s)\n",
            self.verdict, self.requests, self.errors, l.duration_s
        ));
        out
    }
}

fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |x| format!("{x:.3}"))
}
