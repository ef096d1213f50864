//! A panic in any thread of the harness can never fall through to "pass": the panic hook notes
//! it, and a summary that carries it has the verdict `error` and exit code 3.

use duo_harness::exit::{self, Exit};
use duo_harness::measure::aggregate::Aggregate;
use duo_harness::plan::LoadSpec;
use duo_harness::verdict::{summarise, Checks, RunInfo};

#[test]
fn a_panic_in_any_thread_makes_the_run_an_internal_error() {
    exit::install_panic_hook();
    let pacer = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(|| panic!("an instant past the schedule"))
        .unwrap();
    assert!(pacer.join().is_err());
    let panics = exit::panics();
    assert_eq!(panics.len(), 1);
    assert!(
        panics[0].contains("'pacer'") && panics[0].contains("an instant past"),
        "{panics:?}"
    );
    let info = RunInfo {
        cores: 2,
        request_timeout_s: 60.0,
        internal_errors: panics,
        ..RunInfo::default()
    };
    let s = summarise(
        info,
        &LoadSpec::default(),
        &Aggregate::default(),
        &Checks::default(),
    );
    assert_eq!(s.verdict, duo_harness::verdict::Verdict::Error);
    assert_eq!(s.exit(), Exit::Unreachable);
    assert!(
        s.table()
            .contains("error: internal_error: thread 'pacer' panicked"),
        "{}",
        s.table()
    );
}
