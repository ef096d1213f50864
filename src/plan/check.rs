//! Every number and URL a user gives is checked when the plan is resolved: finite, in range and
//! consistent, or the run stops before anything is written, with exit 2 and a message naming
//! the key. (TOML accepts `inf`, `nan` and `1e300`; none of them may reach the pacer.)

use super::{LoadSpec, Scenario, Slo, TapSpec};

/// A day, a week: the longest a request, or a run, may be asked to last.
const DAY_S: f64 = 86_400.0;
const WEEK_S: f64 = 7.0 * DAY_S;
/// Far above any Duo stack's rate, far below what overflows an instant.
const MAX_RATE: f64 = 1_000_000.0;

pub use crate::numbers::within;

fn opt(key: &str, v: Option<f64>, lo: f64, hi: f64, open: bool) -> Result<(), String> {
    v.map_or(Ok(()), |v| within(key, v, lo, hi, open))
}

/// The `[load]` section's numbers (after command-line overrides).
pub fn load(l: &LoadSpec) -> Result<(), String> {
    opt("load.rate", l.rate, 0.0, MAX_RATE, false)?;
    opt("load.ramp_to", l.ramp_to, 0.0, MAX_RATE, false)?;
    for (i, s) in l.steps.iter().enumerate() {
        within(
            &format!("load.steps[{i}].rate"),
            s.rate,
            0.0,
            MAX_RATE,
            false,
        )?;
        within(
            &format!("load.steps[{i}].duration_s"),
            s.duration_s,
            0.0,
            WEEK_S,
            true,
        )?;
    }
    within("load.burstiness", l.burstiness, 0.01, 100.0, false)?;
    within("load.time_scale", l.time_scale, 1e-6, 1e6, false)?;
    opt("load.duration_s", l.duration_s, 0.0, WEEK_S, true)?;
    if l.max_requests.is_some_and(|m| m > 1_000_000_000) {
        return Err("load.max_requests: must be <= 1000000000".into());
    }
    within("load.warmup_s", l.warmup_s, 0.0, WEEK_S, false)?;
    within("load.grace_s", l.grace_s, 0.0, DAY_S, false)?;
    if l.concurrency.is_some_and(|c| !(1..=1_000_000).contains(&c)) {
        return Err("load.concurrency: must be within 1..=1000000".into());
    }
    if !(1..=1_000_000).contains(&l.max_in_flight) {
        return Err("load.max_in_flight: must be within 1..=1000000".into());
    }
    opt(
        "load.max_send_lateness_ms",
        l.max_send_lateness_ms,
        0.0,
        60_000.0,
        true,
    )?;
    within("load.max_late_share", l.max_late_share, 0.0, 1.0, false)?;
    within("load.max_error_rate", l.max_error_rate, 0.0, 1.0, false)?;
    within("load.max_cut_off_rate", l.max_cut_off_rate, 0.0, 1.0, false)?;
    for (f, w) in &l.mix {
        within(&format!("load.mix.{f}"), *w, 0.0, 1e6, false)?;
    }
    if !l.mix.is_empty() && l.mix.values().all(|w| *w == 0.0) {
        return Err("load.mix: at least one weight must be > 0".into());
    }
    Ok(())
}

/// One feature's SLO.
pub fn slo(feature: &str, s: &Slo) -> Result<(), String> {
    let key = |k: &str| format!("slo.{feature}.{k}");
    opt(&key("ttft_ms"), s.ttft_ms, 0.0, 1e7, true)?;
    opt(&key("tpot_ms"), s.tpot_ms, 0.0, 1e7, true)?;
    opt(&key("e2e_ms"), s.e2e_ms, 0.0, 1e7, true)?;
    opt(
        &key("max_length_share"),
        s.max_length_share,
        0.0,
        1.0,
        false,
    )?;
    within(&key("attainment"), s.attainment, 0.0, 1.0, false)
}

/// A URL that is not an http(s) URL with a host and a valid port.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(pub String);

impl From<BadUrl> for String {
    fn from(e: BadUrl) -> Self {
        e.0
    }
}

/// An http(s) URL with a host and a valid port; `key` names where it came from.
pub fn url(key: &str, u: &str) -> Result<(), BadUrl> {
    url_text(key, u).map_err(BadUrl)
}

/// A base URL: http(s), a host, no credentials (they would be a secret on disk: tokens come from
/// the environment), no query or fragment (paths are appended to it). Messages show the URL with
/// its password redacted.
fn url_text(key: &str, u: &str) -> Result<(), String> {
    let shown = crate::redact::text(u);
    let parsed =
        reqwest::Url::parse(u).map_err(|e| format!("{key}: '{shown}' is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{key}: '{shown}' is not an http(s) URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{key}: '{shown}' names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{key}: '{shown}' holds credentials: a URL is written to plans and reports, so give \
             the credential through the environment (token_env, api_key_env) instead"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{key}: '{shown}' has a query or a fragment: a base URL takes neither (the harness \
             appends each route's path to it)"
        ));
    }
    Ok(())
}

/// Everything else in a scenario that is a number: timeouts, conformance bounds, the stack.
pub fn scenario(sc: &Scenario) -> Result<(), String> {
    within("request_timeout_s", sc.request_timeout_s, 0.0, DAY_S, true)?;
    for (f, s) in &sc.slo {
        slo(f, s)?;
    }
    let c = &sc.conformance;
    within("conformance.threshold", c.threshold, 0.0, 1.0, false)?;
    within(
        "conformance.margins.relative",
        c.margins.relative,
        0.0,
        1e3,
        false,
    )?;
    within(
        "conformance.margins.absolute",
        c.margins.absolute,
        0.0,
        1.0,
        false,
    )?;
    for (f, p) in &c.features {
        opt(
            &format!("conformance.features.{f}.threshold"),
            p.threshold,
            0.0,
            1.0,
            false,
        )?;
    }
    for t in &sc.taps {
        if let Some(u) = &t.upstream {
            url("tap.upstream", u)?;
        }
    }
    for (f, m) in &sc.models {
        if !m.endpoint.starts_with("twin:") {
            url(&format!("models.{f}.endpoint"), &m.endpoint)?;
        }
    }
    if let Some(stack) = &sc.stack {
        crate::twin::check::numbers(stack)?;
    }
    Ok(())
}

/// Each `[[tap]]` fronts a twin backend or an http(s) upstream.
pub(super) fn taps(sc: &Scenario) -> Result<(), String> {
    for t in &sc.taps {
        match (&t.backend, &t.upstream) {
            (Some(_), None) => {}
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {}
            _ => {
                return Err("each [[tap]] needs either backend = \"<twin backend>\" or upstream = \"http(s)://...\"".into())
            }
        }
        tap_address(t).map_err(|m| format!("[[tap]] '{}': {m}", t.name()))?;
    }
    Ok(())
}

/// A tap's `listen` is a socket address; one on every interface needs `advertise`, the URL the
/// gateway reaches it at (a wildcard is no address to send to).
fn tap_address(t: &TapSpec) -> Result<(), String> {
    let advertise = t.advertise.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = advertise {
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            return Err(format!("advertise '{a}' is not an http(s):// URL"));
        }
    }
    let Some(listen) = t.listen.as_deref().filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("listen '{listen}' is not an address:port (e.g. 0.0.0.0:9101)"))?;
    match (addr.ip().is_unspecified(), advertise) {
        (true, None) => Err(format!(
            "listen '{listen}' is every interface: set advertise = \"http://<host the gateway \
             reaches>:{}\"",
            addr.port()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_out_of_range_name_their_key() {
        for (v, ok) in [
            (1.0, true),
            (0.0, false),
            (f64::INFINITY, false),
            (f64::NAN, false),
            (1e300, false),
            (-1.0, false),
        ] {
            let r = within("load.duration_s", v, 0.0, WEEK_S, true);
            assert_eq!(r.is_ok(), ok, "{v}");
            if let Err(m) = r {
                assert!(m.starts_with("load.duration_s"), "{m}");
            }
        }
        let l = LoadSpec {
            burstiness: 1e-300,
            ..LoadSpec::default()
        };
        assert!(load(&l).unwrap_err().contains("load.burstiness"));
    }

    #[test]
    fn malformed_urls_are_refused() {
        for u in [
            "http://[::1",
            "http://127.0.0.1:99999",
            "http://",
            "ftp://x",
            "nope",
        ] {
            assert!(url("target.url", u).is_err(), "{u}");
        }
        url("target.url", "https://aigw.internal:5052").unwrap();
        url("target.url", "http://[::1]:8080").unwrap();
    }
}
