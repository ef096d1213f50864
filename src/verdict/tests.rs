//! The verdict's rules on planted findings.

use super::*;

fn f(kind: &str) -> Finding {
    let kind = serde_json::from_value(kind.into()).unwrap();
    Finding::new(kind, Severity::Error, None, String::new())
}

/// An invalid measurement never hides a failure that does not depend on timing.
#[test]
fn an_invalid_measurement_never_hides_a_timing_free_failure() {
    assert_eq!(
        verdict(&[f("invalid_measurement"), f("slo")]),
        Verdict::Invalid
    );
    for kind in [
        "request_error",
        "protocol",
        "routing",
        "conformance_content",
        "nothing_measured",
    ] {
        assert_eq!(
            verdict(&[f("invalid_measurement"), f(kind)]),
            Verdict::Fail,
            "{kind}"
        );
    }
    assert_eq!(
        verdict(&[f("internal_error"), f("routing")]),
        Verdict::Error
    );
    assert_eq!(verdict(&[f("slo")]), Verdict::Fail);
    assert_eq!(verdict(&[]), Verdict::Pass);
}

/// A regression is judged with the self-audit's bounds: an invalid measurement elsewhere
/// does not soften it. A gate that could not decide is never a pass.
#[test]
fn a_regression_fails_and_an_undecided_gate_never_passes() {
    assert_eq!(
        verdict(&[f("invalid_measurement"), f("regression")]),
        Verdict::Fail
    );
    assert_eq!(verdict(&[f("gate_undecided")]), Verdict::Invalid);
    assert_eq!(verdict(&[f("gate_undecided"), f("slo")]), Verdict::Fail);
    assert_eq!(
        verdict(&[f("gate_undecided"), f("request_error")]),
        Verdict::Fail
    );
}
