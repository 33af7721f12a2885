//! Finding a token where a rule says it is: a header (after its prefix), a query parameter,
//! a cookie.

use http::HeaderMap;
use keel_snapshot::jwt::TokenLocation;

/// A token found, and the header it came from (which `forwardOriginalToken: false` removes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub header: Option<String>,
}

/// The token at `location`, if any.
pub fn extract(
    location: &TokenLocation,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Found> {
    match location {
        TokenLocation::Header { name, prefix } => {
            headers.get_all(name.as_str()).iter().find_map(|v| {
                let value = v.to_str().ok()?;
                let token = strip_prefix(value, prefix)?;
                Some(Found {
                    token: token.to_string(),
                    header: Some(name.clone()),
                })
            })
        }
        TokenLocation::QueryParam { name } => query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (percent_decode(k)? == *name)
                .then(|| percent_decode(v))
                .flatten()
                .filter(|t| !t.is_empty())
                .map(|token| Found {
                    token,
                    header: None,
                })
        }),
        TokenLocation::Cookie { name } => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                let v = v.trim().trim_matches('"');
                (k.trim() == name && !v.is_empty()).then(|| Found {
                    token: v.to_string(),
                    header: None,
                })
            }),
    }
}

/// The token after `prefix`. The prefix compares case-insensitively (an auth scheme such as
/// `Bearer` is case-insensitive, RFC 9110); like Envoy, the token ends at the first character
/// that can't be part of a JWT, so `Bearer a.b.c, other` still yields `a.b.c`.
fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = value[prefix.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
        .unwrap_or(rest.len());
    let token = &rest[..end];
    (!token.is_empty()).then_some(token)
}

/// `%XX` and `+` decoded; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn header(name: &str, prefix: &str) -> TokenLocation {
        TokenLocation::Header {
            name: name.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn header_with_prefix() {
        let h = headers(&[("authorization", "bearer a.b.c, x")]);
        let found = extract(&header("authorization", "Bearer "), &h, None);
        assert_eq!(found.map(|f| f.token).as_deref(), Some("a.b.c"));
        let h = headers(&[("authorization", "Basic dXNlcg==")]);
        assert_eq!(extract(&header("authorization", "Bearer "), &h, None), None);
        let h = headers(&[("x-jwt", "a.b.c")]);
        assert_eq!(
            extract(&header("x-jwt", ""), &h, None)
                .and_then(|f| f.header)
                .as_deref(),
            Some("x-jwt")
        );
    }

    #[test]
    fn query_and_cookie() {
        let q = TokenLocation::QueryParam {
            name: "access_token".into(),
        };
        let found = extract(&q, &HeaderMap::new(), Some("a=1&access_token=x%2Ey.z&b"));
        assert_eq!(found.map(|f| f.token).as_deref(), Some("x.y.z"));
        assert_eq!(extract(&q, &HeaderMap::new(), Some("access_token=")), None);
        assert_eq!(
            extract(&q, &HeaderMap::new(), Some("access_token=%zz")),
            None
        );
        let c = TokenLocation::Cookie { name: "jwt".into() };
        let h = headers(&[("cookie", "a=1; jwt=\"t.o.k\""), ("cookie", "jwt=later")]);
        assert_eq!(
            extract(&c, &h, None).map(|f| f.token).as_deref(),
            Some("t.o.k")
        );
    }
}
