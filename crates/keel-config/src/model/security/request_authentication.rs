//! `RequestAuthentication` (security.istio.io v1, v1beta1): which JWTs a workload accepts
//! and how it finds and checks them.

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::{PolicyTargetReference, WorkloadSelector};
use crate::types::Duration;

#[path = "request_authentication_validate.rs"]
mod validate_impl;

/// `istio.security.v1beta1.RequestAuthentication`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RequestAuthentication {
    /// Workloads the policy applies to; absent means the namespace (or mesh, in the root
    /// namespace). At most one of selector, targetRef, targetRefs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The JWTs the workload accepts; a request with an invalid token is rejected, one
    /// without any token is let through without an identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

/// `istio.security.v1beta1.JWTRule`: one accepted issuer and how to read its tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct JwtRule {
    /// The `iss` the token must carry. Optional only when `jwksUri` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty accepts the service name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where to fetch the key set (http or https); else OpenID discovery from the issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The same field under its protobuf name, which Istio's CRD also accepts.
    #[serde(rename = "jwks_uri", skip_serializing_if = "Option::is_none")]
    pub jwks_uri_proto_name: Option<String>,
    /// An inline JSON Web Key Set (instead of `jwksUri`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers to read the token from; default `Authorization: Bearer`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters to read the token from; default `access_token`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Header to receive the verified payload (base64url JSON).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output_payload_to_header: String,
    /// Keep the token on the request sent upstream.
    pub forward_original_token: bool,
    /// Copy claims into request headers once the token is verified.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Cookies to read the token from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// How long to wait when fetching the key set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Claims holding space-separated lists (e.g. `scope`), matched element by element.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
    /// Whether a request must carry a token for this rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<JwtPresence>,
}

impl JwtRule {
    /// The key set URL, under either of its names.
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri
            .as_deref()
            .or(self.jwks_uri_proto_name.as_deref())
    }
}

istio_enum! {
    /// `JWTRule.presence`: whether the token is optional or required.
    pub enum JwtPresence {
        /// A request without a token passes without an identity (Istio's long-standing behavior).
        Optional = "OPTIONAL" = 0,
        /// A request without a token is rejected.
        Required = "REQUIRED" = 1,
    }
}

/// `istio.security.v1beta1.JWTHeader`: a header carrying the token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct JwtHeader {
    pub name: String,
    /// Stripped before decoding, e.g. `"Bearer "`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// `istio.security.v1beta1.ClaimToHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}
