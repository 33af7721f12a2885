//! `keel proxy-config secret PROXY`: the proxy's workload certificate and root as
//! `istioctl proxy-config secret` prints them (`default` the certificate chain, `ROOTCA` the
//! root), read from the proxy's `/certs` — Envoy's page, which keel-proxy serves with its
//! rotation state added. `-o json` prints that page whole.

use std::time::SystemTime;

use keel_control::time::parse_rfc3339;
use serde_json::Value;

use super::remote;
use crate::exit;

pub fn run(admin: &str, output: Option<&str>) -> u8 {
    let doc = match remote::block_on(fetch(admin)) {
        Ok(Ok(doc)) => doc,
        Ok(Err(message)) => {
            eprintln!("error: {message}");
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    if output == Some("json") {
        return match serde_json::to_string_pretty(&doc) {
            Ok(text) => {
                println!("{text}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILURE
            }
        };
    }
    print!("{}", render(&doc, SystemTime::now()));
    exit::OK
}

async fn fetch(admin: &str) -> Result<Value, String> {
    let client = keel_control::api::client::Client::new(&format!("http://{admin}"))
        .map_err(|e| e.to_string())?;
    let bytes = client.get_bytes("/certs").await.map_err(|e| {
        format!("cannot read the proxy's certificates at {admin}/certs: {e} (a keel-proxy older than this keel has no /certs)")
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the proxy at {admin} sent /certs this keel can't read ({e})"))
}

const COLUMNS: [&str; 7] = [
    "RESOURCE NAME",
    "TYPE",
    "STATUS",
    "VALID CERT",
    "SERIAL NUMBER",
    "NOT AFTER",
    "NOT BEFORE",
];

/// One row for a certificate of `/certs`.
fn row(name: &str, kind: &str, status: &str, cert: &Value, now: SystemTime) -> Vec<String> {
    let text = |k: &str| cert[k].as_str().unwrap_or("").to_string();
    let (from, to) = (text("valid_from"), text("expiration_time"));
    let valid = match (parse_rfc3339(&from), parse_rfc3339(&to)) {
        (Some(a), Some(b)) => a <= now && now <= b,
        _ => false,
    };
    vec![
        name.into(),
        kind.into(),
        status.into(),
        valid.to_string(),
        text("serial_number"),
        to,
        from,
    ]
}

/// istioctl's table: the workload chain's leaf as `default`, each root as `ROOTCA`; a proxy
/// still waiting for its certificate shows `default` WARMING.
fn render(doc: &Value, now: SystemTime) -> String {
    let empty = Vec::new();
    let chains = doc["certificates"].as_array().unwrap_or(&empty);
    let roots = doc["root"].as_array().unwrap_or(&empty);
    let pending = doc["workload"]["state"] == "PENDING";
    if chains.is_empty() && !pending {
        return "No active or warming secrets found.\n".into();
    }
    let mut rows = vec![COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for c in chains {
        if let Some(leaf) = c["cert_chain"].get(0) {
            rows.push(row("default", "Cert Chain", "ACTIVE", leaf, now));
        }
    }
    if pending {
        let mut warming = vec![String::new(); COLUMNS.len()];
        warming[0] = "default".into();
        warming[2] = "WARMING".into();
        warming[3] = "false".into();
        rows.push(warming);
    }
    for r in roots {
        rows.push(row("ROOTCA", "CA", "ACTIVE", r, now));
    }
    let mut out = align(&rows);
    if let Some(e) = doc["workload"]["last_error"].as_str() {
        out.push_str(&format!("\nlast error: {e}\n"));
    }
    out
}

/// Go's `tabwriter` as istioctl sets it up for secrets: columns padded to the widest cell
/// plus 5 spaces, the last one not padded.
fn align(rows: &[Vec<String>]) -> String {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                + 5
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < n {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn doc() -> Value {
        serde_json::json!({
            "certificates": [{
                "cert_chain": [{
                    "serial_number": "6fbee254c22900615cb1f74e3d2f1713",
                    "valid_from": "2023-05-15T01:30:52Z",
                    "expiration_time": "2023-05-16T01:32:52Z",
                    "subject_alt_names": [{"uri": "spiffe://cluster.local/ns/default/sa/sleep"}]
                }],
                "ca_cert": []
            }],
            "root": [{
                "serial_number": "193a543fe2b0d9cd4847675394dfc54",
                "valid_from": "2023-05-05T03:41:33Z",
                "expiration_time": "2033-05-02T03:41:33Z"
            }],
            "workload": {"state": "ACTIVE", "last_error": null}
        })
    }

    #[test]
    fn the_table_matches_istioctls() {
        // After the leaf's expiry, before the root's: as in istioctl's own test output.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let out = render(&doc(), now);
        let expected = "\
RESOURCE NAME     TYPE           STATUS     VALID CERT     SERIAL NUMBER                        NOT AFTER                NOT BEFORE
default           Cert Chain     ACTIVE     false          6fbee254c22900615cb1f74e3d2f1713     2023-05-16T01:32:52Z     2023-05-15T01:30:52Z
ROOTCA            CA             ACTIVE     true           193a543fe2b0d9cd4847675394dfc54      2033-05-02T03:41:33Z     2023-05-05T03:41:33Z
";
        assert_eq!(out, expected);
        // Inside the leaf's validity it is valid.
        let during = UNIX_EPOCH + Duration::from_secs(1_684_200_000);
        assert!(
            render(&doc(), during)
                .lines()
                .nth(1)
                .unwrap()
                .contains(" true ")
        );
    }

    #[test]
    fn a_proxy_without_identity_or_still_waiting_says_so() {
        let none = serde_json::json!({"certificates": []});
        assert_eq!(
            render(&none, SystemTime::now()),
            "No active or warming secrets found.\n"
        );
        let mut waiting = doc();
        waiting["certificates"] = serde_json::json!([]);
        waiting["workload"] =
            serde_json::json!({"state": "PENDING", "last_error": "the CA at x is unreachable"});
        let out = render(&waiting, SystemTime::now());
        let warming = out.lines().nth(1).unwrap();
        assert!(
            warming.starts_with("default") && warming.contains("WARMING"),
            "{out}"
        );
        assert!(
            out.contains("last error: the CA at x is unreachable"),
            "{out}"
        );
    }
}
