//! `gateway.SecretAnalyzer`: the Secrets Gateways name in `tls.credentialName`.
//!
//! The Secret is looked up in the namespace of the gateway's *workload* (the first pod its
//! selector matches), not the Gateway's, unless `credentialName` is written `ns/name`.
//! - IST0101 `Referenced selector not found` when no pod matches the selector (Istio also
//!   takes this branch when the first matching pod has no namespace);
//! - IST0101 `Referenced credentialName not found` when the Secret does not exist;
//! - IST0161 when it exists but is unusable: no non-empty `cert`/`key` (or `tls.crt`/`tls.key`)
//!   pair in `data`, a certificate that is not PEM, whose first PEM block does not hold DER
//!   X.509 certificates, or one outside its validity period now. `stringData` is ignored, as
//!   offline `istioctl analyze` does.

use keel_config::model::kube::Secret;
use keel_config::model::kube::secret::base64_decode;

use super::Analyzer;
use super::util_an1::{
    gateway_selector_path, selector_matches, selector_string, short_or_full_name,
};
use crate::context::AnalysisContext;
use crate::messages::{INVALID_GATEWAY_CREDENTIAL, Message, REFERENCED_RESOURCE_NOT_FOUND, q};

pub struct SecretAnalyzer;

impl Analyzer for SecretAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.SecretAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's referenced secrets for correctness"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let now = now_unix();
        for (r, gw) in ctx.gateways() {
            let gw_ns = ctx
                .pods()
                .find(|(p, _)| selector_matches(&gw.selector, &p.meta.labels))
                .map(|(p, _)| p.meta.namespace.as_str())
                .unwrap_or_default();
            if gw_ns.is_empty() {
                let sel = selector_string(&gw.selector);
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    gateway_selector_path(&sel).as_deref(),
                    format!("Referenced selector not found: {}", q(&sel)),
                ));
                continue;
            }
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(tls) = &server.tls else { continue };
                let cn = tls.credential_name.as_str();
                if cn.is_empty() {
                    continue;
                }
                let path = format!("spec.servers[{i}].tls.credentialName");
                let (ns, name) = short_or_full_name(gw_ns, cn);
                let secret = ctx
                    .secrets()
                    .find(|(s, _)| s.meta.namespace == ns && s.meta.name == name);
                match secret {
                    None => out.push(ctx.message(
                        REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        Some(&path),
                        format!("Referenced credentialName not found: {}", q(cn)),
                    )),
                    Some((_, s)) if !is_valid_secret(s, now) => out.push(ctx.message(
                        INVALID_GATEWAY_CREDENTIAL,
                        r,
                        Some(&path),
                        format!(
                            "The credential referenced by the Gateway {} in namespace {gw_ns} is invalid, which can cause the traffic not to work as expected.",
                            r.meta.name
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A non-empty decoded `data` value.
fn data_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    let v = base64_decode(s.data.get(key)?).ok()?;
    (!v.is_empty()).then_some(v)
}

/// `isValidSecret`: `kube.ExtractCertInfo` then `xds.ValidateCertificate` at `now`.
pub(crate) fn is_valid_secret(s: &Secret, now: i64) -> bool {
    let cert = match (data_value(s, "cert"), data_value(s, "key")) {
        (Some(c), Some(_)) => c,
        _ => match (data_value(s, "tls.crt"), data_value(s, "tls.key")) {
            (Some(c), Some(_)) => c,
            _ => return false,
        },
    };
    let Some(der) = pem_first_block(&cert) else {
        return false;
    };
    match parse_certificates_validity(&der) {
        Some(validities) => validities
            .iter()
            .all(|&(not_before, not_after)| now >= not_before && now <= not_after),
        None => false,
    }
}

/// Go's `pem.Decode`: the body of the first well-formed PEM block, whatever its type.
pub(crate) fn pem_first_block(data: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(data);
    let mut rest: &str = &text;
    while let Some(at) = rest.find("-----BEGIN ") {
        let after = &rest[at + "-----BEGIN ".len()..];
        rest = after;
        let line_end = after.find('\n')?;
        let type_line = after[..line_end].trim_end_matches('\r');
        let Some(label) = type_line.strip_suffix("-----") else {
            continue;
        };
        let body_start = &after[line_end + 1..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            continue;
        };
        let body = &body_start[..end];
        // Optional `Key: value` headers end at a blank line.
        let body = if body.lines().next().is_some_and(|l| l.contains(':')) {
            match body.find("\n\n").or_else(|| body.find("\r\n\r\n")) {
                Some(blank) => &body[blank..],
                None => continue,
            }
        } else {
            body
        };
        let cleaned: String = body.chars().filter(|c| !matches!(c, ' ' | '\t')).collect();
        if let Ok(der) = base64_decode(&cleaned) {
            return Some(der);
        }
    }
    None
}

/// One DER TLV: tag, contents, and the remaining input.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        // DER: the shortest form, so long lengths are at least 128 with no leading zero.
        if len < 0x80 || rest[0] == 0 {
            return None;
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = der_tlv(input)?;
    (t == tag).then_some((body, rest))
}

const SEQUENCE: u8 = 0x30;

/// `x509.ParseCertificates`, reduced to the structure Keel checks: each certificate's
/// `(notBefore, notAfter)` in Unix seconds, or `None` if the DER is not a sequence of
/// well-formed certificates.
pub(crate) fn parse_certificates_validity(mut der: &[u8]) -> Option<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (cert, rest) = der_expect(der, SEQUENCE)?;
        der = rest;
        let (tbs, after_tbs) = der_expect(cert, SEQUENCE)?;
        let (_sig_alg, after_alg) = der_expect(after_tbs, SEQUENCE)?;
        let (_sig, after_sig) = der_expect(after_alg, 0x03)?;
        if !after_sig.is_empty() {
            return None;
        }
        let mut t = tbs;
        if t.first() == Some(&0xa0) {
            let (_version, rest) = der_expect(t, 0xa0)?;
            t = rest;
        }
        let (_serial, t) = der_expect(t, 0x02)?;
        let (_sig_alg, t) = der_expect(t, SEQUENCE)?;
        let (_issuer, t) = der_expect(t, SEQUENCE)?;
        let (validity, t) = der_expect(t, SEQUENCE)?;
        let (_subject, t) = der_expect(t, SEQUENCE)?;
        let (_spki, _) = der_expect(t, SEQUENCE)?;
        let (tag1, nb, v) = der_tlv(validity)?;
        let (tag2, na, v) = der_tlv(v)?;
        if !v.is_empty() {
            return None;
        }
        out.push((parse_time(tag1, nb)?, parse_time(tag2, na)?));
    }
    if out.is_empty() { None } else { Some(out) }
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, body: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(body).ok()?;
    let digits = s.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| digits.get(a..b)?.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0, 2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 14) => (num(0, 4)?, 4),
        _ => return None,
    };
    let month = num(rest, rest + 2)?;
    let day = num(rest + 2, rest + 4)?;
    let hour = num(rest + 4, rest + 6)?;
    let min = num(rest + 6, rest + 8)?;
    let sec = num(rest + 8, rest + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(0x17, b"700101000001Z"), Some(1));
        assert_eq!(parse_time(0x18, b"20000301000000Z"), Some(11_017 * 86_400));
        assert_eq!(parse_time(0x17, b"20000301000000Z"), None);
    }

    #[test]
    fn pem_blocks() {
        let pem = b"junk\n-----BEGIN X-----\nAAEC\n-----END X-----\n";
        assert_eq!(pem_first_block(pem), Some(vec![0, 1, 2]));
        assert_eq!(pem_first_block(b"hush hush"), None);
    }
}
