//! What a matched route does besides forwarding: rewrites of the upstream path and
//! authority, redirects, and CORS — Istio's semantics as Envoy implements them.

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION};
use http::{Method, Response, StatusCode, Uri};
use keel_snapshot::{Redirect, Rewrite, StringMatcher};

use super::forward::full;
use crate::route::CompiledRoute;
use crate::server::ConnInfo;
use crate::upstream::Body;

/// Istio's rewrite: `uri` replaces the matched prefix (for a prefix match) or the whole
/// path; `uriRegexRewrite` substitutes over the path; the query string is kept.
pub(crate) fn rewritten(
    uri: &Uri,
    matched: Option<&StringMatcher>,
    rewrite: Option<&Rewrite>,
    compiled_regex: Option<&regex::Regex>,
    authority: &str,
) -> (String, String) {
    let path = uri.path();
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let Some(rw) = rewrite else {
        return (format!("{path}{query}"), authority.to_string());
    };
    let mut new_path = path.to_string();
    if let Some(u) = &rw.uri {
        new_path = match matched {
            Some(StringMatcher::Prefix(p))
                if path.len() >= p.len() && path[..p.len()].eq_ignore_ascii_case(p) =>
            {
                format!("{u}{}", &path[p.len()..])
            }
            // Istio gives Envoy the prefix `/` for a route without a uri match, and Envoy's
            // prefix_rewrite then replaces just that `/`: `rewrite.uri: /base/` turns `/a/b`
            // into `/base/a/b`, and `/` leaves the path as it was.
            None => format!("{u}{}", path.strip_prefix('/').unwrap_or(path)),
            // Exact and regex matches covered the whole path.
            _ => u.clone(),
        };
    } else if let Some((re, with)) = &rw.uri_regex {
        // Routes carry the regex compiled with the snapshot; compiling here is the fallback.
        let owned;
        let r = match compiled_regex {
            Some(r) => Some(r),
            None => {
                owned = regex::Regex::new(re).ok();
                owned.as_ref()
            }
        };
        if let Some(r) = r {
            // Envoy's regex_rewrite uses `\1` for groups; Rust's regex uses `$1`.
            let with = backrefs_to_dollar(with);
            new_path = r.replace_all(path, with.as_str()).into_owned();
        }
    }
    (
        format!("{new_path}{query}"),
        rw.authority
            .clone()
            .unwrap_or_else(|| authority.to_string()),
    )
}

fn backrefs_to_dollar(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn redirect_response(
    r: &Redirect,
    parts: &http::request::Parts,
    authority: &str,
    conn: &ConnInfo,
) -> Response<Body> {
    let request_scheme = conn.scheme();
    let scheme = r
        .scheme
        .clone()
        .unwrap_or_else(|| request_scheme.to_string());
    let request_host = crate::route::strip_port(authority);
    let request_port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    // Compiled snapshots carry the port for `derivePort: FROM_REQUEST_PORT`; one without
    // it takes the port the client addressed, as Istio does (not the Host header's).
    let port = r.port.or(if r.port_from_request {
        Some(conn.destination_port())
    } else {
        None
    });
    // As Envoy: a new authority replaces host and port; otherwise the request's host keeps
    // its port unless a port is set, or the scheme changes and the port was the old scheme's
    // default (`http://h:80` → `https://h`, but `http://h:8080` → `https://h:8080`).
    let host = match &r.authority {
        Some(a) => a.clone(),
        None => {
            let old_default = match request_scheme {
                "https" => 443,
                _ => 80,
            };
            let drop_port =
                port.is_some() || (scheme != request_scheme && request_port == Some(old_default));
            if drop_port {
                request_host.to_string()
            } else {
                authority.to_string()
            }
        }
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host_port = match port {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host,
    };
    let path = r
        .uri
        .clone()
        .unwrap_or_else(|| parts.uri.path().to_string());
    // A query in the new uri replaces the request's; otherwise the request's is kept.
    let query = match parts.uri.query() {
        Some(q) if !path.contains('?') => format!("?{q}"),
        _ => String::new(),
    };
    let location = format!("{scheme}://{host_port}{path}{query}");
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn origin_allowed(route: &CompiledRoute, origin: &str) -> bool {
    let Some(c) = &route.route.cors else {
        return false;
    };
    c.allow_origin.iter().any(|o| o == "*" || o == origin)
        || c.allow_origins.iter().any(|m| {
            m.exact.as_deref().is_some_and(|e| e == "*" || e == origin)
                || m.prefix.as_deref().is_some_and(|p| origin.starts_with(p))
                || m.regex.as_deref().is_some_and(|r| {
                    regex::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(origin))
                })
        })
}

/// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
/// for an allowed origin, as Envoy's CORS filter does.
pub(crate) fn cors_preflight(
    route: &CompiledRoute,
    parts: &http::request::Parts,
) -> Option<Response<Body>> {
    let cors = route.route.cors.as_ref()?;
    if parts.method != Method::OPTIONS
        || !parts.headers.contains_key("access-control-request-method")
    {
        return None;
    }
    let origin = parts.headers.get(http::header::ORIGIN)?.to_str().ok()?;
    if !origin_allowed(route, origin) {
        return None;
    }
    let mut resp = Response::new(full(Bytes::new()));
    let h = resp.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, "access-control-allow-origin", origin.to_string());
    if !cors.allow_methods.is_empty() {
        set(
            h,
            "access-control-allow-methods",
            cors.allow_methods.join(","),
        );
    }
    if !cors.allow_headers.is_empty() {
        set(
            h,
            "access-control-allow-headers",
            cors.allow_headers.join(","),
        );
    }
    if let Some(m) = cors.max_age {
        set(
            h,
            "access-control-max-age",
            (m.nanos / 1_000_000_000).to_string(),
        );
    }
    if cors.allow_credentials == Some(true) {
        set(h, "access-control-allow-credentials", "true".to_string());
    }
    Some(resp)
}

pub(crate) fn cors_headers(
    route: &CompiledRoute,
    origin: Option<&HeaderValue>,
    h: &mut http::HeaderMap,
) {
    let Some(cors) = &route.route.cors else {
        return;
    };
    let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
        return;
    };
    if !origin_allowed(route, origin) {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert("access-control-allow-origin", v);
    }
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(","))
    {
        h.insert("access-control-expose-headers", v);
    }
    if cors.allow_credentials == Some(true) {
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites() {
        let uri: Uri = "/api/v1/items?x=1".parse().expect("uri");
        let prefix = StringMatcher::Prefix("/api/v1".into());
        let rw = Rewrite {
            uri: Some("/v2".into()),
            ..Default::default()
        };
        assert_eq!(
            rewritten(&uri, Some(&prefix), Some(&rw), None, "a").0,
            "/v2/items?x=1"
        );
        assert_eq!(
            rewritten(&uri, None, Some(&rw), None, "a").0,
            "/v2api/v1/items?x=1"
        );
        let exact = StringMatcher::Exact("/api/v1/items".into());
        assert_eq!(
            rewritten(&uri, Some(&exact), Some(&rw), None, "a").0,
            "/v2?x=1"
        );
        let rw = Rewrite {
            uri_regex: Some(("^/api/(v[0-9])/(.*)$".into(), "/\\2/\\1".into())),
            authority: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            rewritten(&uri, None, Some(&rw), None, "a"),
            ("/items/v1?x=1".to_string(), "b".to_string())
        );
        assert_eq!(backrefs_to_dollar("/\\1/$x"), "/${1}/$$x");
    }
}
