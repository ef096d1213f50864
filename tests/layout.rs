//! The layout shows the flow: a stage depends only on stages before it and on shared modules,
//! so the crate's top-level modules, read as a graph of their `crate::` paths, have no cycle.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a text names as `crate::<module>`.
fn named(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, _)| {
            text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// Module → the modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = common::repo().join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            sources(&p, &mut files);
        } else {
            files.push(p.clone());
        }
        let deps = g.entry(name.clone()).or_default();
        for f in files {
            deps.extend(named(&std::fs::read_to_string(f).unwrap()));
        }
        deps.remove(&name);
    }
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    g
}

/// A cycle through `start`, if there is one (depth-first, each edge once).
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for d in &g[&here] {
        if let Some(i) = path.iter().position(|p| p == d) {
            let mut c = path[i..].to_vec();
            c.push(d.clone());
            return Some(c);
        }
        if done.contains(d) {
            continue;
        }
        path.push(d.clone());
        if let Some(c) = cycle_from(g, path, done) {
            return Some(c);
        }
        path.pop();
    }
    done.insert(here);
    None
}

#[test]
fn the_modules_have_no_dependency_cycle() {
    let g = graph();
    assert!(g.len() > 10, "read the modules: {g:?}");
    assert!(
        g["verdict"].contains("audit"),
        "the reader sees uses: {g:?}"
    );
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = cycle_from(&g, &mut vec![m.clone()], &mut done) {
            panic!("dependency cycle: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut g = graph();
    g.get_mut("plan").unwrap().insert("verdict".into());
    let mut done = BTreeSet::new();
    let found = g
        .keys()
        .find_map(|m| cycle_from(&g, &mut vec![m.clone()], &mut done));
    let c = found.expect("plan → verdict → plan is a cycle");
    assert!(
        c.contains(&"plan".to_owned()) && c.contains(&"verdict".to_owned()),
        "{c:?}"
    );
}

/// The back half in the order of its data flow: verdict (one run's summary) → results (run
/// folders read back, their documents typed) → compare → report. No stage reaches a later one
/// (`cmd` and `run` wire them together).
#[test]
fn the_back_half_depends_only_backwards() {
    let g = graph();
    let order = ["verdict", "results", "compare", "report"];
    for (i, stage) in order.iter().enumerate() {
        for later in &order[i + 1..] {
            assert!(
                !g[*stage].contains(*later),
                "{stage} depends on the later stage {later}: {:?}",
                g[*stage]
            );
        }
    }
    for stage in order {
        for wiring in ["cmd", "run", "cli"] {
            assert!(!g[stage].contains(wiring), "{stage} depends on {wiring}");
        }
    }
}
