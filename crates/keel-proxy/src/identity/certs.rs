//! The admin's `/certs`: Envoy's shape (`certificates[]` with `cert_chain` and `ca_cert`,
//! each certificate's serial, SANs, validity and days until expiration) plus Keel's
//! `workload` block — the identity, where the certificate comes from (the CA or mounted
//! files), when the next rotation is due and the last error — which
//! `keel proxy-config secret` prints as istioctl's table.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::material::{CertFacts, rfc3339};
use super::{WorkloadIdentity, manager::human};

/// One certificate as Envoy's `/certs` lists it, with subject and issuer added.
pub fn cert_json(c: &CertFacts, now: SystemTime) -> Value {
    let days = c
        .not_after
        .duration_since(now)
        .map_or(0, |d| d.as_secs() / 86_400);
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "serial_number": c.serial,
        "subject_alt_names": c.sans,
        "valid_from": rfc3339(c.not_before),
        "expiration_time": rfc3339(c.not_after),
        "days_until_expiration": days.to_string(),
    })
}

impl WorkloadIdentity {
    /// The `/certs` document at `now`.
    pub fn certs_json(&self, now: SystemTime) -> Value {
        let roots = self.roots();
        let ca_cert: Vec<Value> = roots.facts.iter().map(|c| cert_json(c, now)).collect();
        let status = self.status();
        let current = self.current();
        let mut certificates = Vec::new();
        if let Some(m) = &current {
            certificates.push(json!({
                "cert_chain": m.chain().map(|c| cert_json(c, now)).collect::<Vec<_>>(),
                "ca_cert": ca_cert,
            }));
        }
        let files = match self.source() {
            super::Source::Files(f) => Some(f),
            super::Source::Ca { .. } => None,
        };
        let mut workload = match &current {
            // Mounted files are renewed by whoever writes them: no rotation of the proxy's own.
            Some(m) if files.is_some() => json!({
                "identity": self.id().to_string(),
                "state": if m.leaf.valid_at(now) { "ACTIVE" } else { "EXPIRED" },
                "serial_number": m.leaf.serial,
                "received": rfc3339(m.received_at),
            }),
            Some(m) => {
                let left = m.rotate_at.duration_since(now).unwrap_or_default();
                json!({
                    "identity": self.id().to_string(),
                    "state": if m.leaf.valid_at(now) { "ACTIVE" } else { "EXPIRED" },
                    "serial_number": m.leaf.serial,
                    "received": rfc3339(m.received_at),
                    "next_rotation": rfc3339(m.rotate_at),
                    "seconds_to_next_rotation": left.as_secs(),
                    "time_to_next_rotation": human(left),
                })
            }
            None => json!({
                "identity": self.id().to_string(),
                "state": "PENDING",
            }),
        };
        if let Some(obj) = workload.as_object_mut() {
            match self.source() {
                super::Source::Ca { address } => {
                    obj.insert("source".into(), json!("ca"));
                    obj.insert("ca_address".into(), json!(address));
                }
                super::Source::Files(f) => {
                    obj.insert("source".into(), json!("files"));
                    obj.insert(
                        "cert_chain_file".into(),
                        json!(f.cert_chain.display().to_string()),
                    );
                    obj.insert("key_file".into(), json!(f.key.display().to_string()));
                }
            }
            obj.insert(
                "root_cert_file".into(),
                json!(roots.path.display().to_string()),
            );
            obj.insert("last_error".into(), json!(status.last_error));
            obj.insert("failed_attempts".into(), json!(status.failures));
        }
        json!({
            "certificates": certificates,
            "root": ca_cert,
            "workload": workload,
        })
    }
}
