//! The 64-bit hash of a request for consistent hashing, computed as Envoy's hash policies do
//! (`source/common/http/hash_policy.cc`): XXH64 (seed 0) of
//!
//! * a header: all its values, sorted, concatenated (so value order does not matter);
//! * a cookie: its value (quotes stripped); when the request has none and the policy has a TTL,
//!   a new value is generated, hashed, and returned as a `Set-Cookie` for the response — with no
//!   TTL Envoy generates nothing and the request is balanced at random;
//! * the source IP, printed without port (`10.1.2.3`, `2001:db8::1`);
//! * a query parameter: the first one of that name, value as written (not URL-decoded).
//!
//! A missing key gives no hash, and the balancer picks at random.

use http::{HeaderMap, HeaderName};
use keel_snapshot::HashKey;

use super::PickContext;
use super::rng::SplitMix;
use super::xxhash::xxh64;

/// A [`HashKey`] made ready for the request path.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `None` when the configured name is not a valid header name (no request can carry it).
    Header(Option<HeaderName>),
    Cookie {
        name: String,
        path: String,
        ttl_secs: Option<u64>,
    },
    SourceIp,
    QueryParam(String),
}

/// The hash of one request, and the cookie to set when one was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHash {
    pub hash: Option<u64>,
    pub set_cookie: Option<String>,
}

impl KeySource {
    pub fn new(key: &HashKey) -> KeySource {
        match key {
            HashKey::Header(name) => {
                KeySource::Header(HeaderName::from_bytes(name.as_bytes()).ok())
            }
            HashKey::Cookie {
                name,
                path,
                ttl_secs,
            } => KeySource::Cookie {
                name: name.clone(),
                path: path.clone(),
                ttl_secs: *ttl_secs,
            },
            HashKey::SourceIp => KeySource::SourceIp,
            HashKey::QueryParam(name) => KeySource::QueryParam(name.clone()),
        }
    }

    /// Hashes the request; `rng` supplies new cookie values.
    pub fn hash(&self, ctx: &PickContext<'_>, rng: &SplitMix) -> RequestHash {
        let hash = match self {
            KeySource::Header(name) => name.as_ref().and_then(|n| header_hash(ctx.headers, n)),
            KeySource::Cookie {
                name,
                path,
                ttl_secs,
            } => {
                if let Some(value) = cookie_value(ctx.headers, name) {
                    Some(xxh64(value.as_bytes(), 0))
                } else if let Some(ttl) = ttl_secs {
                    // Envoy derives the value from the connection's addresses; any unguessable
                    // value does, as long as it is hashed exactly as it will come back.
                    let value = format!("{:016x}", rng.next_u64());
                    return RequestHash {
                        hash: Some(xxh64(value.as_bytes(), 0)),
                        set_cookie: Some(set_cookie(name, &value, path, *ttl)),
                    };
                } else {
                    None
                }
            }
            KeySource::SourceIp => ctx.source_ip.map(|ip| xxh64(ip.to_string().as_bytes(), 0)),
            KeySource::QueryParam(name) => ctx
                .query
                .and_then(|q| query_value(q, name))
                .map(|v| xxh64(v.as_bytes(), 0)),
        };
        RequestHash {
            hash,
            set_cookie: None,
        }
    }
}

fn header_hash(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    match values.len() {
        0 => None,
        1 => Some(xxh64(values[0], 0)),
        _ => {
            values.sort_unstable();
            Some(xxh64(&values.concat(), 0))
        }
    }
}

/// The first cookie called `name` in the request's `Cookie` headers, surrounding quotes removed.
/// An empty value counts as absent (as in Envoy).
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim_start().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
        .filter(|v| !v.is_empty())
}

/// The first value of query parameter `name` (`a` alone counts as `a=`).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `name=value; Path=/p; Max-Age=N; HttpOnly`. A TTL of 0 makes a session cookie (no
/// `Max-Age`), and an empty path is left out, as Envoy does.
pub fn set_cookie(name: &str, value: &str, path: &str, ttl_secs: u64) -> String {
    let mut cookie = format!("{name}={value}");
    if !path.is_empty() {
        cookie.push_str("; Path=");
        cookie.push_str(path);
    }
    if ttl_secs > 0 {
        cookie.push_str(&format!("; Max-Age={ttl_secs}"));
    }
    cookie.push_str("; HttpOnly");
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ctx<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> PickContext<'a> {
        PickContext {
            headers,
            source_ip: None,
            query,
            exclude: &[],
            original_dst: None,
            other_levels: false,
        }
    }

    #[test]
    fn header_values_hash_in_any_order() {
        let key = KeySource::new(&HashKey::Header("x-user".into()));
        let rng = SplitMix::new(1);
        let mut one = HeaderMap::new();
        one.insert("x-user", HeaderValue::from_static("alice"));
        assert_eq!(
            key.hash(&ctx(&one, None), &rng).hash,
            Some(xxh64(b"alice", 0))
        );
        let mut ab = HeaderMap::new();
        ab.append("x-user", HeaderValue::from_static("a"));
        ab.append("x-user", HeaderValue::from_static("b"));
        let mut ba = HeaderMap::new();
        ba.append("x-user", HeaderValue::from_static("b"));
        ba.append("x-user", HeaderValue::from_static("a"));
        let h = key.hash(&ctx(&ab, None), &rng).hash;
        assert_eq!(h, key.hash(&ctx(&ba, None), &rng).hash);
        assert_eq!(h, Some(xxh64(b"ab", 0)));
        assert_eq!(key.hash(&ctx(&HeaderMap::new(), None), &rng).hash, None);
    }

    #[test]
    fn cookies_are_found_among_others_and_unquoted() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=\"xyz\""),
        );
        assert_eq!(cookie_value(&h, "session"), Some("xyz"));
        assert_eq!(cookie_value(&h, "a"), Some("1"));
        assert_eq!(cookie_value(&h, "b"), None);
        h.append(http::header::COOKIE, HeaderValue::from_static("b=2;c="));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn a_missing_cookie_is_generated_only_with_a_ttl() {
        let rng = SplitMix::new(9);
        let headers = HeaderMap::new();
        let with_ttl = KeySource::new(&HashKey::Cookie {
            name: "sticky".into(),
            path: "/p".into(),
            ttl_secs: Some(60),
        });
        let out = with_ttl.hash(&ctx(&headers, None), &rng);
        let cookie = out.set_cookie.unwrap();
        let value = cookie
            .strip_prefix("sticky=")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        assert_eq!(value.len(), 16);
        assert_eq!(
            cookie,
            format!("sticky={value}; Path=/p; Max-Age=60; HttpOnly")
        );
        // Sending the cookie back hashes to the same value.
        let mut back = HeaderMap::new();
        back.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&format!("sticky={value}")).unwrap(),
        );
        let again = with_ttl.hash(&ctx(&back, None), &rng);
        assert_eq!(
            again,
            RequestHash {
                hash: out.hash,
                set_cookie: None
            }
        );
        let no_ttl = KeySource::new(&HashKey::Cookie {
            name: "sticky".into(),
            path: "/".into(),
            ttl_secs: None,
        });
        assert_eq!(
            no_ttl.hash(&ctx(&headers, None), &rng),
            RequestHash::default()
        );
    }

    #[test]
    fn set_cookie_format() {
        assert_eq!(
            set_cookie("s", "v", "/", 3600),
            "s=v; Path=/; Max-Age=3600; HttpOnly"
        );
        assert_eq!(set_cookie("s", "v", "", 0), "s=v; HttpOnly");
    }

    #[test]
    fn source_ip_and_query_parameters() {
        let rng = SplitMix::new(1);
        let headers = HeaderMap::new();
        let ip = KeySource::new(&HashKey::SourceIp);
        let mut c = ctx(&headers, None);
        assert_eq!(ip.hash(&c, &rng).hash, None);
        c.source_ip = Some("10.1.2.3".parse().unwrap());
        assert_eq!(ip.hash(&c, &rng).hash, Some(xxh64(b"10.1.2.3", 0)));

        let q = KeySource::new(&HashKey::QueryParam("user".into()));
        assert_eq!(
            q.hash(&ctx(&headers, Some("a=1&user=bob&user=eve")), &rng)
                .hash,
            Some(xxh64(b"bob", 0))
        );
        assert_eq!(
            q.hash(&ctx(&headers, Some("user")), &rng).hash,
            Some(xxh64(b"", 0))
        );
        assert_eq!(q.hash(&ctx(&headers, Some("username=x")), &rng).hash, None);
        assert_eq!(q.hash(&ctx(&headers, None), &rng).hash, None);
    }
}
