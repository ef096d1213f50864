use super::*;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

#[test]
fn unknown_keys_are_rejected_with_line() {
    let (_d, p) =
        write("name = \"x\"\ncorpus = \"c.jsonl\"\nspeed = 3\n[target]\nurl = \"embedded\"\n");
    let e = resolve(&p, Overrides::default(), "r")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3") && e.contains("speed"), "{e}");
}

#[test]
fn overrides_win_and_fallback_applies() {
    let (_d, p) = write(
        "name = \"x\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"embedded\"\n[models.duo_chat]\nname = \"mistral\"\nendpoint = \"twin:a\"\nidentifier = \"custom_openai/m\"\n",
    );
    let o = Overrides {
        target: Some("http://127.0.0.1:1/".into()),
        out: Some("/tmp/o".into()),
        ..Overrides::default()
    };
    let plan = resolve(&p, o, "r").unwrap();
    assert_eq!(plan.target_url.as_deref(), Some("http://127.0.0.1:1"));
    assert_eq!(plan.run_dir, PathBuf::from("/tmp/o"));
    assert_eq!(plan.model_for("duo_chat_fix_code").unwrap().name, "mistral");
    assert!(plan.model_for("code_completions").is_none());
}
