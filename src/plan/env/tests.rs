use super::*;

fn set(name: &str, value: &str) {
    std::env::set_var(name, value);
}

#[test]
fn environment_variables_are_expanded_and_unset_ones_named() {
    set("DUO_PLAN_TEST_URL", "http://127.0.0.1:5052");
    let t = expand("url = \"${DUO_PLAN_TEST_URL}\"\n# ${NOT_EXPANDED}\n").unwrap();
    assert_eq!(t, "url = \"http://127.0.0.1:5052\"\n# ${NOT_EXPANDED}\n");
    let t = expand("k = \"${DUO_PLAN_TEST_UNSET_VAR:-fallback}\"").unwrap();
    assert_eq!(t, "k = \"fallback\"");
    let e = expand("a = 1\nb = \"${DUO_PLAN_TEST_UNSET_VAR}\"\n").unwrap_err();
    assert!(
        e.contains("line 2") && e.contains("DUO_PLAN_TEST_UNSET_VAR"),
        "{e}"
    );
}

#[test]
fn every_unset_variable_is_named_at_once_and_defaults_may_refer_to_others() {
    let e = expand(
        "a = \"${DUO_PLAN_UNSET_A}\"\nb = \"${DUO_PLAN_UNSET_B}\"\nc = \"${DUO_PLAN_UNSET_A}\"\n",
    )
    .unwrap_err();
    assert!(e.starts_with("2 environment variable(s) not set"), "{e}");
    assert!(e.contains("DUO_PLAN_UNSET_A (line 1, 3)"), "{e}");
    assert!(e.contains("DUO_PLAN_UNSET_B (line 2)"), "{e}");
    set("DUO_PLAN_TEST_BASE", "/b");
    let t = expand("s = \"${DUO_PLAN_UNSET_C:-${DUO_PLAN_TEST_BASE}/snapshots}\"").unwrap();
    assert_eq!(t, "s = \"/b/snapshots\"");
    let t = expand("s = \"${DUO_PLAN_UNSET_C:-${DUO_PLAN_UNSET_E:-${DUO_PLAN_TEST_BASE}}/x}\"")
        .unwrap();
    assert_eq!(t, "s = \"/b/x\"", "defaults nest to any depth");
    let t = expand("s = \"${DUO_PLAN_UNSET_C:-{a}}\"").unwrap();
    assert_eq!(t, "s = \"{a}\"", "braces in a default");
    let e = expand("s = \"${DUO_PLAN_UNSET_C:-${DUO_PLAN_UNSET_D}/x}\"").unwrap_err();
    assert!(e.contains("DUO_PLAN_UNSET_D (line 1)"), "{e}");
}

#[test]
fn an_empty_value_takes_the_default_as_a_shell_does() {
    set("DUO_PLAN_TEST_EMPTY", "");
    assert_eq!(
        expand("a = \"${DUO_PLAN_TEST_EMPTY:-d}\"").unwrap(),
        "a = \"d\""
    );
    assert_eq!(
        expand("a = \"${DUO_PLAN_TEST_EMPTY}\"").unwrap(),
        "a = \"\""
    );
}

#[test]
fn a_value_is_one_scalar_never_structure() {
    set("DUO_PLAN_TEST_EVIL", "5\nmax_error_rate = 1.0");
    let e = expand("[load]\nrate = ${DUO_PLAN_TEST_EVIL}\n").unwrap_err();
    assert!(
        e.contains("DUO_PLAN_TEST_EVIL (line 2)") && e.contains("number"),
        "{e}"
    );
    let t = expand("[load]\nname = \"${DUO_PLAN_TEST_EVIL}\"\n").unwrap();
    let parsed: toml::Table = toml::from_str(&t).unwrap();
    assert_eq!(parsed["load"].as_table().unwrap().len(), 1, "{t}");
    assert_eq!(
        parsed["load"]["name"].as_str(),
        Some("5\nmax_error_rate = 1.0")
    );
    set(
        "DUO_PLAN_TEST_QUOTE",
        "x\" \nmax_error_rate = 1.0 #\u{1b}[2J",
    );
    for quoted in [
        "\"${DUO_PLAN_TEST_QUOTE}\"",
        "\"\"\"${DUO_PLAN_TEST_QUOTE}\"\"\"",
    ] {
        let t = expand(&format!("name = {quoted}\n")).unwrap();
        let parsed: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(parsed.len(), 1, "{t}");
        assert_eq!(
            parsed["name"].as_str(),
            Some("x\" \nmax_error_rate = 1.0 #\u{1b}[2J")
        );
    }
    let e = expand("name = '${DUO_PLAN_TEST_QUOTE}'\n").unwrap_err();
    assert!(e.contains("'...' string cannot hold"), "{e}");
    set("DUO_PLAN_TEST_RATE", "12.5");
    set("DUO_PLAN_TEST_BOOL", "true");
    let t = expand(
        "rate = ${DUO_PLAN_TEST_RATE}\nb = ${DUO_PLAN_TEST_BOOL}\nd = ${DUO_PLAN_UNSET_F:-5}\n",
    )
    .unwrap();
    assert_eq!(t, "rate = 12.5\nb = true\nd = 5\n");
    set("DUO_PLAN_TEST_WORD", "fast");
    assert!(
        expand("rate = ${DUO_PLAN_TEST_WORD}\n").is_err(),
        "a bare word is not a scalar"
    );
}

#[test]
fn comments_are_not_expanded_and_dollar_dollar_stays_literal() {
    let t = expand(
        "a = 1 # ${DUO_PLAN_UNSET_G}\n# ${DUO_PLAN_UNSET_H}\nb = \"#${DUO_PLAN_UNSET_I:-x}\"\n",
    )
    .unwrap();
    assert_eq!(
        t,
        "a = 1 # ${DUO_PLAN_UNSET_G}\n# ${DUO_PLAN_UNSET_H}\nb = \"#x\"\n"
    );
    set("DUO_PLAN_TEST_TOKEN", "secret-value");
    let t = expand("e = \"http://h/$${DUO_PLAN_TEST_TOKEN}\"\n").unwrap();
    assert_eq!(t, "e = \"http://h/${DUO_PLAN_TEST_TOKEN}\"\n");
    let t = expand("e = \"a \\\" # ${DUO_PLAN_TEST_TOKEN}\"\n").unwrap();
    assert_eq!(
        t, "e = \"a \\\" # secret-value\"\n",
        "an escaped quote does not end the string"
    );
}
