//! One attempt for one source: GETs bounded by the timeout, OpenID discovery, and the check
//! that what came back is a key set.

use std::time::Duration;

use keel_snapshot::jwt::JwksSource;
use serde_json::Value;

use crate::fetch::Fetcher;

/// The path OpenID Connect Discovery 1.0 puts the configuration at, after the issuer.
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";

/// What a successful attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The key set's JSON, as served.
    pub jwks: String,
    /// For discovery: the `jwks_uri` the configuration named.
    pub jwks_uri: Option<String>,
}

/// Fetches `source`'s keys, each GET given `timeout`.
pub async fn fetch(
    fetcher: &dyn Fetcher,
    source: &JwksSource,
    timeout: Duration,
) -> Result<Fetched, String> {
    match source {
        JwksSource::Uri(uri) => Ok(Fetched {
            jwks: key_set(fetcher, uri, timeout).await?,
            jwks_uri: None,
        }),
        JwksSource::Issuer(issuer) => {
            let uri = discover(fetcher, issuer, timeout).await?;
            Ok(Fetched {
                jwks: key_set(fetcher, &uri, timeout).await?,
                jwks_uri: Some(uri),
            })
        }
    }
}

/// `GET url` within `timeout`.
async fn get(fetcher: &dyn Fetcher, url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(timeout, fetcher.get(url)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "GET {url}: no answer within {} (the rule's `timeout`; Istio's default is 5s)",
            human(timeout)
        )),
    }
}

/// The `jwks_uri` of the issuer's OpenID configuration.
async fn discover(
    fetcher: &dyn Fetcher,
    issuer: &str,
    timeout: Duration,
) -> Result<String, String> {
    // The specification joins without doubling the slash of an issuer that ends in one.
    let url = format!("{}{OPENID_CONFIGURATION}", issuer.trim_end_matches('/'));
    if crate::fetch::parse_url(&url).is_err() {
        return Err(format!(
            "issuer {issuer:?} is not an http(s) URL, so its keys can't be discovered: give the rule a jwksUri or inline jwks"
        ));
    }
    let body = get(fetcher, &url, timeout)
        .await
        .map_err(|e| format!("OpenID discovery: {e}"))?;
    let config: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("OpenID discovery: {url} is not JSON: {e}"))?;
    match config.get("jwks_uri") {
        Some(Value::String(uri)) if !uri.is_empty() => Ok(uri.clone()),
        other => Err(format!(
            "OpenID discovery: {url} has no jwks_uri (found {}); give the rule a jwksUri",
            other.map_or("nothing".to_string(), Value::to_string)
        )),
    }
}

/// The key set at `url`, checked to be one.
async fn key_set(fetcher: &dyn Fetcher, url: &str, timeout: Duration) -> Result<String, String> {
    let body = get(fetcher, url, timeout).await?;
    check_key_set(&body).map_err(|e| format!("{url}: {e}"))
}

/// A JSON Web Key Set (`{"keys": [...]}`) or a single key (Envoy takes either), as text.
/// Anything else is a failed fetch: the last good keys stay in use.
pub fn check_key_set(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_string())?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    match (value.get("keys"), value.get("kty")) {
        (Some(Value::Array(_)), _) => Ok(text.to_string()),
        (Some(_), _) => Err("not a JSON Web Key Set: \"keys\" is not a list".into()),
        (None, Some(Value::String(_))) => Ok(text.to_string()),
        (None, _) => Err("not a JSON Web Key Set: no \"keys\" list".into()),
    }
}

/// Whether two key sets hold the same keys, whatever their order or formatting (Istio's
/// `compareJWKSResponse`): a provider that reorders its keys on every answer must not cause
/// a push to every proxy.
pub fn same_key_set(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let canonical = |text: &str| -> Option<Vec<String>> {
        let value: Value = serde_json::from_str(text).ok()?;
        let mut keys: Vec<String> = match value.get("keys") {
            Some(Value::Array(keys)) => keys.iter().map(Value::to_string).collect(),
            _ => vec![value.to_string()],
        };
        keys.sort();
        Some(keys)
    };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// `5s`, `1m30s`, `20m`: durations as Istio writes them.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn key_sets_are_checked_and_compared_by_content() {
        assert!(check_key_set(br#"{"keys":[]}"#).is_ok());
        assert!(check_key_set(br#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#).is_ok());
        let e = check_key_set(b"<html>rate limited</html>").unwrap_err();
        assert!(e.contains("not a JSON Web Key Set"), "{e}");
        assert!(check_key_set(br#"{"keys":{}}"#).is_err());
        assert!(check_key_set(br#"{"issuer":"x"}"#).is_err());
        assert!(check_key_set(&[0xff, 0xfe]).is_err());
        let a = r#"{"keys":[{"kid":"1","kty":"EC"},{"kid":"2","kty":"EC"}]}"#;
        let b = r#"{ "keys": [ {"kty":"EC","kid":"2"}, {"kid":"1","kty":"EC"} ] }"#;
        assert!(same_key_set(a, b), "reordered and reformatted");
        assert!(!same_key_set(a, r#"{"keys":[{"kid":"1","kty":"EC"}]}"#));
        assert!(!same_key_set(a, "not json"));
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(1200)), "20m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(7 * 24 * 3600)), "168h");
    }
}
