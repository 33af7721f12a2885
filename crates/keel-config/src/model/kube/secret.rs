//! `corev1.Secret` (gateway certificates, CA bundles, remote cluster kubeconfigs) and the
//! base64 coding its `data` uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::core::check_config_keys;
use crate::validate::{Validate, Validator};

/// `corev1.Secret`. `data` values are base64 as written; [`Secret::get`] decodes them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Secret {
    /// `Opaque` when absent; `kubernetes.io/tls` requires `tls.crt` and `tls.key`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain-text values, merged over `data` by the API server.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// Certificate material read from a Secret the way Istio reads gateway credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    /// PEM certificate chain (`cert`, else `tls.crt`).
    pub cert: Vec<u8>,
    /// PEM private key (`key`, else `tls.key`).
    pub key: Vec<u8>,
    /// PEM CA bundle for client validation (`cacert`, else `ca.crt`), if present.
    pub ca: Option<Vec<u8>>,
}

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

impl Secret {
    pub fn secret_type(&self) -> &str {
        self.type_.as_deref().unwrap_or("Opaque")
    }

    /// Every key, from `data` and `stringData`.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let mut keys: Vec<&str> = self
            .data
            .keys()
            .chain(self.string_data.keys())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.string_data.contains_key(key) || self.data.contains_key(key)
    }

    /// A value, decoded: `stringData` wins over `data`, as the API server merges them.
    /// `None` if absent; an error if the `data` value is not valid base64.
    pub fn get(&self, key: &str) -> Option<Result<Vec<u8>, String>> {
        if let Some(s) = self.string_data.get(key) {
            return Some(Ok(s.as_bytes().to_vec()));
        }
        self.data.get(key).map(|b| base64_decode(b))
    }

    /// A non-empty, decodable value.
    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key)?.ok().filter(|v| !v.is_empty())
    }

    /// Istio's gateway credential reading: the generic `cert`/`key`/`cacert` keys first,
    /// else the TLS-secret `tls.crt`/`tls.key`/`ca.crt`. `None` if no complete pair.
    pub fn tls_material(&self) -> Option<TlsMaterial> {
        let (cert, key) = match (self.value("cert"), self.value("key")) {
            (Some(c), Some(k)) => (c, k),
            _ => (self.value("tls.crt")?, self.value("tls.key")?),
        };
        let ca = self.value("cacert").or_else(|| self.value("ca.crt"));
        Some(TlsMaterial { cert, key, ca })
    }
}

impl Validate for Secret {
    fn validate(&self, v: &mut Validator) {
        check_config_keys(v, "data", self.data.keys());
        check_config_keys(v, "stringData", self.string_data.keys());
        v.field("data", |v| {
            for (k, b) in &self.data {
                if let Err(e) = base64_decode(b) {
                    v.error_at(
                        k,
                        format!("{e}: data values must be base64-encoded (use stringData for plain text)"),
                    );
                }
            }
        });
        if self.secret_type() == TLS_SECRET_TYPE {
            for key in ["tls.crt", "tls.key"] {
                if !self.contains_key(key) {
                    // A warning: the API server rejects it, but the object can still be
                    // read, and gateway analysis reports the unusable credential.
                    v.field("data", |v| {
                        v.warn(format!(
                            "Required value: a {TLS_SECRET_TYPE} Secret needs the key \"{key}\"; the API server rejects it and gateways cannot use it"
                        ))
                    });
                }
            }
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Standard base64 with padding, as Kubernetes decodes `data` (Go's `StdEncoding`:
/// line breaks are ignored, padding is required).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let illegal = |i: usize| format!("illegal base64 data at input byte {i}");
    let bytes = s.as_bytes();
    let skip = |b: u8| b == b'\r' || b == b'\n';
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let (mut acc, mut n, mut done) = (0u32, 0usize, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if skip(b) {
            i += 1;
            continue;
        }
        if done {
            return Err(illegal(i));
        }
        if b == b'=' {
            match n {
                2 => {
                    let mut j = i + 1;
                    while j < bytes.len() && skip(bytes[j]) {
                        j += 1;
                    }
                    if bytes.get(j) != Some(&b'=') {
                        return Err(illegal(j.min(bytes.len())));
                    }
                    out.push((acc >> 4) as u8);
                    i = j + 1;
                }
                3 => {
                    out.push((acc >> 10) as u8);
                    out.push((acc >> 2) as u8);
                    i += 1;
                }
                _ => return Err(illegal(i)),
            }
            done = true;
            continue;
        }
        let Some(d) = sextet(b) else {
            return Err(illegal(i));
        };
        acc = (acc << 6) | d;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
        i += 1;
    }
    if n != 0 && !done {
        return Err(illegal(bytes.len()));
    }
    Ok(out)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
