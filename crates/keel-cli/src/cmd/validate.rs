//! `keel validate`: schema and field validation, one line per problem.

use keel_config::{Level, LoadOptions, load_paths, validate_resources};

use crate::cli::{ValidateArgs, ValidateFormat};
use crate::exit;

pub fn run(args: &ValidateArgs) -> u8 {
    let opts = LoadOptions {
        default_namespace: args.input.namespace.clone(),
        ..Default::default()
    };
    let loaded = load_paths(&args.input.files, &opts);
    let mut diags = loaded.diagnostics.clone();
    diags.extend(validate_resources(
        &loaded.resources,
        keel_analyze::DEFAULT_ROOT_NAMESPACE,
    ));
    // One file at a time, top to bottom, whatever stage found the problem.
    let mut file_order: Vec<std::sync::Arc<str>> = Vec::new();
    for d in &diags {
        if !file_order.contains(&d.file) {
            file_order.push(d.file.clone());
        }
    }
    diags.sort_by_key(|d| {
        let f = file_order
            .iter()
            .position(|f| *f == d.file)
            .unwrap_or(usize::MAX);
        (f, d.line.unwrap_or(0), d.column.unwrap_or(0))
    });
    let errors = diags.iter().filter(|d| d.level == Level::Error).count();
    let warnings = diags.iter().filter(|d| d.level == Level::Warning).count();
    // Resources with an error: the skipped ones plus the ones failing validation.
    let mut invalid: Vec<_> = diags
        .iter()
        .filter(|d| d.level == Level::Error)
        .filter_map(|d| d.resource.clone())
        .collect();
    invalid.sort();
    invalid.dedup();
    let total = loaded.resources.len()
        + diags
            .iter()
            .filter(|d| d.level == Level::Error && d.message.ends_with("skipped"))
            .count();
    let valid = total.saturating_sub(invalid.len());

    match args.output {
        ValidateFormat::Json => {
            let out = serde_json::json!({
                "valid": errors == 0,
                "files": loaded.inputs,
                "resources": total,
                "validResources": valid,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diags,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        ValidateFormat::Text => {
            for d in &diags {
                if args.quiet && d.level == Level::Note {
                    continue;
                }
                println!("{d}");
            }
            let files = plural(loaded.inputs, "file");
            if errors == 0 {
                let warn = if warnings > 0 {
                    format!(" ({})", plural(warnings, "warning"))
                } else {
                    String::new()
                };
                eprintln!("✔ {} in {files} valid{warn}", plural(total, "resource"));
            } else {
                eprintln!(
                    "✘ {} in {} of {} ({valid} valid, {} skipped or invalid); fix the lines above and run again",
                    plural(errors, "error"),
                    files,
                    plural(total, "resource"),
                    invalid.len()
                );
            }
        }
    }
    if errors == 0 { exit::OK } else { exit::FAILURE }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
