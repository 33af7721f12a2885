//! Delegate VirtualServices merged into the root route that delegates to them, as Istio merges
//! them (`mergeHTTPRoute`): every match of a delegate route must narrow one of the root
//! route's matches, otherwise the delegate route is dropped (a delegate cannot claim traffic
//! outside what the root handed it); fields the delegate route leaves unset come from the
//! root route.

use keel_config::model::networking::virtual_service::{HttpMatchRequest, HttpRoute};
use keel_config::types::StringMatch;

use super::{DEFAULT_DOMAIN, fqdn};

/// The delegate route `sub` as it applies under `root`, with `root_matches`/`sub_matches` the
/// matches of each that apply to the binding being compiled. `None` when the delegate route's
/// matches conflict with the root's. Hosts inherited from the root (mirrors) are resolved in
/// `root_ns`, as Istio resolves short names before merging.
pub fn merge_route(
    root: &HttpRoute,
    root_matches: &[HttpMatchRequest],
    root_ns: &str,
    sub: &HttpRoute,
    sub_matches: &[HttpMatchRequest],
) -> Option<HttpRoute> {
    let mut out = sub.clone();
    out.r#match = merge_matches(root_matches, sub_matches)?;
    out.delegate = None;
    out.name = match (root.name.is_empty(), sub.name.is_empty()) {
        (_, true) => root.name.clone(),
        (true, false) => sub.name.clone(),
        (false, false) => format!("{}-{}", root.name, sub.name),
    };
    if out.rewrite.is_none() {
        out.rewrite = root.rewrite.clone();
    }
    if out.direct_response.is_none() {
        out.direct_response = root.direct_response.clone();
    }
    if out.timeout.is_none() {
        out.timeout = root.timeout;
    }
    if out.retries.is_none() {
        out.retries = root.retries.clone();
    }
    if out.fault.is_none() {
        out.fault = root.fault.clone();
    }
    let resolve = |mut d: keel_config::model::networking::virtual_service::Destination| {
        d.host = fqdn(&d.host, root_ns, DEFAULT_DOMAIN);
        d
    };
    if out.mirror.is_none() {
        out.mirror = root.mirror.clone().map(resolve);
    }
    if out.mirror_percent.is_none() {
        out.mirror_percent = root.mirror_percent;
    }
    if out.mirror_percent_snake.is_none() {
        out.mirror_percent_snake = root.mirror_percent_snake;
    }
    if out.mirror_percentage.is_none() {
        out.mirror_percentage = root.mirror_percentage;
    }
    if out.mirrors.is_empty() {
        out.mirrors = root
            .mirrors
            .iter()
            .cloned()
            .map(|mut m| {
                m.destination = m.destination.map(resolve);
                m
            })
            .collect();
    }
    if out.cors_policy.is_none() {
        out.cors_policy = root.cors_policy.clone();
    }
    if out.headers.is_none() {
        out.headers = root.headers.clone();
    }
    Some(out)
}

/// Each delegate match combined with every root match it does not conflict with; `None`
/// when some delegate match fits no root match.
fn merge_matches(
    root: &[HttpMatchRequest],
    sub: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(sub.to_vec());
    }
    if sub.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for s in sub {
        let before = out.len();
        for r in root.iter().filter(|r| !conflicts(r, s)) {
            out.push(merge_match(r, s));
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_match(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = sub.clone();
    out.name = match (root.name.is_empty(), sub.name.is_empty()) {
        (_, true) => root.name.clone(),
        (true, false) => sub.name.clone(),
        (false, false) => format!("{}-{}", root.name, sub.name),
    };
    out.uri = sub.uri.clone().or_else(|| root.uri.clone());
    out.scheme = sub.scheme.clone().or_else(|| root.scheme.clone());
    out.method = sub.method.clone().or_else(|| root.method.clone());
    out.authority = sub.authority.clone().or_else(|| root.authority.clone());
    // Maps: the delegate's entries override the root's of the same name.
    out.headers = root.headers.clone();
    out.headers.extend(sub.headers.clone());
    out.without_headers = root.without_headers.clone();
    out.without_headers.extend(sub.without_headers.clone());
    out.query_params = root.query_params.clone();
    out.query_params.extend(sub.query_params.clone());
    out.source_labels = root.source_labels.clone();
    out.source_labels.extend(sub.source_labels.clone());
    if out.port == 0 {
        out.port = root.port;
    }
    if out.source_namespace.is_empty() {
        out.source_namespace = root.source_namespace.clone();
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    if out.stat_prefix.is_empty() {
        out.stat_prefix = root.stat_prefix.clone();
    }
    out
}

/// Istio's `hasConflict`: the delegate match `sub` is not within the root match.
fn conflicts(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &sub.uri),
        (&root.scheme, &sub.scheme),
        (&root.method, &sub.method),
        (&root.authority, &sub.authority),
    ];
    if pairs
        .iter()
        .any(|(r, s)| string_conflict(r.as_ref(), s.as_ref()))
    {
        return true;
    }
    let map_conflict =
        |r: &std::collections::BTreeMap<String, StringMatch>,
         s: &std::collections::BTreeMap<String, StringMatch>| {
            s.iter().any(|(k, v)| string_conflict(r.get(k), Some(v)))
        };
    if map_conflict(&root.headers, &sub.headers)
        || map_conflict(&root.without_headers, &sub.without_headers)
        || map_conflict(&root.query_params, &sub.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != sub.ignore_uri_case
        || (root.port > 0 && sub.port > 0 && root.port != sub.port)
        || (!root.source_namespace.is_empty() && sub.source_namespace != root.source_namespace)
    {
        return true;
    }
    sub.source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
}

/// Istio's `stringMatchConflict`: no conflict when either side is absent; regexes conflict
/// with anything; an exact root admits only the same exact; a prefix root admits exacts and
/// prefixes that extend it. (A presence-only `{}` on both sides counts as a conflict, as in
/// Istio.)
fn string_conflict(root: Option<&StringMatch>, sub: Option<&StringMatch>) -> bool {
    let (Some(root), Some(sub)) = (root, sub) else {
        return false;
    };
    if root.regex.is_some() || sub.regex.is_some() {
        return true;
    }
    if let Some(exact) = &root.exact {
        return sub.prefix.is_some() || sub.exact.as_ref() != Some(exact);
    }
    if let Some(prefix) = &root.prefix
        && let Some(p) = sub.prefix.as_ref().or(sub.exact.as_ref())
    {
        return !p.starts_with(prefix.as_str());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Option<StringMatch> {
        Some(StringMatch {
            prefix: Some(p.into()),
            ..Default::default()
        })
    }

    fn uri(m: Option<StringMatch>) -> HttpMatchRequest {
        HttpMatchRequest {
            uri: m,
            ..Default::default()
        }
    }

    #[test]
    fn delegate_matches_must_narrow_the_root() {
        let root = [uri(prefix("/cart"))];
        let merged = merge_matches(&root, &[uri(prefix("/cart/items"))]).expect("narrows");
        assert_eq!(merged[0].uri, prefix("/cart/items"));
        assert!(merge_matches(&root, &[uri(prefix("/elsewhere"))]).is_none());
        // A delegate match without a uri inherits the root's.
        let merged = merge_matches(&root, &[uri(None)]).expect("inherits");
        assert_eq!(merged[0].uri, prefix("/cart"));
        assert_eq!(merge_matches(&root, &[]).expect("root").len(), 1);
        let exact = Some(StringMatch {
            exact: Some("/cart".into()),
            ..Default::default()
        });
        assert!(merge_matches(&[uri(exact.clone())], &[uri(prefix("/cart"))]).is_none());
        assert!(merge_matches(&[uri(exact.clone())], &[uri(exact)]).is_some());
    }
}
