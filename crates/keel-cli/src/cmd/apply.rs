//! `keel apply -f` and `keel delete -f`: send files to the control plane, print what happened
//! the way kubectl does.

use std::path::PathBuf;

use keel_control::api::InputFile;
use keel_control::store::{ApplyOutcome, DeleteOutcome};

use super::remote;
use crate::cli::{ApplyArgs, DeleteArgs};
use crate::exit;

pub fn run_apply(args: &ApplyArgs) -> u8 {
    let inputs = match read(&args.files, "apply") {
        Ok(i) => i,
        Err(code) => return code,
    };
    let client = match remote::client(&args.server.server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dry_run = is_dry_run(args.dry_run.as_deref());
    let result = remote::block_on(client.apply(inputs, args.namespace.as_deref(), dry_run));
    let response = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return remote::report(&e),
        Err(code) => return code,
    };
    for m in &response.messages {
        eprintln!("{}", m.text);
    }
    let suffix = if response.dry_run {
        " (server dry run)"
    } else {
        ""
    };
    for r in &response.results {
        println!("{} {}{suffix}", r.id.kubectl_name(), r.outcome);
    }
    if args.wait {
        let changed = response
            .results
            .iter()
            .any(|r| r.outcome != ApplyOutcome::Unchanged);
        eprintln!(
            "note: --wait: waiting for proxies to acknowledge needs the push engine, which this build doesn't have yet; {} (store version {})",
            if changed {
                "the change is stored"
            } else {
                "nothing changed"
            },
            response.store_version
        );
    }
    exit::OK
}

pub fn run_delete(args: &DeleteArgs) -> u8 {
    let inputs = match read(&args.files, "delete") {
        Ok(i) => i,
        Err(code) => return code,
    };
    let client = match remote::client(&args.server.server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dry_run = is_dry_run(args.dry_run.as_deref());
    let result = remote::block_on(client.delete(inputs, args.namespace.as_deref(), dry_run));
    let response = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return remote::report(&e),
        Err(code) => return code,
    };
    let suffix = if response.dry_run {
        " (server dry run)"
    } else {
        ""
    };
    let mut code = exit::OK;
    for r in &response.results {
        match r.outcome {
            DeleteOutcome::Deleted => {
                println!("{} \"{}\" deleted{suffix}", r.id.kubectl_kind(), r.id.name)
            }
            DeleteOutcome::NotFound if args.ignore_not_found => {}
            DeleteOutcome::NotFound => {
                let kind = keel_config::kinds::KINDS
                    .iter()
                    .find(|k| k.name == r.id.kind && k.group == r.id.api_group)
                    .map(|k| keel_control::store::resource_dir_name(k.kind))
                    .unwrap_or_else(|| r.id.kubectl_kind());
                eprintln!(
                    "Error from server (NotFound): {kind} \"{}\" not found",
                    r.id.name
                );
                code = exit::FAILURE;
            }
        }
    }
    code
}

fn is_dry_run(flag: Option<&str>) -> bool {
    flag.is_some_and(|s| s != "none")
}

/// Reads the files (directories recursively, `-` for stdin), named as given.
fn read(files: &[PathBuf], verb: &str) -> Result<Vec<InputFile>, u8> {
    let (inputs, diags) = keel_config::source::read_inputs(files);
    if !diags.is_empty() {
        for d in &diags {
            eprintln!("{d}");
        }
        return Err(exit::FAILURE);
    }
    if inputs.iter().all(|i| i.text.trim().is_empty()) {
        eprintln!("error: no objects passed to {verb}");
        return Err(exit::FAILURE);
    }
    Ok(inputs
        .into_iter()
        .map(|i| InputFile {
            name: i.name.to_string(),
            text: i.text,
        })
        .collect())
}
