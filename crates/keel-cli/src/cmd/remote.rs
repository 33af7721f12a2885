//! What the commands that talk to the control plane share: the client, a small runtime, and
//! kubectl-shaped error messages.

use keel_control::api::client::{Client, ClientError};

use crate::exit;

/// A single-threaded runtime: a CLI call is one request at a time.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, u8> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok(rt.block_on(f)),
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            Err(exit::FAILURE)
        }
    }
}

pub fn client(server: &str) -> Result<Client, u8> {
    Client::new(server).map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })
}

/// Prints an error the way kubectl would, with the fix when there is one; returns the exit code.
pub fn report(err: &ClientError) -> u8 {
    match err {
        ClientError::Unreachable { server, source } => eprintln!(
            "error: cannot reach the control plane at {server} ({source}) — start it with `keel control-plane` or `keel up`, or point --server (or KEEL_SERVER) at it"
        ),
        ClientError::Api { body, .. } if body.reason == "Rejected" => {
            for d in &body.diagnostics {
                eprintln!("{}", d.text);
            }
            eprintln!("error: {}", body.message);
        }
        ClientError::Api { body, .. } => {
            eprintln!("Error from server ({}): {}", body.reason, body.message)
        }
        other => eprintln!("error: {other}"),
    }
    exit::FAILURE
}
