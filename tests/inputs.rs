//! No accepted input crashes or runs away: every number and URL of a scenario or of the command
//! line is checked when the plan is resolved (exit 2 naming the key, nothing written), and
//! `corpus validate` accepts exactly what `run` accepts.

mod common;

use std::path::Path;

const CORPUS: &str = "fixtures/corpus/duo-default.jsonl";

fn write_scenario(dir: &Path, body: &str) -> String {
    let corpus = common::repo().join(CORPUS);
    let s = dir.join("s.toml");
    std::fs::write(
        &s,
        format!("name = \"inputs\"\ncorpus = {corpus:?}\n{body}"),
    )
    .unwrap();
    s.to_str().unwrap().to_owned()
}

/// (what is wrong, the scenario after `name` and `corpus`, what the message must name)
const BAD: &[(&str, &str, &str)] = &[
    ("rate inf", "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = inf\nduration_s = 1\n", "load.rate"),
    ("rate nan", "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = nan\nduration_s = 1\n", "load.rate"),
    ("rate 1e300", "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 1e300\nduration_s = 1\n", "load.rate"),
    ("negative duration", "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 5\nduration_s = -1\n", "load.duration_s"),
    ("burstiness 1e-300", "[target]\nurl = \"embedded\"\n[load]\narrival = \"gamma\"\nrate = 5\nduration_s = 1\nburstiness = 1e-300\n", "load.burstiness"),
    ("grace inf", "[target]\nurl = \"embedded\"\n[load]\ngrace_s = inf\n", "load.grace_s"),
    ("cut-off share 2", "[target]\nurl = \"embedded\"\n[load]\nmax_cut_off_rate = 2\n", "load.max_cut_off_rate"),
    ("mix weight nan", "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 5\nduration_s = 1\nmix = { code_completions = nan }\n", "load.mix.code_completions"),
    ("attainment 1.5", "[target]\nurl = \"embedded\"\n[slo.code_completions]\nttft_ms = 500\nattainment = 1.5\n", "slo.code_completions.attainment"),
    ("negative SLO bound", "[target]\nurl = \"embedded\"\n[slo.duo_chat]\nttft_ms = -5\n", "slo.duo_chat.ttft_ms"),
    ("timeout nan", "request_timeout_s = nan\n[target]\nurl = \"embedded\"\n", "request_timeout_s"),
    ("timeout 1e300", "request_timeout_s = 1e300\n[target]\nurl = \"embedded\"\n", "request_timeout_s"),
    ("threshold 3", "[target]\nurl = \"embedded\"\n[conformance]\nthreshold = 3.0\n", "conformance.threshold"),
    ("twin ttft inf", "[target]\nurl = \"embedded\"\n[[stack.backend]]\nname = \"b\"\nmodels = [\"m\"]\nttft_ms = inf\n", "ttft_ms"),
    ("unclosed IPv6 URL", "[target]\nurl = \"http://[::1\"\n", "target.url"),
    ("port 99999", "[target]\nurl = \"http://127.0.0.1:99999\"\n", "target.url"),
    ("URL without host", "[target]\nurl = \"http://\"\n", "target.url"),
    ("tap URL", "[target]\nurl = \"embedded\"\n[[tap]]\nupstream = \"http://[::1\"\n", "tap.upstream"),
    ("model endpoint", "[target]\nurl = \"embedded\"\n[models.duo_chat]\nname = \"mistral\"\nendpoint = \"http://:80\"\nidentifier = \"custom_openai/m\"\n", "models.duo_chat.endpoint"),
    ("URL with a query", "[target]\nurl = \"http://127.0.0.1:5052/?x=1\"\n", "target.url"),
    ("URL with a fragment", "[target]\nurl = \"http://127.0.0.1:5052/#f\"\n", "target.url"),
    ("URL with credentials", "[target]\nurl = \"http://u:pw@127.0.0.1:5052\"\n", "holds credentials"),
    ("two backends on one port", "[target]\nurl = \"embedded\"\n[[stack.backend]]\nname = \"a\"\nmodels = [\"m\"]\nport = 47211\n[[stack.backend]]\nname = \"b\"\nmodels = [\"n\"]\nport = 47211\n", "port 47211"),
    ("twin retries 1000", "[target]\nurl = \"embedded\"\n[stack.dws]\nllm_attempts = 1000\n", "stack.dws.llm_attempts"),
    ("unknown routing feature", "[target]\nurl = \"embedded\"\n[routing.features.duo_chatt]\nbackend = \"x\"\n", "duo_chatt"),
];

#[test]
fn bad_numbers_urls_and_features_are_usage_errors_before_anything_is_written() {
    for (what, body, key) in BAD {
        let d = tempfile::tempdir().unwrap();
        let s = write_scenario(d.path(), body);
        let out = d.path().join("run");
        let (code, stdout, stderr) = common::run_cli(&["run", &s, "--out", out.to_str().unwrap()]);
        assert_eq!(code, 2, "{what}: {stdout}{stderr}");
        assert!(stderr.contains(key), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(!out.exists(), "{what}: the run folder was created");
    }
}

#[test]
fn bad_command_line_numbers_and_targets_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let s = write_scenario(d.path(), "[target]\nurl = \"embedded\"\n");
    let out = d.path().join("run");
    for (args, key) in [
        (vec!["--rate", "inf", "--duration", "1"], "load.rate"),
        (
            vec!["--rate", "5", "--duration", "1e300"],
            "load.duration_s",
        ),
        (vec!["--rate=-3", "--duration", "1"], "load.rate"),
        (vec!["--target", "http://[::1"], "target.url"),
        (vec!["--target", "http://localhost:99999"], "target.url"),
    ] {
        let mut all = vec!["run", s.as_str(), "--out", out.to_str().unwrap()];
        all.extend(&args);
        let (code, stdout, stderr) = common::run_cli(&all);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn a_ca_bundle_without_a_certificate_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("empty.pem"), "# no certificate here\n").unwrap();
    let s = write_scenario(
        d.path(),
        "[target]\nurl = \"https://127.0.0.1:1\"\nca_bundle = \"empty.pem\"\n",
    );
    let out = d.path().join("run");
    let (code, _, stderr) = common::run_cli(&["run", &s, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("empty.pem") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// What `corpus validate` accepts, `run` accepts; what it rejects names the line and field.
#[test]
fn corpus_validate_rejects_what_run_cannot_send() {
    let d = tempfile::tempdir().unwrap();
    let good = r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"POST","path":"/v2/chat/agent","body":{}}}"#;
    for (bad, field) in [
        (
            r#"{"v":1,"id":"b","feature":"duo_chat","arrival_offset_ms":1e300,"request":{"method":"POST","path":"/x"}}"#,
            "arrival_offset_ms",
        ),
        (
            r#"{"v":1,"id":"b","feature":"duo_chat","request":{"method":"P OST","path":"/x"}}"#,
            "request.method",
        ),
        (
            r#"{"v":1,"id":"b","feature":"duo_chat","request":{"method":"POST","path":"/x","headers":{"x-a":"a\u0001b"}}}"#,
            "request.headers.x-a",
        ),
        (
            r#"{"v":1,"id":"b","feature":"duo_chat","request":{"method":"POST","path":"/x","body_b64":"!!"}}"#,
            "request.body_b64",
        ),
    ] {
        let p = d.path().join("c.jsonl");
        std::fs::write(&p, format!("{good}\n{bad}\n")).unwrap();
        let (code, _, stderr) = common::run_cli(&["corpus", "validate", p.to_str().unwrap()]);
        assert_eq!(code, 1, "{bad}: {stderr}");
        assert!(
            stderr.contains("c.jsonl:2") && stderr.contains(field),
            "{stderr}"
        );
        let s = d.path().join("s.toml");
        std::fs::write(
            &s,
            "name = \"v\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"embedded\"\n",
        )
        .unwrap();
        let (code, _, stderr) = common::run_cli(&[
            "run",
            s.to_str().unwrap(),
            "--out",
            d.path().join("run").to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "run refuses it too: {stderr}");
        assert!(
            stderr.contains("c.jsonl:2") && stderr.contains(field),
            "{stderr}"
        );
    }
    // A torn last line that ends inside a multi-byte character is reported and skipped.
    let p = d.path().join("torn.jsonl");
    let mut bytes = format!("{good}\n{{\"v\":1,\"id\":\"b\",\"x\":\"").into_bytes();
    bytes.push(0xc3);
    std::fs::write(&p, bytes).unwrap();
    let (code, stdout, stderr) = common::run_cli(&["corpus", "validate", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("torn.jsonl:2: torn last line"), "{stderr}");
    assert!(
        stdout.contains("1 valid lines, 0 bad, torn last line"),
        "{stdout}"
    );
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let (code, stdout, stderr) = common::run_cli_env(args, &env);
    (code, format!("{stdout}{stderr}"))
}

/// An environment value is one value: outside quotes it must be a number (a newline there would
/// set another key), inside quotes it is escaped and stays in its string.
#[test]
fn an_environment_value_never_becomes_structure() {
    let d = tempfile::tempdir().unwrap();
    let body = "[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = ${DUO_TEST_RATE}\nduration_s = 1\nmax_error_rate = 0.0\n";
    let s = write_scenario(d.path(), body);
    let out = d.path().join("run");
    let evil = "5\nmax_error_rate = 1.0";
    let (code, printed) = run_with_env(
        &["run", &s, "--out", out.to_str().unwrap()],
        &[("DUO_TEST_RATE", evil)],
    );
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("DUO_TEST_RATE (line 7)"), "{printed}");
    assert!(!out.exists());
    // Quoted, the same value is one (odd) scenario name: nothing else changes.
    let s = write_scenario(d.path(), "[target]\nurl = \"${DUO_TEST_URL}\"\n");
    let evil_url = "embedded\"\n[load]\nrate = 1e9";
    let (code, printed) = run_with_env(
        &["run", &s, "--out", out.to_str().unwrap()],
        &[("DUO_TEST_URL", evil_url)],
    );
    assert_eq!(code, 2, "{printed}");
    assert!(
        printed.contains("target.url"),
        "taken as one URL: {printed}"
    );
}

/// A stack that cannot listen (a port in use, an address not of this host) is exit 3 naming the
/// address, in `run`, `capacity` and `stack`; never a panic.
#[test]
fn a_stack_that_cannot_bind_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let d = tempfile::tempdir().unwrap();
    let load = "[load]\narrival = \"constant\"\nrate = 1\nduration_s = 1\n[slo.code_completions]\nttft_ms = 500\n";
    for (stack, addr) in [
        (
            format!("[stack.aigw]\nport = {port}\n"),
            format!("127.0.0.1:{port}"),
        ),
        (
            "[stack]\nhost = \"192.0.2.1\"\n".to_owned(),
            "192.0.2.1:0".to_owned(),
        ),
    ] {
        let s = write_scenario(
            d.path(),
            &format!("[target]\nurl = \"embedded\"\n{load}{stack}"),
        );
        for cmd in ["run", "capacity"] {
            let out = d.path().join(format!("{cmd}-{port}-{}", addr.len()));
            let (code, printed) = run_with_env(&[cmd, &s, "--out", out.to_str().unwrap()], &[]);
            assert_eq!(code, 3, "{cmd}: {printed}");
            assert!(printed.contains(&addr), "{cmd}: {printed}");
            assert!(!printed.contains("panicked"), "{cmd}: {printed}");
        }
    }
    let config = d.path().join("stack.toml");
    std::fs::write(&config, format!("[aigw]\nport = {port}\n")).unwrap();
    let (code, printed) = run_with_env(&["stack", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 3, "{printed}");
    assert!(printed.contains(&format!("127.0.0.1:{port}")), "{printed}");
    // Its values are checked as a scenario's.
    std::fs::write(
        &config,
        "[[backend]]\nname = \"b\"\nmodels = [\"m\"]\nttft_ms = -1\n",
    )
    .unwrap();
    let (code, printed) = run_with_env(&["stack", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("ttft_ms"), "{printed}");
}

/// A run never writes into a folder that holds another run: refused, exit 2, the old files as
/// they were. `snapshots accept --dir` on a folder that is not there is an error, not "0
/// accepted".
#[test]
fn used_run_folders_and_missing_snapshot_folders_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("summary.json"), "{\"old\": true}").unwrap();
    let s = write_scenario(d.path(), "[target]\nurl = \"embedded\"\n");
    let (code, printed) = run_with_env(&["run", &s, "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("already holds files"), "{printed}");
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["summary.json"]);
    assert_eq!(
        std::fs::read_to_string(out.join("summary.json")).unwrap(),
        "{\"old\": true}"
    );
    let missing = d.path().join("no-such-snapshots");
    let (code, printed) = run_with_env(
        &["snapshots", "accept", "--dir", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("no such folder"), "{printed}");
}
