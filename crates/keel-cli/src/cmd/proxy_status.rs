//! `keel proxy-status`: the connected proxies and whether each is in sync, like
//! `istioctl proxy-status`.

use std::time::SystemTime;

use keel_control::time::{human_duration, parse_rfc3339};
use keel_control::xds::{ProxiesResponse, ProxyStatus, SyncState, TypeStatus};

use super::{remote, table};
use crate::cli::ProxyStatusArgs;
use crate::exit;

pub fn run(args: &ProxyStatusArgs) -> u8 {
    let client = match remote::client(&args.server.server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fetched = match remote::block_on(client.proxies()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut resp = match fetched {
        Ok(r) => r,
        Err(e) => return remote::report(&e),
    };
    resp.proxies.retain(|p| {
        args.namespace.as_ref().is_none_or(|ns| *ns == p.namespace)
            && args.proxy.as_ref().is_none_or(|name| *name == p.name)
    });
    if let (Some(name), true) = (&args.proxy, resp.proxies.is_empty()) {
        eprintln!(
            "error: no proxy named \"{name}\" is connected to {} (keel proxy-status lists them)",
            client.server()
        );
        return exit::FAILURE;
    }
    if args.output.as_deref() == Some("json") {
        return match serde_json::to_string_pretty(&resp) {
            Ok(s) => {
                println!("{s}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILURE
            }
        };
    }
    if resp.proxies.is_empty() {
        eprintln!(
            "No proxies are connected to {} (start one with: keel-proxy sidecar --xds http://127.0.0.1:15010 ...)",
            client.server()
        );
        return exit::OK;
    }
    print!("{}", render(&resp, SystemTime::now()));
    exit::OK
}

/// The table, then one line per rejected update with its reason.
pub fn render(resp: &ProxiesResponse, now: SystemTime) -> String {
    let mut rows = vec![
        [
            "NAME",
            "NAMESPACE",
            "LISTENERS",
            "CLUSTERS",
            "CONTROL PLANE VERSION",
            "AGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut nacks = Vec::new();
    for p in &resp.proxies {
        rows.push(vec![
            p.name.clone(),
            p.namespace.clone(),
            cell(p, "listeners"),
            cell(p, "clusters"),
            p.control_plane_version.clone(),
            parse_rfc3339(&p.connected_since).map_or("<unknown>".to_string(), |t| {
                human_duration(now.duration_since(t).unwrap_or_default())
            }),
        ]);
        for (t, s) in &p.types {
            if let (SyncState::Nack, Some(reason)) = (s.state, &s.nack_reason) {
                nacks.push(format!("{} rejected {t}: {reason}", p.name));
            }
        }
    }
    let mut out = table::align(&rows);
    if !nacks.is_empty() {
        out.push('\n');
        for n in nacks {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

fn cell(p: &ProxyStatus, t: &str) -> String {
    p.types
        .get(t)
        .map_or(SyncState::NotSent, |s: &TypeStatus| s.state)
        .as_str()
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    #[test]
    fn table_like_istioctl_with_nack_reasons_below() {
        let mut types = BTreeMap::new();
        types.insert(
            "listeners".to_string(),
            TypeStatus {
                state: SyncState::Nack,
                nack_reason: Some("listener x cannot bind 127.0.0.1:80: in use".into()),
                ..TypeStatus::default()
            },
        );
        types.insert(
            "clusters".to_string(),
            TypeStatus {
                state: SyncState::Synced,
                ..TypeStatus::default()
            },
        );
        let resp = ProxiesResponse {
            control_plane_version: "7".into(),
            proxies: vec![ProxyStatus {
                name: "reviews-v1.default".into(),
                namespace: "default".into(),
                kind: "sidecar".into(),
                workload: String::new(),
                labels: BTreeMap::new(),
                proxy_version: String::new(),
                peer: String::new(),
                connected_since: "2024-05-01T12:00:00Z".into(),
                admin: None,
                control_plane_version: "7".into(),
                types,
            }],
        };
        let now = parse_rfc3339("2024-05-01T12:00:00Z").expect("time") + Duration::from_secs(45);
        assert_eq!(
            render(&resp, now),
            "NAME                 NAMESPACE   LISTENERS   CLUSTERS   CONTROL PLANE VERSION   AGE\n\
             reviews-v1.default   default     NACK        SYNCED     7                       45s\n\
             \n\
             reviews-v1.default rejected listeners: listener x cannot bind 127.0.0.1:80: in use\n"
        );
    }
}
