//! URLs as Go's `net/url.Parse` reads them: what the API server accepts in a webhook's
//! `clientConfig.url`, and what `istioctl analyze` calls "an invalid format". Errors keep Go's
//! wording (`parse "…": missing protocol scheme`) so they match what users see from kubectl.

/// The parts of a parsed URL that webhook checks look at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoUrl {
    /// Lower-cased, empty if none.
    pub scheme: String,
    /// Set for `scheme:opaque` forms (`https:host`), which have no host.
    pub opaque: String,
    /// The `user[:password]` before `@`, as written.
    pub user: Option<String>,
    /// `host[:port]`, unescaped (an IPv6 literal keeps its brackets).
    pub host: String,
    pub path: String,
    pub raw_query: String,
    pub fragment: String,
}

impl GoUrl {
    /// Go's `URL.Hostname()`: the host without port and without IPv6 brackets.
    pub fn hostname(&self) -> &str {
        let mut host = self.host.as_str();
        if let Some(colon) = host.rfind(':')
            && valid_optional_port(&host[colon..])
        {
            host = &host[..colon];
        }
        if host.starts_with('[') && host.ends_with(']') && host.len() >= 2 {
            host = &host[1..host.len() - 1];
        }
        host
    }

    /// Go's `URL.Port()`: the port digits, empty if none.
    pub fn port(&self) -> &str {
        match self.host.rfind(':') {
            Some(colon) if valid_optional_port(&self.host[colon..]) => &self.host[colon + 1..],
            _ => "",
        }
    }
}

/// `url.Parse`. The error is Go's `*url.Error` text: `parse "<url>": <reason>`.
pub fn parse(raw: &str) -> Result<GoUrl, String> {
    let (u, frag) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let wrap = |e: String| format!("parse {}: {e}", go_quote(u));
    let mut url = parse_no_fragment(u).map_err(wrap)?;
    if let Some(f) = frag {
        url.fragment =
            unescape(f, Mode::Fragment).map_err(|e| format!("parse {}: {e}", go_quote(raw)))?;
    }
    Ok(url)
}

fn parse_no_fragment(raw: &str) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut url = GoUrl::default();
    if raw == "*" {
        url.path = "*".into();
        return Ok(url);
    }
    let (scheme, rest) = scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    let mut rest = rest;
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((r, q)) = rest.split_once('?') {
        url.raw_query = q.to_string();
        rest = r;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        let (user, host) = authority_parts(authority)?;
        url.user = user;
        url.host = host;
        rest = path;
    }
    url.path = unescape(rest, Mode::Path)?;
    Ok(url)
}

/// `getScheme`: the scheme and the rest, or no scheme when the text doesn't start with one.
fn scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// `parseAuthority`: user info (kept as written) and the unescaped host.
fn authority_parts(authority: &str) -> Result<(Option<String>, String), String> {
    let (user, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let host = parse_host(host)?;
    if let Some(u) = user {
        let valid = u
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
        if !valid {
            return Err("net/url: invalid userinfo".into());
        }
        match u.split_once(':') {
            Some((name, password)) => {
                unescape(name, Mode::UserPassword)?;
                unescape(password, Mode::UserPassword)?;
            }
            None => {
                unescape(u, Mode::UserPassword)?;
            }
        }
    }
    Ok((user.map(str::to_string), host))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {} after host", go_quote(colon_port)));
        }
        if let Some(zone) = host[..i].find("%25") {
            let a = unescape(&host[..zone], Mode::Host)?;
            let b = unescape(&host[zone..i], Mode::Zone)?;
            let c = unescape(&host[i..], Mode::Host)?;
            return Ok(a + &b + &c);
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {} after host", go_quote(colon_port)));
        }
    }
    unescape(host, Mode::Host)
}

/// `validOptionalPort`: empty, or `:` followed by digits only.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

/// Whether Go would require `c` to be escaped in a host (`shouldEscape` for `encodeHost`).
fn host_needs_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c))
}

/// `unescape`: decodes `%XX`, with Go's checks per URL part.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    let end = (i + 3).min(b.len());
                    return Err(escape_error(&s[i..end]));
                }
                let v = (hex(b[i + 1]) << 4) | hex(b[i + 2]);
                let three = &s[i..i + 3];
                // In a host, %-encoding is only for non-ASCII bytes (RFC 3986 §3.2.2).
                if mode == Mode::Host && hex(b[i + 1]) < 8 && three != "%25" {
                    return Err(escape_error(three));
                }
                if mode == Mode::Zone && three != "%25" && v != b' ' && host_needs_escape(v) {
                    return Err(escape_error(three));
                }
                out.push(v);
                i += 3;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_needs_escape(c) {
                    return Err(format!(
                        "invalid character {} in host name",
                        go_quote(&s[i..i + 1])
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

fn escape_error(s: &str) -> String {
    format!("invalid URL escape {}", go_quote(s))
}

/// Go's `%q` for the short strings in URL errors.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let u = parse("https://user:pw@istiod.example.com:15017/inject/cluster/c1?x=1#frag")
            .expect("valid");
        assert_eq!(u.scheme, "https");
        assert_eq!(u.user.as_deref(), Some("user:pw"));
        assert_eq!(u.host, "istiod.example.com:15017");
        assert_eq!(u.hostname(), "istiod.example.com");
        assert_eq!(u.port(), "15017");
        assert_eq!(u.path, "/inject/cluster/c1");
        assert_eq!(u.raw_query, "x=1");
        assert_eq!(u.fragment, "frag");

        let u = parse("https://[2001:db8::1]:443/validate").expect("ipv6");
        assert_eq!(u.hostname(), "2001:db8::1");
        let u = parse("https://1.1.1.1:5100/inject").expect("ipv4");
        assert_eq!(u.hostname(), "1.1.1.1");
        // No scheme: all path, no host.
        let u = parse("istiod.example.com/inject").expect("path only");
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("", "istiod.example.com/inject")
        );
        // `scheme:opaque` has no host either.
        let u = parse("istiod.example.com:443/inject").expect("opaque");
        assert_eq!(u.scheme, "istiod.example.com");
        assert_eq!(u.hostname(), "");
        assert_eq!(parse("").expect("empty"), GoUrl::default());
    }

    #[test]
    fn rejects_like_go() {
        let cases = [
            ("://x", "parse \"://x\": missing protocol scheme"),
            (
                "https://a b/",
                "parse \"https://a b/\": invalid character \" \" in host name",
            ),
            (
                "https://host:port/",
                "parse \"https://host:port/\": invalid port \":port\" after host",
            ),
            (
                "https://[::1/",
                "parse \"https://[::1/\": missing ']' in host",
            ),
            (
                "https://h/%zz",
                "parse \"https://h/%zz\": invalid URL escape \"%zz\"",
            ),
            (
                "https://h%41/",
                "parse \"https://h%41/\": invalid URL escape \"%41\"",
            ),
            (
                "https://h/x#%g",
                "parse \"https://h/x#%g\": invalid URL escape \"%g\"",
            ),
            (
                "https://a{b}@h/",
                "parse \"https://a{b}@h/\": net/url: invalid userinfo",
            ),
            (
                "https://h/\n",
                "parse \"https://h/\\n\": net/url: invalid control character in URL",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse(url), Err(want.to_string()), "{url}");
        }
        // A scheme can't start with a digit, so `1a:b` is a path whose first segment has a colon.
        assert_eq!(
            parse("1a:b"),
            Err("parse \"1a:b\": first path segment in URL cannot contain colon".to_string())
        );
    }
}
