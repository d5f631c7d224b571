#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! docs/architecture.md against the code: its numbered steps are the step
//! comments of src/run.rs and src/spawn/init.rs, and every module in src/ is
//! in its code map and in lib.rs's.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// A step's title: its text up to the first `.`, `,`, `;`, `:` or `(`.
fn title(text: &str) -> String {
    let end = text.find(['.', ',', ';', ':', '(']).unwrap_or(text.len());
    text[..end].trim().to_lowercase()
}

/// `(number, title)` of each `// N. Title` comment of src/run.rs, in file order.
fn run_steps() -> Vec<(u32, String)> {
    read("src/run.rs")
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("// "))
        .filter_map(|l| l.split_once(". "))
        .filter_map(|(n, rest)| Some((n.parse().ok()?, title(rest))))
        .collect()
}

/// `(number, title)` of each `// [N] Title` (or `/// Step [N]: title`) comment
/// of src/spawn/init.rs, in order of number.
fn init_steps() -> Vec<(u32, String)> {
    let mut steps: Vec<(u32, String)> = read("src/spawn/init.rs")
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("// [").or_else(|| l.strip_prefix("/// Step ["))
        })
        .filter_map(|l| l.split_once(']'))
        .filter_map(|(n, rest)| Some((n.parse().ok()?, title(rest.trim_start_matches(':').trim()))))
        .collect();
    steps.sort_by_key(|s| s.0);
    steps
}

/// The section of architecture.md that lists the steps, split at the init list.
fn doc_sections() -> (String, String) {
    let doc = read("docs/architecture.md");
    let start = doc.find("## From `exprun run` to the child's execve").expect("the steps section");
    let rest = &doc[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let split = section.find("Container init (").expect("the init list");
    (section[..split].to_string(), section[split..].to_string())
}

#[test]
fn the_parent_steps_in_the_doc_are_the_step_comments_of_run_rs() {
    let code = run_steps();
    assert!(code.len() >= 10, "too few step comments found in src/run.rs: {code:?}");
    let numbers: Vec<u32> = code.iter().map(|s| s.0).collect();
    assert_eq!(
        numbers,
        (1..=code.len() as u32).collect::<Vec<_>>(),
        "src/run.rs's steps are not 1..N in file order"
    );
    let (parent, _) = doc_sections();
    let doc: Vec<(u32, String)> = parent
        .lines()
        .filter_map(|l| l.split_once(". "))
        .filter_map(|(n, rest)| Some((n.parse().ok()?, title(rest))))
        .collect();
    assert_eq!(
        doc, code,
        "docs/architecture.md's parent steps (left) differ from src/run.rs's step comments (right)"
    );
}

#[test]
fn the_init_steps_in_the_doc_are_the_step_comments_of_init_rs() {
    let code = init_steps();
    assert!(code.len() >= 5, "too few [N] step comments found in src/spawn/init.rs: {code:?}");
    let (_, init) = doc_sections();
    let doc: Vec<(u32, String)> = init
        .lines()
        .filter_map(|l| l.split_once(". [").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once("] "))
        .filter_map(|(n, rest)| Some((n.parse().ok()?, title(rest))))
        .collect();
    assert_eq!(doc, code, "docs/architecture.md's init steps (left) differ from src/spawn/init.rs's (right)");
}

#[test]
fn every_module_is_in_both_code_maps() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = read("src/lib.rs");
    let doc = read("docs/architecture.md");
    let map_start = doc.find("## Code map").unwrap();
    let map = &doc[map_start..map_start + doc[map_start..].find("\n## ").unwrap()];
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let (module, form) = if e.path().is_dir() {
            (name.clone(), format!("`{name}/`"))
        } else if let Some(m) = name.strip_suffix(".rs").filter(|m| *m != "lib" && *m != "main") {
            (m.to_string(), format!("`{name}`"))
        } else {
            continue;
        };
        if !lib.contains(&format!("//! - [`{module}`]")) {
            missing.push(format!("{module}: not in src/lib.rs's code map"));
        }
        let dir_or_file = [form.clone(), format!("`{module}.rs`"), format!("`{module}/`")];
        if !map.contains(&format!("| {form}")) && !map.contains(&format!(", {form}")) {
            missing.push(format!("{form}: not in docs/architecture.md's code map (any of {dir_or_file:?})"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
