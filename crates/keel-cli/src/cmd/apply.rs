//! `keel apply -f` and `keel delete -f`: send files to the control plane, print what happened
//! the way kubectl does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keel_control::api::InputFile;
use keel_control::api::client::Client;
use keel_control::store::DeleteOutcome;
use keel_control::xds::{ProxyStatus, SyncState};

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
    if args.wait && !response.dry_run {
        return wait_for_acks(&client, response.store_version);
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

/// How long `--wait` waits for the proxies.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// `--wait`: until every connected proxy has ACKed a view computed from `version` or later
/// (a proxy whose view didn't change is in sync at once), or rejected it; says which didn't.
fn wait_for_acks(client: &Client, version: u64) -> u8 {
    let outcome = remote::block_on(async {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let resp = client.proxies().await?;
            let total = resp.proxies.len();
            let behind: Vec<ProxyStatus> = resp
                .proxies
                .into_iter()
                .filter(|p| !caught_up(p, version))
                .collect();
            // A proxy that rejected this version won't take it by waiting longer.
            let settled = behind.iter().all(|p| rejected(p, version));
            if settled || Instant::now() >= deadline {
                return Ok((total, behind));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (total, behind) = match outcome {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return remote::report(&e),
        Err(code) => return code,
    };
    if total == 0 {
        eprintln!("no proxies are connected: nothing to wait for");
        return exit::OK;
    }
    if behind.is_empty() {
        let proxies = if total == 1 { "proxy" } else { "proxies" };
        eprintln!("{total} {proxies} acknowledged store version {version}");
        return exit::OK;
    }
    for p in &behind {
        let states: Vec<String> = p
            .types
            .iter()
            .map(|(t, s)| match (&s.state, &s.nack_reason) {
                (SyncState::Nack, Some(r)) => format!("{t} NACK: {r}"),
                (state, _) => format!("{t} {}", state.as_str()),
            })
            .collect();
        eprintln!(
            "{} (control plane version {}): {}",
            p.name,
            p.control_plane_version,
            states.join(", ")
        );
    }
    let within = if behind.iter().all(|p| rejected(p, version)) {
        String::new()
    } else {
        format!(" within {}s", WAIT_LIMIT.as_secs())
    };
    eprintln!(
        "error: {} of {total} proxies did not acknowledge store version {version}{within}",
        behind.len(),
    );
    exit::FAILURE
}

/// A view from `version` or later was rejected (NACK) for some type.
fn rejected(p: &ProxyStatus, version: u64) -> bool {
    p.control_plane_version
        .parse::<u64>()
        .is_ok_and(|v| v >= version)
        && p.types.values().any(|s| s.state == SyncState::Nack)
}

/// Every type SYNCED with a view from `version` or later.
fn caught_up(p: &ProxyStatus, version: u64) -> bool {
    p.control_plane_version
        .parse::<u64>()
        .is_ok_and(|v| v >= version)
        && p.types.values().all(|s| s.state == SyncState::Synced)
}
