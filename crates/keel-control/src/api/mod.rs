//! The control plane's HTTP API, served by [`server::serve`] and called by [`client::Client`]
//! (which `keel apply`, `keel delete` and `keel get` use).
//!
//! | method and path | what |
//! |---|---|
//! | `POST /apis/apply[?namespace=NS][&dryRun=true]` | create or replace the resources in the body, all or nothing |
//! | `POST /apis/delete[?namespace=NS][&dryRun=true]` | delete the resources named in the body |
//! | `GET /apis/resources?kind=K[&namespace=NS][&name=N]` | a `kind: List` of stored objects (JSON); for `endpoints`, each Service's endpoints as the registry computes them |
//! | `GET /apis/problems` | problems in the stored files (invalid edits kept out, duplicates) |
//! | `GET /apis/proxies` | the connected proxies and their sync state per type ([`crate::xds::ProxiesResponse`]) |
//! | `GET /version` | `{"version", "gitCommit", "storeVersion"}` |
//! | `GET /healthz` | `ok` |
//!
//! Bodies of apply and delete are YAML or JSON, any number of documents, named in messages
//! by the `X-Keel-Filename` header (else `<request>`); or, with content type
//! `application/vnd.keel.inputs+json`, `{"inputs": [{"name": "a.yaml", "text": "..."}]}` to
//! send several files as one all-or-nothing change with their own names. `kind` takes what
//! kubectl takes: `vs`, `virtualservices`, `VirtualService`, `gateways.gateway.networking.k8s.io`.
//!
//! Errors are JSON [`ErrorBody`]: `Rejected` (422, with one [`Message`] per problem, each
//! carrying the `file:line:col: error: Kind ns/name: field: reason` line `keel validate`
//! prints), `Conflict` (409), `NotFound` (404), `BadRequest` (400), `Internal` (500).
//!
//! The API has no authentication: it listens on loopback by default (`127.0.0.1:15080`,
//! a port of its own so that the metrics port 15014 can be exposed without exposing writes).

pub mod client;
mod endpoints;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::store::{ApplyOutcome, DeleteOutcome, ResourceKey};

/// Where the API listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:15080";
/// Names the body in messages.
pub const FILENAME_HEADER: &str = "x-keel-filename";
/// Content type of a body carrying several named files.
pub const INPUTS_CONTENT_TYPE: &str = "application/vnd.keel.inputs+json";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One named input file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    pub inputs: Vec<InputFile>,
}

/// A resource's identity on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceId {
    /// Empty for core Kubernetes kinds.
    pub api_group: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl ResourceId {
    /// `virtualservice.networking.istio.io/reviews`, as kubectl names objects in its output.
    pub fn kubectl_name(&self) -> String {
        format!("{}/{}", self.kubectl_kind(), self.name)
    }

    /// `virtualservice.networking.istio.io`; `service` for core kinds.
    pub fn kubectl_kind(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        if self.api_group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.api_group)
        }
    }
}

impl From<&ResourceKey> for ResourceId {
    fn from(k: &ResourceKey) -> Self {
        ResourceId {
            api_group: k.kind.group().to_string(),
            kind: k.kind.name().to_string(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        }
    }
}

/// A problem, with the one-line text `keel validate` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `error`, `warning` or `note`.
    pub level: String,
    /// `file:line:col: level: Kind ns/name: field: reason`.
    pub text: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The reason alone.
    pub message: String,
}

impl From<&keel_config::Diagnostic> for Message {
    fn from(d: &keel_config::Diagnostic) -> Self {
        Message {
            level: d.level.to_string(),
            text: d.to_string(),
            file: d.file.to_string(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    #[serde(flatten)]
    pub id: ResourceId,
    pub outcome: ApplyOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    pub store_version: u64,
    #[serde(default)]
    pub dry_run: bool,
    pub results: Vec<ApplyResult>,
    /// Warnings, and notes about objects of kinds the mesh doesn't read (not stored).
    #[serde(default)]
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResult {
    #[serde(flatten)]
    pub id: ResourceId,
    pub outcome: DeleteOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResponse {
    pub store_version: u64,
    #[serde(default)]
    pub dry_run: bool,
    pub results: Vec<DeleteResult>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `Rejected`, `Conflict`, `NotFound`, `BadRequest`, `MethodNotAllowed` or `Internal`.
    pub reason: String,
    /// One line for people.
    pub message: String,
    /// For `Rejected`: every problem found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Message>,
}
