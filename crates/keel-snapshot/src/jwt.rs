//! Request authentication: the JWT rules (from RequestAuthentications) that apply to one proxy,
//! compiled into plain data the proxy's verifier builds from.
//!
//! Why a model of its own rather than Istio's `JWTRule`: the defaults Istio and Envoy apply are
//! resolved here once (token locations, the space-delimited claims), so the proxy never needs
//! to know them, and the control plane can push the result like the rest of the snapshot.
//! [`compile::jwt`](crate::compile::jwt) selects the policies (with AuthorizationPolicy's
//! rules) and builds this; `keel-proxy`'s `jwt` module verifies tokens against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Istio's default token header, `Authorization: Bearer <token>`.
pub const DEFAULT_HEADER: &str = "authorization";
/// The prefix stripped from the default header.
pub const DEFAULT_PREFIX: &str = "Bearer ";
/// Istio's default query parameter, `?access_token=<token>`.
pub const DEFAULT_PARAM: &str = "access_token";
/// Claims Istio always treats as space-delimited lists, whatever `spaceDelimitedClaims` says.
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "permission"];

/// The JWT rules that apply to one proxy, in evaluation order: policies by namespace then
/// name, each policy's rules as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JwtPolicies {
    pub rules: Vec<JwtRule>,
}

impl JwtPolicies {
    /// No rule applies: the proxy skips JWT handling (tokens pass unread).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One `jwtRules` entry with Istio's defaults resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JwtRule {
    /// `namespace/name` of the RequestAuthentication, for logs and reports.
    pub policy: String,
    /// The `iss` a token must carry; `None` (a `jwksUri`-only rule) accepts any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must contain one of these; empty: not checked (Envoy's behaviour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The key set as JSON text: inline `jwks`, or what the control plane fetched from
    /// `jwks_uri` (or found through the issuer's OpenID configuration). `None` while the
    /// keys have never been fetched: tokens for this rule are then refused (401), never let
    /// through, as istiod's stand-in key set makes Envoy refuse them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Where the keys were fetched: the rule's `jwksUri`, or the `jwks_uri` OpenID
    /// discovery found (shown by `/config_dump`; the proxy never fetches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Where to look for the token, in order; never empty (Istio's defaults filled in).
    pub locations: Vec<TokenLocation>,
    /// Header that receives the verified payload, base64url-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token on the request sent upstream (else its header is removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Claims split on spaces into lists for AuthorizationPolicy, defaults included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
    /// `presence: REQUIRED`: a request without any token is rejected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLocation {
    /// A request header (lowercase name); `prefix` is stripped, and a value without it holds
    /// no token.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prefix: String,
    },
    /// A query parameter.
    QueryParam { name: String },
    /// A cookie.
    Cookie { name: String },
}

impl TokenLocation {
    /// Istio's (Envoy's) locations when a rule names none.
    pub fn defaults() -> Vec<TokenLocation> {
        vec![
            TokenLocation::Header {
                name: DEFAULT_HEADER.to_string(),
                prefix: DEFAULT_PREFIX.to_string(),
            },
            TokenLocation::QueryParam {
                name: DEFAULT_PARAM.to_string(),
            },
        ]
    }
}

/// `outputClaimToHeaders`: copy `claim` (dots for nested claims) into `header`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToHeader {
    /// Lowercase header name.
    pub header: String,
    pub claim: String,
}

/// Where a rule's keys come from when it doesn't give them inline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksSource {
    /// The rule's `jwksUri`.
    Uri(String),
    /// OpenID discovery for a rule with only an `issuer`: the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`.
    Issuer(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Uri(u) => write!(f, "jwksUri {u}"),
            JwksSource::Issuer(i) => write!(f, "OpenID discovery for issuer {i}"),
        }
    }
}

/// A source the configuration needs, with the fetch timeout its rules ask for (`timeout`;
/// the largest when several rules share the source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantedJwks {
    #[serde(flatten)]
    pub source: JwksSource,
    /// Milliseconds; `None`: the fetcher's default (Istio's 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The key sets fetched for `jwksUri` and OpenID discovery, as the compile reads them. The
/// control plane (or a proxy that compiles its own configuration) fetches and refreshes them
/// (crate `keel-jwks`) and hands the latest to every compile; plain data, so it crosses to a
/// child compiler as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteJwks {
    /// By `jwksUri`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uris: BTreeMap<String, RemoteKeys>,
    /// By `issuer` (OpenID discovery).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub issuers: BTreeMap<String, RemoteKeys>,
}

/// One source's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteKeys {
    /// The last key set fetched successfully (JSON text); `None`: never fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// For discovery: the `jwks_uri` the issuer's OpenID configuration names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Why the last attempt failed (the last good `jwks`, if any, stays in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RemoteJwks {
    pub fn get(&self, source: &JwksSource) -> Option<&RemoteKeys> {
        match source {
            JwksSource::Uri(u) => self.uris.get(u),
            JwksSource::Issuer(i) => self.issuers.get(i),
        }
    }

    pub fn get_mut(&mut self, source: &JwksSource) -> &mut RemoteKeys {
        match source {
            JwksSource::Uri(u) => self.uris.entry(u.clone()).or_default(),
            JwksSource::Issuer(i) => self.issuers.entry(i.clone()).or_default(),
        }
    }

    /// Whether the keys (not the error texts) are the same: what decides a new push.
    pub fn same_keys(&self, other: &RemoteJwks) -> bool {
        let keys = |m: &BTreeMap<String, RemoteKeys>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.jwks.clone(), v.jwks_uri.clone()))
                .collect::<Vec<_>>()
        };
        keys(&self.uris) == keys(&other.uris) && keys(&self.issuers) == keys(&other.issuers)
    }

    pub fn is_empty(&self) -> bool {
        self.uris.is_empty() && self.issuers.is_empty()
    }
}
