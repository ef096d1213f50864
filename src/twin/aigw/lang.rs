//! The language a code request is in, as the real gateway resolves it
//! (`ai_gateway/code_suggestions/processing/ops.py`, `resolve_lang_id`): the file name's
//! extension first, then the editor's language identifier; reported as the `LanguageId` enum's
//! name in lower case (`ts`, `js`, `bash`, `kotlin`), or empty when neither is known.
//!
//! In: `file_name` and `language_identifier`. Out: the `lang` string.

/// (reported name, extensions, editor identifiers), from the gateway's `_ALL_LANGS`. Matching
/// is exact and case-sensitive, as there (`C`, `H` are C++; `S` is assembly; `R` is R).
const LANGS: &[(&str, &[&str], &[&str])] = &[
    ("c", &["c", "h"], &["c"]),
    (
        "cpp",
        &["cpp", "hpp", "c++", "h++", "cc", "hh", "C", "H"],
        &["cpp"],
    ),
    ("csharp", &["cs"], &["csharp"]),
    ("go", &["go"], &["go"]),
    ("java", &["java"], &["java"]),
    ("js", &["js", "jsx"], &["javascript", "javascriptreact"]),
    (
        "php",
        &["php", "php3", "php4", "php5", "phps", "phpt"],
        &["php"],
    ),
    ("python", &["py"], &["python"]),
    ("ruby", &["rb"], &["ruby"]),
    ("rust", &["rs"], &["rust"]),
    ("scala", &["scala"], &["scala"]),
    ("ts", &["ts", "tsx"], &["typescript", "typescriptreact"]),
    ("kotlin", &["kts", "kt"], &["kotlin"]),
    ("ada", &["adb", "ads", "ada"], &["ada"]),
    ("apex", &["cls", "trigger"], &["apex"]),
    ("arduino", &["ino"], &["arduino"]),
    ("asm", &["asm", "s", "S"], &["asm", "x86asm"]),
    ("awk", &["awk"], &["awk"]),
    ("bash", &["sh", "bash"], &["shellscript", "bash"]),
    ("batch", &["bat", "cmd"], &["bat"]),
    ("bicep", &["bicep"], &["bicep"]),
    ("c3", &["c3"], &["c3"]),
    ("cairo", &["cairo"], &["cairo"]),
    ("clojure", &["clj", "cljs", "cljc"], &["clojure"]),
    ("cobol", &["cbl", "cob", "cobol"], &["cobol"]),
    (
        "commonlisp",
        &["lisp", "cl", "lsp"],
        &["commonlisp", "lisp"],
    ),
    ("crystal", &["cr"], &["crystal"]),
    ("cuda", &["cu", "cuh"], &["cuda", "cuda-cpp"]),
    ("d", &["d"], &["d"]),
    ("dart", &["dart"], &["dart"]),
    ("devicetree", &["dts", "dtsi"], &["dts"]),
    ("dockerfile", &["dockerfile"], &["dockerfile"]),
    ("elisp", &["el"], &["emacs-lisp"]),
    ("elixir", &["ex", "exs"], &["elixir"]),
    ("elm", &["elm"], &["elm"]),
    ("erlang", &["erl", "hrl"], &["erlang"]),
    ("fennel", &["fnl"], &["fennel"]),
    ("fish", &["fish"], &["fish"]),
    (
        "fortran",
        &["f", "f90", "f95", "f03", "f08", "f77", "for"],
        &["fortran", "FortranFreeForm"],
    ),
    ("fsharp", &["fs", "fsi", "fsx"], &["fsharp"]),
    ("gdscript", &["gd"], &["gdscript"]),
    ("gleam", &["gleam"], &["gleam"]),
    ("glsl", &["glsl", "vert", "frag"], &["glsl"]),
    ("groovy", &["groovy", "gvy", "gy", "gsh"], &["groovy"]),
    ("hack", &["hack"], &["hack"]),
    ("hare", &["ha"], &["hare"]),
    ("haskell", &["hs", "lhs"], &["haskell"]),
    ("haxe", &["hx"], &["haxe"]),
    ("hcl", &["hcl"], &["hcl"]),
    ("hlsl", &["hlsl"], &["hlsl"]),
    ("idris", &["idr"], &["idris"]),
    ("jai", &["jai"], &["jai"]),
    ("janet", &["janet"], &["janet"]),
    ("jq", &["jq"], &["jq"]),
    ("julia", &["jl"], &["julia"]),
    ("lua", &["lua"], &["lua"]),
    ("luau", &["luau"], &["luau"]),
    ("magik", &["magik"], &["magik"]),
    ("matlab", &["mat"], &["matlab"]),
    ("mojo", &["mojo"], &["mojo"]),
    ("move", &["move"], &["move"]),
    ("nim", &["nim"], &["nim"]),
    ("nix", &["nix"], &["nix"]),
    ("objc", &["m", "mm"], &["objective-c", "objective-cpp"]),
    ("ocaml", &["ml", "mli"], &["ocaml"]),
    ("odin", &["odin"], &["odin"]),
    ("pascal", &["pas", "pp"], &["pascal", "objectpascal"]),
    ("perl", &["pl", "pm", "pod", "t"], &["perl"]),
    ("pony", &["pony"], &["pony"]),
    ("powershell", &["ps1", "psm1", "psd1"], &["powershell"]),
    ("prolog", &["pro", "prolog"], &["prolog"]),
    ("purescript", &["purs"], &["purescript"]),
    ("ql", &["ql", "qll"], &["ql", "codeql"]),
    ("r", &["r", "R"], &["r"]),
    ("racket", &["rkt"], &["racket"]),
    ("rescript", &["res", "resi"], &["rescript"]),
    ("robot", &["robot"], &["robot"]),
    ("roc", &["roc"], &["roc"]),
    ("scheme", &["scm", "ss"], &["scheme"]),
    ("smalltalk", &["st"], &["smalltalk"]),
    ("solidity", &["sol"], &["solidity"]),
    ("sourcepawn", &["sp"], &["sourcepawn"]),
    ("sql", &["sql"], &["sql"]),
    ("starlark", &["star", "bzl"], &["starlark", "bazel"]),
    ("svelte", &["svelte"], &["svelte"]),
    ("swift", &["swift"], &["swift"]),
    ("systemverilog", &["sv", "svh"], &["systemverilog"]),
    ("tact", &["tact"], &["tact"]),
    ("tcl", &["tcl", "tk"], &["tcl"]),
    ("terraform", &["tf", "tfvars"], &["terraform"]),
    ("tlaplus", &["tla"], &["tlaplus"]),
    ("v", &["vsh", "vv"], &["v"]),
    ("vb", &["vb", "bas", "vbs"], &["vb", "vbscript"]),
    ("verilog", &["v"], &["verilog"]),
    ("vhdl", &["vhd", "vhdl"], &["vhdl"]),
    ("vim", &["vim"], &["vim", "viml"]),
    ("vue", &["vue"], &["vue"]),
    ("wgsl", &["wgsl"], &["wgsl"]),
    ("zig", &["zig"], &["zig"]),
    ("zsh", &["zsh"], &["zsh"]),
];

/// Python's `Path(file_name).suffix` without its dot: the last component's text after its
/// last dot, empty for a name that starts with its only dot (`.bashrc`) or ends with one.
fn suffix(file_name: &str) -> &str {
    let last = file_name.rsplit('/').next().unwrap_or_default();
    match last.rfind('.') {
        Some(i) if i > 0 && i + 1 < last.len() => &last[i + 1..],
        _ => "",
    }
}

/// The `lang` the gateway reports for a file and an editor identifier.
pub(super) fn resolve(file_name: &str, editor: Option<&str>) -> &'static str {
    let ext = suffix(file_name);
    let by_ext = LANGS.iter().find(|(_, exts, _)| exts.contains(&ext));
    let by_editor = || {
        let editor = editor.filter(|e| !e.is_empty())?;
        LANGS.iter().find(|(_, _, names)| names.contains(&editor))
    };
    by_ext.or_else(by_editor).map_or("", |(name, _, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn the_file_name_decides_first_then_the_editor() {
        assert_eq!(resolve("Main.kt", None), "kotlin");
        assert_eq!(resolve("deploy", Some("shellscript")), "bash");
        assert_eq!(resolve("app.ts", Some("python")), "ts");
        assert_eq!(resolve("app.jsx", None), "js");
        assert_eq!(resolve("x.C", None), "cpp");
        assert_eq!(resolve("x.c", None), "c");
        assert_eq!(resolve(".bashrc", Some("bash")), "bash");
        assert_eq!(resolve("notes.txt", Some("plaintext")), "");
        assert_eq!(resolve("dir.d/README", None), "");
        assert_eq!(resolve("main.py", Some("Python")), "python");
    }
}
