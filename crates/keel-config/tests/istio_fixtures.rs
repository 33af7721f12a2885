//! Istio's own validation fixtures and samples, read from `../shared/istio-samples` when it
//! is present (CI has it; a fresh clone does not, and these tests then skip with a reason).
//!
//! - `pkg/config/validation/testdata/crds/*-invalid.yaml`: every document must be rejected
//!   (its `_err` key is Istio's reason, printed beside ours).
//! - `*-valid.yaml` and every sample under `samples/` and `istio.io/`: accepted, no errors.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::path::{Path, PathBuf};

use keel_config::{Level, LoadOptions, load_str, validate_resources};

fn samples_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!(
            "skipping: {} not found (Istio's fixtures are only in the CI checkout)",
            root.display()
        );
        None
    }
}

/// Splits a fixture file into documents, each with its `_err` (if any) removed.
fn documents(text: &str) -> Vec<(Option<String>, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut err = None;
    for line in text.lines().chain(std::iter::once("---")) {
        if line.starts_with("---") {
            if !cur.trim().is_empty()
                && cur
                    .lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                docs.push((err.take(), std::mem::take(&mut cur)));
            }
            cur.clear();
            err = None;
        } else if let Some(e) = line.strip_prefix("_err:") {
            err = Some(e.trim().trim_matches(['\'', '"']).to_string());
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs
}

/// Errors Keel reports for one document (reading and validation).
fn errors(text: &str, name: &str) -> Vec<String> {
    let loaded = load_str(text, name, &LoadOptions::default());
    let mut diags = loaded.diagnostics;
    diags.extend(validate_resources(&loaded.resources, "istio-system"));
    diags
        .into_iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect()
}

fn filter() -> Option<String> {
    std::env::var("KEEL_FIXTURE_FILTER").ok()
}

#[test]
fn istio_crd_fixtures() {
    let Some(root) = samples_root() else { return };
    let dir = root.join("pkg/config/validation/testdata/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read crds dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if filter().is_some_and(|f| !name.contains(&f)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let invalid = name.contains("-invalid");
        for (i, (want, doc)) in documents(&text).into_iter().enumerate() {
            checked += 1;
            let got = errors(&doc, &format!("{name}#{i}"));
            if invalid && got.is_empty() {
                failures.push(format!(
                    "{name} document {i}: accepted, but Istio rejects it: {}",
                    want.unwrap_or_default()
                ));
            } else if !invalid && !got.is_empty() {
                failures.push(format!(
                    "{name} document {i}: rejected, but Istio accepts it:\n    {}",
                    got.join("\n    ")
                ));
            } else if invalid {
                println!(
                    "{name} #{i}: Istio: {} | Keel: {}",
                    want.unwrap_or_default(),
                    got[0]
                );
            }
        }
    }
    println!("checked {checked} fixture documents");
    assert!(
        failures.is_empty(),
        "{} fixture mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn istio_samples_are_accepted() {
    let Some(root) = samples_root() else { return };
    let mut files = Vec::new();
    walk(&root.join("samples"), &mut files);
    walk(&root.join("istio.io"), &mut files);
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        if filter().is_some_and(|f| !name.contains(&f)) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read sample");
        let got = errors(&text, &name);
        if !got.is_empty() {
            failures.push(got.join("\n"));
        }
    }
    println!("checked {} sample files", files.len());
    assert!(
        failures.is_empty(),
        "samples rejected:\n{}",
        failures.join("\n")
    );
}
