//! The parts of a VirtualService HTTP route that translate field by field: request
//! matches, header operations, rewrites and redirects.

use keel_config::model::networking::virtual_service::{
    self as vs, HttpMatchRequest, jwt_claim_route,
};
use keel_config::types::StringMatch;

use crate::route::{
    ClaimMatcher, HeaderMatcher, HeaderOps, Redirect, RequestMatch, Rewrite, StringMatcher,
};

fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    if let Some(e) = &m.exact {
        Some(StringMatcher::Exact(e.clone()))
    } else if let Some(p) = &m.prefix {
        Some(StringMatcher::Prefix(p.clone()))
    } else {
        m.regex.as_ref().map(|r| StringMatcher::Regex(r.clone()))
    }
}

pub(super) fn request_match(m: &HttpMatchRequest) -> RequestMatch {
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    let mut claims: Vec<ClaimMatcher> = Vec::new();
    let conditions = m
        .headers
        .iter()
        .map(|(k, v)| (k, v, false))
        .chain(m.without_headers.iter().map(|(k, v)| (k, v, true)));
    for (key, value, invert) in conditions {
        // `@request.auth.claims.*` names a claim of the verified JWT, not a header; claim
        // names keep their case.
        match jwt_claim_route(key) {
            Some(path) => claims.push(ClaimMatcher {
                path,
                matcher: string_matcher(value),
                invert,
            }),
            None => headers.push(HeaderMatcher {
                name: key.to_ascii_lowercase(),
                matcher: string_matcher(value),
                invert,
            }),
        }
    }
    RequestMatch {
        name: m.name.clone(),
        uri: m.uri.as_ref().and_then(string_matcher),
        scheme: m.scheme.as_ref().and_then(string_matcher),
        method: m.method.as_ref().and_then(string_matcher),
        authority: m.authority.as_ref().and_then(string_matcher),
        headers,
        claims,
        query_params: m
            .query_params
            .iter()
            .map(|(k, v)| (k.clone(), string_matcher(v)))
            .collect(),
        port: (m.port != 0).then_some(m.port as u16),
        ignore_uri_case: m.ignore_uri_case,
        source_labels: m.source_labels.clone(),
        source_namespace: (!m.source_namespace.is_empty()).then(|| m.source_namespace.clone()),
    }
}

pub(super) fn header_ops(h: Option<&vs::HeaderOperations>) -> HeaderOps {
    let Some(h) = h else {
        return HeaderOps::default();
    };
    HeaderOps {
        set: h
            .set
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        add: h
            .add
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        remove: h.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
}

pub(super) fn rewrite(w: &vs::HttpRewrite) -> Rewrite {
    Rewrite {
        uri: (!w.uri.is_empty()).then(|| w.uri.clone()),
        authority: (!w.authority.is_empty()).then(|| w.authority.clone()),
        uri_regex: w
            .uri_regex_rewrite
            .as_ref()
            .map(|r| (r.r#match.clone(), r.rewrite.clone())),
    }
}

/// A redirect for a route served on `port`. `derivePort: FROM_REQUEST_PORT` is that port,
/// not the `Host` header's: Envoy can't derive a port from the request, so Istio writes the
/// port the route is generated for (the gateway server's, or the service port a sidecar
/// route is built for).
pub(super) fn redirect(r: &vs::HttpRedirect, port: u16) -> Redirect {
    use keel_config::model::networking::virtual_service::RedirectPortSelection;
    let from_request = r.derive_port == Some(RedirectPortSelection::FromRequestPort);
    Redirect {
        uri: (!r.uri.is_empty()).then(|| r.uri.clone()),
        authority: (!r.authority.is_empty()).then(|| r.authority.clone()),
        port: r
            .port
            .map(|p| p as u16)
            .or((from_request && port != 0).then_some(port)),
        port_from_request: from_request,
        scheme: (!r.scheme.is_empty()).then(|| r.scheme.clone()),
        code: if r.redirect_code == 0 {
            301
        } else {
            r.redirect_code as u16
        },
    }
}
