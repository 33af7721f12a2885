//! `x-forwarded-client-cert` (XFCC), as Envoy writes it for Istio: the app behind a sidecar
//! sees who called it over mTLS (`URI=spiffe://…/sa/sleep`), which is how Istio's
//! authentication task shows that a hop was mutual TLS.
//!
//! Istio's settings, which Keel follows: a sidecar's inbound side appends its element to what
//! the client sent (APPEND_FORWARD); outbound and gateway listeners drop what the client sent
//! (the app can't vouch for a certificate) and set their own when the client presented one
//! (SANITIZE_SET).

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::server::ConnInfo;
use crate::telemetry::Reporter;

pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// One XFCC element for a client certificate (`leaf`, DER), received by a proxy whose own
/// certificate names `by` (its first URI SAN; none for a gateway certificate without one):
/// `By=…;Hash=…;Subject="…";URI=…;DNS=…`, Envoy's fields for Istio's
/// `set_current_client_cert_details {subject, uri, dns}`.
pub fn element(by: Option<&str>, leaf: &[u8]) -> String {
    let mut out = String::new();
    if let Some(by) = by {
        let _ = write!(out, "By={};", quote(by));
    }
    out.push_str("Hash=");
    for b in ring::digest::digest(&ring::digest::SHA256, leaf).as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return out;
    };
    // Envoy always quotes the subject, in RFC 2253's order (last RDN first).
    let subject = rfc2253(cert.subject());
    let _ = write!(out, ";Subject=\"{}\"", subject.replace('"', "\\\""));
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::URI(u) => uris.push(*u),
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(*d),
                _ => {}
            }
        }
    }
    // Envoy names the first URI SAN; every DNS SAN.
    if let Some(u) = uris.first() {
        let _ = write!(out, ";URI={}", quote(u));
    }
    for d in dns {
        let _ = write!(out, ";DNS={}", quote(d));
    }
    out
}

/// The first URI SAN of a certificate (`By` of the elements a proxy holding it writes).
pub fn first_uri(leaf: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    })
}

/// XFCC values containing `,`, `;` or `=` are quoted (Envoy's rule), so that elements and
/// pairs still split.
fn quote(v: &str) -> String {
    if v.contains([',', ';', '=']) {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(
                        atv.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map(str::to_string)
                    .unwrap_or_else(|_| atv.attr_type().to_id_string());
                    let value = atv.as_str().map(escape_rdn).unwrap_or_default();
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rdn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Applies the listener's XFCC rule to a request's headers (see the module's comment).
pub fn apply(headers: &mut HeaderMap, conn: &ConnInfo) {
    let ours = conn
        .client_cert
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok());
    match conn.reporter {
        Reporter::Destination => {
            let Some(ours) = ours else { return };
            match headers.get(&X_FORWARDED_CLIENT_CERT) {
                Some(prior) => {
                    let mut joined = prior.as_bytes().to_vec();
                    joined.push(b',');
                    joined.extend_from_slice(ours.as_bytes());
                    if let Ok(v) = HeaderValue::from_bytes(&joined) {
                        headers.insert(&X_FORWARDED_CLIENT_CERT, v);
                    }
                }
                None => {
                    headers.insert(&X_FORWARDED_CLIENT_CERT, ours);
                }
            }
        }
        Reporter::Source => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
            if let Some(ours) = ours {
                headers.insert(&X_FORWARDED_CLIENT_CERT, ours);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_workload_certificate_gives_istios_element() {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://cluster.local/ns/foo/sa/sleep".try_into().unwrap(),
        )];
        let der = cert(p);
        let e = element(Some("spiffe://cluster.local/ns/foo/sa/httpbin"), &der);
        let hash: String = ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            e,
            format!(
                "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={hash};Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep"
            )
        );
    }

    #[test]
    fn subject_in_rfc2253_order_and_dns_names() {
        let mut p = rcgen::CertificateParams::new(vec!["client.example.com".into()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let e = element(None, &cert(p));
        assert!(!e.starts_with("By="), "{e}");
        assert!(
            e.ends_with(";Subject=\"CN=client,O=Acme\\, Inc\";DNS=client.example.com"),
            "{e}"
        );
    }

    fn conn(reporter: Reporter, client_cert: Option<&str>) -> ConnInfo {
        let a = "127.0.0.1:1".parse().unwrap();
        ConnInfo {
            listener: "l".into(),
            local: a,
            remote: a,
            original_dst: None,
            tls: client_cert.is_some(),
            reporter,
            peer_identity: None,
            peer_workload: None,
            client_cert: client_cert.map(Into::into),
            gateway_trusted_hops: None,
            forwarded_for: None,
        }
    }

    #[test]
    fn inbound_appends_and_outbound_sanitizes() {
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("By=a;URI=b"),
        );
        apply(&mut h, &conn(Reporter::Destination, Some("By=c;URI=d")));
        assert_eq!(h[&X_FORWARDED_CLIENT_CERT], "By=a;URI=b,By=c;URI=d");
        // Plaintext inbound: what came is forwarded untouched.
        apply(&mut h, &conn(Reporter::Destination, None));
        assert_eq!(h[&X_FORWARDED_CLIENT_CERT], "By=a;URI=b,By=c;URI=d");
        // An app can't claim a certificate through its own sidecar.
        apply(&mut h, &conn(Reporter::Source, None));
        assert!(!h.contains_key(&X_FORWARDED_CLIENT_CERT));
        h.insert(&X_FORWARDED_CLIENT_CERT, HeaderValue::from_static("forged"));
        apply(&mut h, &conn(Reporter::Source, Some("Hash=1")));
        assert_eq!(h[&X_FORWARDED_CLIENT_CERT], "Hash=1");
    }
}
