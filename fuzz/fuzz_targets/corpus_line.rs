//! The corpus reader on arbitrary text: one line, and a whole file with a possibly torn last
//! line. It must report, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = duo_harness::corpus::parse_line(line);
    }
    let dir = std::env::temp_dir().join(format!("duo-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("c.jsonl");
    if std::fs::write(&path, data).is_ok() {
        let _ = duo_harness::corpus::scan(&path);
    }
});
