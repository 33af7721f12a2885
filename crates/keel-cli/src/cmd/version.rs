//! `keel version`.

use crate::cli::VersionArgs;
use crate::exit;

pub fn run(args: &VersionArgs) -> u8 {
    let version = env!("CARGO_PKG_VERSION");
    let commit = env!("KEEL_GIT_COMMIT");
    match args.output.as_deref() {
        Some("json") => println!(
            "{}",
            serde_json::json!({ "version": version, "gitCommit": commit })
        ),
        Some(_) => println!("{version}"),
        None => println!("keel version {version} (commit {commit})"),
    }
    exit::OK
}
