//! Value checks for Istio annotations (Istio's `pkg/kube/inject/validate.go`,
//! `AnnotationValidation`), with the error texts Go produces, for IST0125 InvalidAnnotation.
//!
//! Checked: `sidecar.istio.io/interceptionMode`, `status.sidecar.istio.io/port`, the three
//! `readiness.status.sidecar.istio.io/*` numbers, the `traffic.sidecar.istio.io/*` CIDR and port
//! lists, `prometheus.istio.io/merge-metrics`. Istio also checks `proxy.istio.io/config` by
//! decoding it into a ProxyConfig and running its mesh validation; Keel does not (yet).

use crate::messages::q;

/// The error Istio reports for `value` of annotation `name`, if it checks that annotation and
/// the value fails.
pub fn check(name: &str, value: &str) -> Option<String> {
    let result = match name {
        "sidecar.istio.io/interceptionMode" => interception_mode(value),
        "status.sidecar.istio.io/port" => {
            parse_port(value).map_err(|e| format!("excludeInboundPorts invalid: {e}"))
        }
        "readiness.status.sidecar.istio.io/initialDelaySeconds"
        | "readiness.status.sidecar.istio.io/periodSeconds"
        | "readiness.status.sidecar.istio.io/failureThreshold" => {
            parse_uint(value, u64::from(u32::MAX)).map(drop)
        }
        "traffic.sidecar.istio.io/includeOutboundIPRanges" => {
            if value == "*" {
                Ok(())
            } else {
                cidr_list(value).map_err(|e| format!("includeIPRanges invalid: {e}"))
            }
        }
        "traffic.sidecar.istio.io/excludeOutboundIPRanges" => {
            cidr_list(value).map_err(|e| format!("excludeIPRanges invalid: {e}"))
        }
        "traffic.sidecar.istio.io/includeInboundPorts" => {
            if value == "*" {
                Ok(())
            } else {
                port_list("includeInboundPorts", value)
            }
        }
        "traffic.sidecar.istio.io/excludeInboundPorts" => port_list("excludeInboundPorts", value),
        "traffic.sidecar.istio.io/excludeOutboundPorts" => port_list("excludeOutboundPorts", value),
        "prometheus.istio.io/merge-metrics" => parse_bool(value),
        _ => Ok(()),
    };
    result.err()
}

fn interception_mode(mode: &str) -> Result<(), String> {
    match mode {
        "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
        _ => Err(format!(
            "interceptionMode invalid, use REDIRECT,TPROXY,NONE: {mode}"
        )),
    }
}

/// `parsePorts`: the trimmed list split on `,`, each a port; errors are wrapped twice, as in Go.
fn port_list(parameter: &str, ports: &str) -> Result<(), String> {
    let ports = ports.trim();
    if ports.is_empty() {
        return Ok(());
    }
    for p in ports.split(',') {
        if let Err(e) = parse_port(p) {
            return Err(format!(
                "{parameter} invalid: failed parsing port '{p}': {e}"
            ));
        }
    }
    Ok(())
}

/// `parsePort`: a trimmed 16-bit unsigned decimal.
fn parse_port(port: &str) -> Result<(), String> {
    parse_uint(port.trim(), u64::from(u16::MAX))
        .map(drop)
        .map_err(|e| format!("failed parsing port '{port}': {e}"))
}

/// Go's `strconv.ParseUint(s, 10, bits)` with `max` = 2^bits - 1: the first problem met
/// scanning left to right wins (a bad digit, or overflow).
fn parse_uint(s: &str, max: u64) -> Result<u64, String> {
    let syntax = || format!("strconv.ParseUint: parsing {}: invalid syntax", q(s));
    let range = || format!("strconv.ParseUint: parsing {}: value out of range", q(s));
    if s.is_empty() {
        return Err(syntax());
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(syntax());
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .filter(|n| *n <= max)
            .ok_or_else(range)?;
    }
    Ok(n)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Result<(), String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false"
        | "False" => Ok(()),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            q(s)
        )),
    }
}

/// `validateCIDRList`: each `,`-separated entry (untrimmed) must be a prefix.
fn cidr_list(cidrs: &str) -> Result<(), String> {
    if cidrs.is_empty() {
        return Ok(());
    }
    for cidr in cidrs.split(',') {
        if let Err(e) = parse_prefix(cidr) {
            return Err(format!("failed parsing cidr '{cidr}': {e}"));
        }
    }
    Ok(())
}

/// Go's `netip.ParsePrefix`, for its error text.
fn parse_prefix(s: &str) -> Result<(), String> {
    let fail = |msg: String| format!("netip.ParsePrefix({}): {msg}", q(s));
    let Some(slash) = s.rfind('/') else {
        return Err(fail("no '/'".to_string()));
    };
    let (addr, bits) = (&s[..slash], &s[slash + 1..]);
    let ip = parse_addr(addr).map_err(|e| fail(e.to_string()))?;
    if ip.zoned {
        return Err(fail("IPv6 zones cannot be present in a prefix".to_string()));
    }
    let bad_bits = || fail(format!("bad bits after slash: {}", q(bits)));
    let first = bits.as_bytes().first().copied().unwrap_or(0);
    if bits.len() > 1 && !(b'1'..=b'9').contains(&first) {
        return Err(bad_bits());
    }
    // strconv.Atoi: digits (a lone sign or nothing fails), at most an int64.
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_bits());
    }
    let n: i64 = bits.parse().map_err(|_| bad_bits())?;
    let max = if ip.v6 { 128 } else { 32 };
    if n > max {
        return Err(fail("prefix length out of range".to_string()));
    }
    Ok(())
}

struct Addr {
    v6: bool,
    zoned: bool,
}

/// `netip.parseAddrError`: `ParseAddr("in"): msg (at "rest")`.
struct AddrError<'a> {
    input: &'a str,
    msg: &'static str,
    at: &'a str,
}

impl std::fmt::Display for AddrError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParseAddr({}): {}", q(self.input), self.msg)?;
        if !self.at.is_empty() {
            write!(f, " (at {})", q(self.at))?;
        }
        Ok(())
    }
}

/// Go's `netip.ParseAddr`: the first `.`, `:` or `%` decides the form.
fn parse_addr(s: &str) -> Result<Addr, AddrError<'_>> {
    let err = |msg| AddrError {
        input: s,
        msg,
        at: "",
    };
    for b in s.bytes() {
        match b {
            b'.' => return ipv4_fields(s, s).map(|()| Addr::v4()),
            b':' => return parse_ipv6(s),
            b'%' => return Err(err("missing IPv6 address")),
            _ => {}
        }
    }
    Err(err("unable to parse IP"))
}

impl Addr {
    fn v4() -> Addr {
        Addr {
            v6: false,
            zoned: false,
        }
    }
}

/// `parseIPv4Fields` over `part` (a suffix of `input`, which errors name).
fn ipv4_fields<'a>(input: &'a str, part: &'a str) -> Result<(), AddrError<'a>> {
    let err = |msg, at| AddrError { input, msg, at };
    let b = part.as_bytes();
    let (mut val, mut pos, mut digits) = (0u32, 0, 0);
    for i in 0..b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return Err(err("IPv4 field has octet with leading zero", ""));
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return Err(err("IPv4 field has value >255", ""));
            }
        } else if c == b'.' {
            if i == 0 || i == b.len() - 1 || b[i - 1] == b'.' {
                return Err(err("IPv4 field must have at least one digit", &part[i..]));
            }
            if pos == 3 {
                return Err(err("IPv4 address too long", ""));
            }
            pos += 1;
            val = 0;
            digits = 0;
        } else {
            return Err(err("unexpected character", &part[i..]));
        }
    }
    if pos < 3 {
        return Err(err("IPv4 address too short", ""));
    }
    Ok(())
}

/// Go's `parseIPv6` (newest form: embedded IPv4 errors name the whole input).
fn parse_ipv6(input: &str) -> Result<Addr, AddrError<'_>> {
    let err = |msg, at| AddrError { input, msg, at };
    let (mut s, zone) = match input.find('%') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, ""),
    };
    if input.contains('%') && zone.is_empty() {
        return Err(err("zone must be a non-empty string", ""));
    }
    let addr = Addr {
        v6: true,
        zoned: !zone.is_empty(),
    };
    let mut ellipsis: Option<usize> = None;
    if s.starts_with("::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok(addr);
        }
    }
    let mut i = 0;
    while i < 16 {
        let b = s.as_bytes();
        let mut off = 0;
        let mut acc: u32 = 0;
        while off < b.len() {
            let Some(d) = (b[off] as char).to_digit(16) else {
                break;
            };
            acc = (acc << 4) + d;
            if off > 3 {
                return Err(err("each group must have 4 or less digits", s));
            }
            if acc > u32::from(u16::MAX) {
                return Err(err("IPv6 field has value >=2^16", s));
            }
            off += 1;
        }
        if off == 0 {
            return Err(err(
                "each colon-separated field must have at least one digit",
                s,
            ));
        }
        if off < b.len() && b[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return Err(err(
                    "embedded IPv4 address must replace the final 2 fields of the address",
                    s,
                ));
            }
            if i + 4 > 16 {
                return Err(err(
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                    s,
                ));
            }
            ipv4_fields(input, s)?;
            s = "";
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if !s.starts_with(':') {
            return Err(err("unexpected character, want colon", s));
        } else if s.len() == 1 {
            return Err(err("colon must be followed by more characters", s));
        }
        s = &s[1..];
        if s.starts_with(':') {
            if ellipsis.is_some() {
                return Err(err("multiple :: in address", s));
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return Err(err("trailing garbage after address", s));
    }
    if i < 16 && ellipsis.is_none() {
        return Err(err("address string too short", ""));
    }
    if i >= 16 && ellipsis.is_some() {
        return Err(err("the :: must expand to at least one field of zeros", ""));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(name: &str, value: &str) -> String {
        check(name, value).unwrap_or_default()
    }

    #[test]
    fn numbers_and_bools() {
        let delay = "readiness.status.sidecar.istio.io/initialDelaySeconds";
        assert_eq!(check(delay, "10"), None);
        assert_eq!(
            bad(delay, "bar"),
            "strconv.ParseUint: parsing \"bar\": invalid syntax"
        );
        assert_eq!(
            bad(delay, "4294967296"),
            "strconv.ParseUint: parsing \"4294967296\": value out of range"
        );
        assert_eq!(
            bad(delay, "99999999999999999999x"),
            "strconv.ParseUint: parsing \"99999999999999999999x\": value out of range"
        );
        assert_eq!(
            bad(delay, ""),
            "strconv.ParseUint: parsing \"\": invalid syntax"
        );
        assert_eq!(
            bad(delay, "-1"),
            "strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert_eq!(check("prometheus.istio.io/merge-metrics", "True"), None);
        assert_eq!(
            bad("prometheus.istio.io/merge-metrics", "yes"),
            "strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
        assert_eq!(
            bad("status.sidecar.istio.io/port", " 70000"),
            "excludeInboundPorts invalid: failed parsing port ' 70000': strconv.ParseUint: parsing \"70000\": value out of range"
        );
        assert_eq!(
            bad("sidecar.istio.io/interceptionMode", "redirect"),
            "interceptionMode invalid, use REDIRECT,TPROXY,NONE: redirect"
        );
        assert_eq!(check("sidecar.istio.io/interceptionMode", "TPROXY"), None);
    }

    #[test]
    fn port_lists() {
        let inbound = "traffic.sidecar.istio.io/includeInboundPorts";
        assert_eq!(check(inbound, "*"), None);
        assert_eq!(check(inbound, " 80, 443 "), None);
        assert_eq!(check(inbound, ""), None);
        assert_eq!(
            bad(inbound, "80,http"),
            "includeInboundPorts invalid: failed parsing port 'http': failed parsing port 'http': strconv.ParseUint: parsing \"http\": invalid syntax"
        );
        assert_eq!(
            bad("traffic.sidecar.istio.io/excludeOutboundPorts", "*"),
            "excludeOutboundPorts invalid: failed parsing port '*': failed parsing port '*': strconv.ParseUint: parsing \"*\": invalid syntax"
        );
    }

    #[test]
    fn cidrs_like_netip() {
        let include = "traffic.sidecar.istio.io/includeOutboundIPRanges";
        let exclude = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
        assert_eq!(check(include, "*"), None);
        assert_eq!(check(include, ""), None);
        assert_eq!(check(include, "10.0.0.0/8,fd00::/8,::/0"), None);
        let cases = [
            ("10.0.0.0", "netip.ParsePrefix(\"10.0.0.0\"): no '/'"),
            (
                "10.0.0.0/33",
                "netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range",
            ),
            (
                "10.0.0.0/08",
                "netip.ParsePrefix(\"10.0.0.0/08\"): bad bits after slash: \"08\"",
            ),
            (
                "10.0.0.0/",
                "netip.ParsePrefix(\"10.0.0.0/\"): bad bits after slash: \"\"",
            ),
            (
                "10.0.0/8",
                "netip.ParsePrefix(\"10.0.0/8\"): ParseAddr(\"10.0.0\"): IPv4 address too short",
            ),
            (
                " 10.0.0.0/8",
                "netip.ParsePrefix(\" 10.0.0.0/8\"): ParseAddr(\" 10.0.0.0\"): unexpected character (at \" 10.0.0.0\")",
            ),
            (
                "10.01.0.0/16",
                "netip.ParsePrefix(\"10.01.0.0/16\"): ParseAddr(\"10.01.0.0\"): IPv4 field has octet with leading zero",
            ),
            (
                "10..0.0/16",
                "netip.ParsePrefix(\"10..0.0/16\"): ParseAddr(\"10..0.0\"): IPv4 field must have at least one digit (at \".0.0\")",
            ),
            (
                "foo/8",
                "netip.ParsePrefix(\"foo/8\"): ParseAddr(\"foo\"): unable to parse IP",
            ),
            (
                "fe80::1%eth0/64",
                "netip.ParsePrefix(\"fe80::1%eth0/64\"): IPv6 zones cannot be present in a prefix",
            ),
            (
                "1:2:3/64",
                "netip.ParsePrefix(\"1:2:3/64\"): ParseAddr(\"1:2:3\"): address string too short",
            ),
            (
                "1::2::3/64",
                "netip.ParsePrefix(\"1::2::3/64\"): ParseAddr(\"1::2::3\"): multiple :: in address (at \":3\")",
            ),
            (
                "12345::/16",
                "netip.ParsePrefix(\"12345::/16\"): ParseAddr(\"12345::\"): each group must have 4 or less digits (at \"12345::\")",
            ),
            (
                "::ffff:1.2.3.256/128",
                "netip.ParsePrefix(\"::ffff:1.2.3.256/128\"): ParseAddr(\"::ffff:1.2.3.256\"): IPv4 field has value >255",
            ),
        ];
        // Checked against Go's own output (strconv and net/netip).
        let more = [
            ("10.0.0.0/-", "bad bits after slash: \"-\""),
            (
                "10.0.0.0/99999999999999999999",
                "bad bits after slash: \"99999999999999999999\"",
            ),
            ("10.0.0.0/9999999999", "prefix length out of range"),
            (
                "1.2.3.4.5/8",
                "ParseAddr(\"1.2.3.4.5\"): IPv4 address too long",
            ),
            (
                "1.2.3./8",
                "ParseAddr(\"1.2.3.\"): IPv4 field must have at least one digit (at \".\")",
            ),
            (
                "1:2:3:4:5:6:7::8/64",
                "ParseAddr(\"1:2:3:4:5:6:7::8\"): the :: must expand to at least one field of zeros",
            ),
            ("%x/8", "ParseAddr(\"%x\"): missing IPv6 address"),
            (
                "a:/8",
                "ParseAddr(\"a:\"): colon must be followed by more characters (at \":\")",
            ),
            (
                "1:2:3:4:5:6:7:8:9/8",
                "ParseAddr(\"1:2:3:4:5:6:7:8:9\"): trailing garbage after address (at \"9\")",
            ),
            (
                ":1/8",
                "ParseAddr(\":1\"): each colon-separated field must have at least one digit (at \":1\")",
            ),
            (
                "1.2.3.4:5/8",
                "ParseAddr(\"1.2.3.4:5\"): unexpected character (at \":5\")",
            ),
        ];
        for (cidr, want) in more {
            assert_eq!(
                bad(exclude, cidr),
                format!(
                    "excludeIPRanges invalid: failed parsing cidr '{cidr}': netip.ParsePrefix({}): {want}",
                    q(cidr)
                ),
                "{cidr}"
            );
        }
        for (cidr, want) in cases {
            assert_eq!(
                bad(exclude, cidr),
                format!("excludeIPRanges invalid: failed parsing cidr '{cidr}': {want}"),
                "{cidr}"
            );
        }
        assert_eq!(
            bad(include, "10.0.0.0/8,"),
            "includeIPRanges invalid: failed parsing cidr '': netip.ParsePrefix(\"\"): no '/'"
        );
    }

    #[test]
    fn unchecked_annotations_pass() {
        assert_eq!(check("proxy.istio.io/config", "not: [valid"), None);
        assert_eq!(check("sidecar.istio.io/inject", "maybe"), None);
    }
}
