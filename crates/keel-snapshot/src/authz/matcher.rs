//! The value matchers of an AuthorizationPolicy, parsed once from Istio's value syntax.
//!
//! Istio turns every value into an Envoy matcher when it generates a proxy's RBAC filter; Keel
//! does the same translation here, at compile time, so that the request path only compares
//! bytes. Each parser documents the Istio rule it follows (pilot/pkg/security/authz/matcher and
//! model/generator.go), because the details — `*` means "non-empty", not "anything"; a path
//! template's `{**}` may match nothing — are what users' policies depend on.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Istio's value syntax: `*` (present and non-empty), `abc*` (prefix), `*abc` (suffix), or an
/// exact value. Used for principals, hosts, methods, headers, claims and SNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: Istio generates the regex `.+`, so an empty value does not match.
    Present,
}

impl StringMatch {
    /// Parses one value; `*` is checked first so `*` never becomes an empty prefix or suffix.
    pub fn parse(value: &str) -> StringMatch {
        if value == "*" {
            StringMatch::Present
        } else if let Some(suffix) = value.strip_prefix('*') {
            StringMatch::Suffix(suffix.to_string())
        } else if let Some(prefix) = value.strip_suffix('*') {
            StringMatch::Prefix(prefix.to_string())
        } else {
            StringMatch::Exact(value.to_string())
        }
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(v) => s == v,
            StringMatch::Prefix(p) => s.starts_with(p.as_str()),
            StringMatch::Suffix(p) => s.ends_with(p.as_str()),
            StringMatch::Present => !s.is_empty(),
        }
    }

    /// ASCII case-insensitive matching, for `hosts` (Istio sets `ignore_case` on them).
    pub fn matches_ignore_case(&self, s: &str) -> bool {
        let s = s.as_bytes();
        match self {
            StringMatch::Exact(v) => s.eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Prefix(p) => {
                s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            StringMatch::Suffix(p) => {
                s.len() >= p.len() && s[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
            }
            StringMatch::Present => !s.is_empty(),
        }
    }
}

/// A namespace pattern. Istio matches `namespaces` with the regex `.*/ns/<value>/.*` on the
/// peer's SPIFFE id, every `*` in the value becoming `.*`; Keel matches the namespace parsed
/// from the id against the value as a glob, which is the same for well-formed ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Glob(pub String);

impl Glob {
    pub fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

/// `*` matches any run of bytes (possibly empty); everything else matches itself.
fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let mut parts = pattern.split(|&b| b == b'*');
    let Some(first) = parts.next() else {
        return s.is_empty();
    };
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&[u8]> = parts.collect();
    let Some(last) = pieces.pop() else {
        // No `*` at all: the pattern is a literal.
        return rest.is_empty();
    };
    for piece in pieces {
        match find(rest, piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `serviceAccounts` value: `sa` (in the policy's namespace) or `ns/sa`. Istio matches the
/// SPIFFE id with `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`; Keel compares the parsed parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    pub fn parse(value: &str, policy_namespace: &str) -> ServiceAccount {
        match value.split_once('/') {
            Some((ns, sa)) => ServiceAccount {
                namespace: ns.to_string(),
                name: sa.to_string(),
            },
            None => ServiceAccount {
                namespace: policy_namespace.to_string(),
                name: value.to_string(),
            },
        }
    }
}

/// A `requestPrincipals` (or `request.auth.principal`) value, `<iss>/<sub>`, split at the last
/// `/` (issuers are often URLs) into matchers on the JWT's `iss` and `sub` claims, with
/// Istio's wildcard rules: `*` any; `*x` suffix of the issuer when a `/` is present, else a
/// suffix of the subject; `x*` prefix of the subject when a `/` is present, else of the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtPrincipal {
    pub iss: StringMatch,
    pub sub: StringMatch,
}

impl JwtPrincipal {
    pub fn parse(value: &str) -> JwtPrincipal {
        let split = value.rfind('/').map(|i| (&value[..i], &value[i + 1..]));
        let exact = |s: &str| StringMatch::Exact(s.to_string());
        let (iss, sub) = if value == "*" {
            (StringMatch::Present, StringMatch::Present)
        } else if let Some(rest) = value.strip_prefix('*') {
            match split {
                Some(("*", sub)) => (StringMatch::Present, exact(sub)),
                Some((iss, sub)) => (StringMatch::Suffix(iss[1..].to_string()), exact(sub)),
                None => (StringMatch::Present, StringMatch::Suffix(rest.to_string())),
            }
        } else if let Some(rest) = value.strip_suffix('*') {
            match split {
                Some((iss, "*")) => (exact(iss), StringMatch::Present),
                Some((iss, sub)) => (exact(iss), StringMatch::Prefix(sub[..sub.len() - 1].into())),
                None => (StringMatch::Prefix(rest.to_string()), StringMatch::Present),
            }
        } else {
            match split {
                Some((iss, sub)) => (exact(iss), exact(sub)),
                None => (exact(value), exact("")),
            }
        };
        JwtPrincipal { iss, sub }
    }

    pub fn matches(&self, iss: &str, sub: &str) -> bool {
        self.iss.matches(iss) && self.sub.matches(sub)
    }
}

/// A `paths` value: Istio's string syntax, or a path template when it contains `{*}` or `{**}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    String(StringMatch),
    Template(PathTemplate),
}

impl PathMatch {
    /// Fails only for a template Istio's validation rejects (`{*}` after `{**}`).
    pub fn parse(value: &str) -> Result<PathMatch, String> {
        if value.contains("{*}") || value.contains("{**}") {
            PathTemplate::parse(value).map(PathMatch::Template)
        } else {
            Ok(PathMatch::String(StringMatch::parse(value)))
        }
    }

    /// `path` is the request path without its query string.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::String(m) => m.matches(path),
            PathMatch::Template(t) => t.matches(path),
        }
    }
}

/// Envoy's URI template as Istio uses it for `{*}`/`{**}` paths: `{*}` is one non-empty path
/// segment of RFC 3986 pchars; `{**}` is any run of pchars and `/`, possibly empty (so
/// `/foo/{**}` matches `/foo/` and `/foo/a/b` but not `/foo`), and may only be followed by
/// literal text. Kept as literal pieces so matching is a left-to-right scan, no regex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathTemplate {
    /// Literal text and `{*}` segments before any `{**}`.
    pub head: Vec<TemplatePart>,
    /// After a `{**}`: the literal text that must end the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_then: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    Literal(String),
    Segment,
}

impl PathTemplate {
    pub fn parse(value: &str) -> Result<PathTemplate, String> {
        let mut head = Vec::new();
        let mut rest = value;
        loop {
            let one = rest.find("{*}");
            let many = rest.find("{**}");
            match (one, many) {
                (Some(i), m) if m.is_none_or(|m| i < m) => {
                    if i > 0 {
                        head.push(TemplatePart::Literal(rest[..i].to_string()));
                    }
                    head.push(TemplatePart::Segment);
                    rest = &rest[i + 3..];
                }
                (_, Some(m)) => {
                    let tail = &rest[m + 4..];
                    if tail.contains("{*}") || tail.contains("{**}") {
                        return Err(format!("{value}: {{**}} is not the last operator"));
                    }
                    if m > 0 {
                        head.push(TemplatePart::Literal(rest[..m].to_string()));
                    }
                    return Ok(PathTemplate {
                        head,
                        rest_then: Some(tail.to_string()),
                    });
                }
                _ => {
                    if !rest.is_empty() {
                        head.push(TemplatePart::Literal(rest.to_string()));
                    }
                    return Ok(PathTemplate {
                        head,
                        rest_then: None,
                    });
                }
            }
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        let mut rest = path;
        for part in &self.head {
            match part {
                TemplatePart::Literal(l) => match rest.strip_prefix(l.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                TemplatePart::Segment => {
                    // Greedy is exact: what follows a segment is `/` or the end.
                    let n = rest.bytes().take_while(|&b| is_pchar(b)).count();
                    if n == 0 {
                        return false;
                    }
                    rest = &rest[n..];
                }
            }
        }
        match &self.rest_then {
            None => rest.is_empty(),
            Some(tail) => rest
                .strip_suffix(tail.as_str())
                .is_some_and(|mid| mid.bytes().all(|b| b == b'/' || is_pchar(b))),
        }
    }
}

/// The characters Envoy's URI template lets a segment contain (RFC 3986 pchar, with `%`).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// An `ipBlocks` value or ip condition: a CIDR, or one address (a /32 or /128).
pub fn parse_cidr(value: &str) -> Result<IpNet, String> {
    if value.contains('/') {
        value
            .parse::<IpNet>()
            .map_err(|e| format!("bad CIDR range ({value}): {e}"))
    } else {
        value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad IP address ({value})"))
    }
}

/// A `ports` value or `destination.port` condition.
pub fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|_| format!("bad port ({value}): must be a number in 0..65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_follow_istio_wildcards() {
        let cases = [
            ("GET", "GET", true),
            ("GET", "get", false),
            ("/info*", "/info/x", true),
            ("/info*", "/inf", false),
            ("*.json", "/a/b.json", true),
            ("*", "x", true),
            ("*", "", false),
        ];
        for (value, input, want) in cases {
            assert_eq!(
                StringMatch::parse(value).matches(input),
                want,
                "{value} vs {input}"
            );
        }
        let host = StringMatch::parse("*.Example.com");
        assert!(host.matches_ignore_case("API.example.COM"));
        assert!(!host.matches_ignore_case("example.org"));
        assert!(StringMatch::parse("Foo*").matches_ignore_case("foobar"));
    }

    #[test]
    fn namespace_globs() {
        for (pattern, ns, want) in [
            ("foo", "foo", true),
            ("foo", "foobar", false),
            ("foo*", "foobar", true),
            ("*bar", "foobar", true),
            ("f*r", "foobar", true),
            ("f*x*r", "foobar", false),
            ("*", "", true),
        ] {
            assert_eq!(Glob(pattern.into()).matches(ns), want, "{pattern} vs {ns}");
        }
    }

    #[test]
    fn jwt_principals_split_at_the_last_slash() {
        let cases = [
            (
                "https://issuer.example/alice",
                "https://issuer.example",
                "alice",
                true,
            ),
            (
                "https://issuer.example/alice",
                "https://issuer.example",
                "bob",
                false,
            ),
            ("*", "any", "one", true),
            ("*", "any", "", false),
            ("*/alice", "whoever", "alice", true),
            ("*example/alice", "https://issuer.example", "alice", true),
            ("*alice", "x", "malice", true),
            (
                "https://issuer.example/*",
                "https://issuer.example",
                "carol",
                true,
            ),
            (
                "https://issuer.example/al*",
                "https://issuer.example",
                "alice",
                true,
            ),
            ("issuer.ex*", "issuer.example", "dave", true),
            // Istio splits at the last `/` before looking at wildcards, so a prefix pattern
            // over a URL issuer constrains the subject instead.
            (
                "https://issuer.ex*",
                "https://issuer.example",
                "dave",
                false,
            ),
            ("https://issuer.ex*", "https:/", "issuer.example", true),
            ("no-slash", "no-slash", "", true),
        ];
        for (value, iss, sub, want) in cases {
            assert_eq!(
                JwtPrincipal::parse(value).matches(iss, sub),
                want,
                "{value}"
            );
        }
    }

    #[test]
    fn path_templates_follow_envoy_uri_templates() {
        let cases = [
            ("/foo/{*}", "/foo/bar", true),
            ("/foo/{*}", "/foo/bar/baz", false),
            ("/foo/{*}", "/foo/", false),
            ("/foo/{*}/baz", "/foo/bar/baz", true),
            ("/{*}/{*}/x", "/a/b/x", true),
            ("/{*}/{*}/x", "/a/x", false),
            ("/foo/{**}", "/foo/a/b/c", true),
            ("/foo/{**}", "/foo/", true),
            ("/foo/{**}", "/foo", false),
            ("/foo/{**}/bar", "/foo/a/b/bar", true),
            ("/foo/{**}/bar", "/foo/a/b/baz", false),
            ("/foo/{**}.txt", "/foo/a/b.txt", true),
            ("/{*}/foo/{**}", "/x/foo/y", true),
            ("/foo/{*}", "/foo/b?r", false),
        ];
        for (template, path, want) in cases {
            let m = PathMatch::parse(template).expect("template");
            assert_eq!(m.matches(path), want, "{template} vs {path}");
        }
        assert!(PathMatch::parse("/a/{**}/{*}").is_err());
    }

    /// Envoy compiles a URI template to a regex: `*` → `[pchar]+`, `**` → `[pchar/]*`, the
    /// rest literal. The scan above must agree with it on any path.
    fn envoy_regex(template: &str) -> regex::Regex {
        const LIT: &str = r"a-zA-Z0-9\-._~%!$&'()+,;:@=";
        let mut re = String::from("^");
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("{**}") {
                re.push_str(&format!("[{LIT}/]*"));
                rest = r;
            } else if let Some(r) = rest.strip_prefix("{*}") {
                re.push_str(&format!("[{LIT}]+"));
                rest = r;
            } else {
                let c = rest.chars().next().unwrap_or_default();
                re.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        re.push('$');
        regex::Regex::new(&re).expect("regex")
    }

    proptest::proptest! {
        #[test]
        fn templates_agree_with_envoys_regex(
            head in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "{*}"]), 0..4),
            many in proptest::bool::ANY,
            tail in proptest::collection::vec(proptest::sample::select(vec!["a", "b.txt"]), 0..2),
            path in "(/|a|b|\\.txt|\\?){0,12}",
        ) {
            let mut template = String::new();
            for seg in &head {
                template.push('/');
                template.push_str(seg);
            }
            if many {
                template.push_str("/{**}");
            }
            for seg in &tail {
                template.push('/');
                template.push_str(seg);
            }
            if template.is_empty() {
                template.push('/');
            }
            let ours = PathMatch::parse(&template).expect("template");
            let want = envoy_regex(&template).is_match(&path);
            proptest::prop_assert_eq!(ours.matches(&path), want, "{} vs {}", template, path);
        }
    }

    #[test]
    fn cidrs_and_ports() {
        let net = parse_cidr("10.1.0.0/16").expect("cidr");
        assert!(net.contains(&"10.1.2.3".parse::<IpAddr>().expect("ip")));
        assert!(!net.contains(&"10.2.0.1".parse::<IpAddr>().expect("ip")));
        let one = parse_cidr("192.0.2.7").expect("ip");
        assert!(one.contains(&"192.0.2.7".parse::<IpAddr>().expect("ip")));
        assert!(!one.contains(&"192.0.2.8".parse::<IpAddr>().expect("ip")));
        assert!(parse_cidr("2001:db8::/32").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("65536").is_err());
    }
}
