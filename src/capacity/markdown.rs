//! The capacity section of `report.md`: the answer, why, the gateway's share and the roofline
//! beside the measurement, read from the typed [`Capacity`].

use super::Capacity;
use crate::escape::markdown_code as cell;
use std::fmt::Write;

fn f(v: Option<f64>, d: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.d$}"))
}

impl crate::report::CapacitySection for Capacity {
    fn markdown(&self, out: &mut String) {
        let limiting = self.limiting.as_deref().unwrap_or("–");
        let _ = match self.users_interval {
            Some([lo, hi]) if self.axis == "users" => writeln!(
                out,
                "\n**Capacity**: {} virtual developers with every SLO met (knee between {} and {}), \
                 {} requests/s achieved; breaks first: {limiting}",
                f(self.users, 0),
                f(lo, 0),
                f(hi, 0),
                f(self.max_rps, 2),
            ),
            _ => writeln!(
                out,
                "\n**Capacity**: {} requests/s with every SLO met (knee between {} and {}), about {} \
                 active developers; breaks first: {limiting}",
                f(self.max_rps, 2),
                f(self.max_rps_interval[0], 2),
                f(self.max_rps_interval[1], 2),
                f(self.users, 0),
            ),
        };
        if let Some(why) = &self.limiter {
            let _ = writeln!(out, "\nWhy: {}", cell(why));
        }
        if !self.gateway.is_empty() {
            let _ = writeln!(
                out,
                "\nThe gateway's share of TTFT p50 (taps): {}",
                super::limiter::shares_text(&self.gateway)
            );
        }
        roofline(out, self);
    }

    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The roofline beside the measurement, a row per feature, and each row's note.
fn roofline(out: &mut String, c: &Capacity) {
    if c.roofline.is_empty() {
        return;
    }
    out.push_str("\n| feature | hardware | TPOT p50 ms | server step ms | batch | achieved MBU | req/s | ceiling req/s | share |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &c.roofline {
        let _ = writeln!(
            out,
            "| {} | {} on {} × {} | {} | {} | {} | {} | {} | {} | {} |",
            r.feature,
            r.model,
            r.gpus,
            r.gpu,
            f(r.tpot_ms, 2),
            f(r.server_itl_ms, 2),
            f(r.batch, 1),
            f(r.achieved_mbu, 2),
            f(Some(r.achieved_rps), 2),
            f(r.ceiling_rps, 1),
            r.ceiling_share
                .map_or("–".into(), |s| format!("{:.1} %", s * 100.0))
        );
    }
    for r in &c.roofline {
        if let Some(n) = &r.note {
            let _ = writeln!(out, "\n{}: {}", r.feature, cell(n));
        }
    }
}
