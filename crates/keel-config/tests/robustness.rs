//! No input makes the reader panic: random bytes, mutated real configuration, YAML bombs,
//! deep nesting. (The cargo-fuzz target in `fuzz/` explores the same entry point further.)
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use keel_config::{LoadOptions, load_str, validate_resources};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn run(text: &str) {
    let loaded = load_str(text, "input.yaml", &LoadOptions::default());
    let _ = validate_resources(&loaded.resources, "istio-system");
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
}

const SEEDS: &[&str] = &[
    include_str!("../../../examples/bookinfo/app.yaml"),
    include_str!("../../../examples/bookinfo/gateway.yaml"),
    include_str!("../../../examples/bookinfo/traffic.yaml"),
    include_str!("../../../examples/bookinfo/security.yaml"),
    include_str!("../../../examples/mistakes/mistakes.yaml"),
];

/// One edit applied to a seed document.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), "[ -~\n\t:{}\\[\\]&*!|>'\"#%@`-]{1,12}")
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, edit: &Edit) -> String {
    let len = text.len().max(1);
    match edit {
        Edit::Delete(a, n) => {
            let a = floor_char(text, a % len);
            let b = floor_char(text, a + n);
            format!("{}{}", &text[..a], &text[b..])
        }
        Edit::Insert(a, s) => {
            let a = floor_char(text, a % len);
            format!("{}{s}{}", &text[..a], &text[a..])
        }
        Edit::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let i = i % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.join("\n")
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
        Edit::Truncate(a) => text[..floor_char(text, a % len)].to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yamlish_text_never_panics(text in "[a-zA-Z0-9 :\\-\n{}\\[\\],'\"&*!|>#]{0,300}") {
        run(&text);
    }

    #[test]
    fn mutated_samples_never_panic(seed in 0..SEEDS.len(), edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let mut text = SEEDS[seed].to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        run(&text);
    }
}

/// Istio's own samples, mutated, when `../shared` is present (CI); skipped otherwise.
#[test]
fn mutated_istio_samples_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/samples");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        eprintln!(
            "skipping: {} not found (only in the CI checkout)",
            root.display()
        );
        return;
    };
    let mut texts = Vec::new();
    for d in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            for f in files.flatten() {
                if let Ok(t) = std::fs::read_to_string(f.path()) {
                    texts.push(t);
                }
            }
        }
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for text in &texts {
        for _ in 0..20 {
            let edits = proptest::collection::vec(edit_strategy(), 1..4)
                .new_tree(&mut runner)
                .expect("tree")
                .current();
            let mut t = text.clone();
            for e in &edits {
                t = apply(&t, e);
            }
            run(&t);
        }
    }
}

#[test]
fn bombs_and_deep_nesting_are_refused_clearly() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let loaded = load_str(&bomb, "bomb.yaml", &LoadOptions::default());
    assert!(loaded.resources.is_empty());
    assert!(
        loaded.diagnostics[0]
            .message
            .contains("more than 1000000 nodes"),
        "{:?}",
        loaded.diagnostics
    );

    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}",
        "[".repeat(10_000)
    );
    let loaded = load_str(&deep, "deep.yaml", &LoadOptions::default());
    assert!(loaded.resources.is_empty());
    assert!(
        loaded.diagnostics[0]
            .message
            .contains("nesting deeper than 64 levels"),
        "{:?}",
        loaded.diagnostics
    );
}
