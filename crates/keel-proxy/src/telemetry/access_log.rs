//! Istio's default access-log line, in text and in JSON.
//!
//! Text is Istio's `EnvoyTextLogFormat` (istio/istio `pilot/pkg/model/telemetry_logging.go`):
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
//! %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
//! "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//! %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//! "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
//! %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
//! %REQUESTED_SERVER_NAME% %ROUTE_NAME%
//! ```
//!
//! on one line, with `-` for anything unknown, times in milliseconds and `START_TIME` in UTC
//! as `2020-11-25T21:26:18.409Z`. When Keel made the response itself, its error sentence takes
//! the `%RESPONSE_CODE_DETAILS%` position (`503 UF upstream connect failed: ... - "-" ...`).
//!
//! JSON is `EnvoyJSONLogFormatIstio` (meshConfig `accessLogEncoding: JSON`): the same fields
//! under snake_case keys, unknown values as `null`, response code, byte counts and duration as
//! numbers, `upstream_service_time` as the header's string, plus `keel_error`.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{RequestRecord, TcpRecord};

/// One access-log entry, borrowed from an HTTP or TCP record.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub start_time: SystemTime,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: Option<&'static str>,
    pub response_code: u16,
    pub response_flags: &'a str,
    pub response_code_details: Option<&'a str>,
    pub connection_termination_details: Option<&'a str>,
    pub upstream_transport_failure_reason: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream_service_time: Option<Duration>,
    pub forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_local_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub error: Option<&'a str>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn opt<S: AsRef<str>>(s: &Option<S>) -> Option<&str> {
    s.as_ref().map(AsRef::as_ref).and_then(non_empty)
}

/// `%PROTOCOL%` as Envoy spells it.
fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl<'a> Entry<'a> {
    pub fn http(r: &'a RequestRecord) -> Entry<'a> {
        Entry {
            start_time: r.start_time,
            method: r.method.as_ref().map(http::Method::as_str),
            path: non_empty(&r.path),
            protocol: Some(protocol(r.version)),
            response_code: r.response_code,
            response_flags: &r.response_flags,
            response_code_details: non_empty(&r.response_code_details),
            connection_termination_details: opt(&r.connection_termination_details),
            upstream_transport_failure_reason: opt(&r.upstream_transport_failure_reason),
            bytes_received: r.bytes_received,
            bytes_sent: r.bytes_sent,
            duration: r.duration,
            upstream_service_time: r.upstream_service_time,
            forwarded_for: opt(&r.forwarded_for),
            user_agent: opt(&r.user_agent),
            request_id: opt(&r.request_id),
            authority: non_empty(&r.authority),
            upstream_host: r.upstream_host,
            upstream_cluster: opt(&r.upstream_cluster),
            upstream_local_address: r.upstream_local_address,
            downstream_local_address: r.downstream_local_address,
            downstream_remote_address: r.downstream_remote_address,
            requested_server_name: opt(&r.requested_server_name),
            route_name: opt(&r.route_name),
            error: opt(&r.error),
        }
    }

    pub fn tcp(r: &'a TcpRecord) -> Entry<'a> {
        Entry {
            start_time: r.start_time,
            method: None,
            path: None,
            protocol: None,
            response_code: 0,
            response_flags: &r.response_flags,
            response_code_details: None,
            connection_termination_details: opt(&r.connection_termination_details),
            upstream_transport_failure_reason: opt(&r.upstream_transport_failure_reason),
            bytes_received: r.bytes_received,
            bytes_sent: r.bytes_sent,
            duration: r.duration,
            upstream_service_time: None,
            forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            upstream_host: r.upstream_host,
            upstream_cluster: opt(&r.upstream_cluster),
            upstream_local_address: r.upstream_local_address,
            downstream_local_address: r.downstream_local_address,
            downstream_remote_address: r.downstream_remote_address,
            requested_server_name: opt(&r.requested_server_name),
            route_name: opt(&r.route_name),
            error: opt(&r.error),
        }
    }

    fn flags(&self) -> &str {
        non_empty(self.response_flags).unwrap_or("-")
    }
}

/// The text line, newline-terminated.
pub fn text(e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(320);
    let _ = write!(out, "[{}] \"", Timestamp(e.start_time));
    field(&mut out, e.method);
    out.push(' ');
    field(&mut out, e.path);
    out.push(' ');
    field(&mut out, e.protocol);
    let _ = write!(out, "\" {} {} ", e.response_code, e.flags());
    field(&mut out, e.error.or(e.response_code_details));
    out.push(' ');
    field(&mut out, e.connection_termination_details);
    out.push_str(" \"");
    field(&mut out, e.upstream_transport_failure_reason);
    let _ = write!(
        out,
        "\" {} {} {} ",
        e.bytes_received,
        e.bytes_sent,
        e.duration.as_millis()
    );
    match e.upstream_service_time {
        Some(t) => {
            let _ = write!(out, "{}", t.as_millis());
        }
        None => out.push('-'),
    }
    for quoted in [e.forwarded_for, e.user_agent, e.request_id, e.authority] {
        out.push_str(" \"");
        field(&mut out, quoted);
        out.push('"');
    }
    out.push_str(" \"");
    addr(&mut out, e.upstream_host);
    out.push_str("\" ");
    field(&mut out, e.upstream_cluster);
    for a in [
        e.upstream_local_address,
        e.downstream_local_address,
        e.downstream_remote_address,
    ] {
        out.push(' ');
        addr(&mut out, a);
    }
    out.push(' ');
    field(&mut out, e.requested_server_name);
    out.push(' ');
    field(&mut out, e.route_name);
    out.push('\n');
    out
}

/// A text field: `-` when unknown; control characters become spaces so one entry stays one
/// line whatever a header or error contains.
fn field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push('-'),
        Some(v) => out.extend(v.chars().map(|c| if c.is_control() { ' ' } else { c })),
    }
}

fn addr(out: &mut String, a: Option<SocketAddr>) {
    match a {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push('-'),
    }
}

/// The JSON line, newline-terminated, keys in the order Istio declares them.
pub fn json(e: &Entry<'_>) -> String {
    let mut j = JsonObject::with_capacity(640);
    j.string("start_time", Some(&Timestamp(e.start_time).to_string()));
    j.string("route_name", e.route_name);
    j.string("method", e.method);
    j.string("path", e.path);
    j.string("protocol", e.protocol);
    j.number("response_code", u128::from(e.response_code));
    j.string("response_flags", Some(e.flags()));
    j.string("response_code_details", e.response_code_details);
    j.string(
        "connection_termination_details",
        e.connection_termination_details,
    );
    j.number("bytes_received", u128::from(e.bytes_received));
    j.number("bytes_sent", u128::from(e.bytes_sent));
    j.number("duration", e.duration.as_millis());
    let service_time = e.upstream_service_time.map(|t| t.as_millis().to_string());
    j.string("upstream_service_time", service_time.as_deref());
    j.string("x_forwarded_for", e.forwarded_for);
    j.string("user_agent", e.user_agent);
    j.string("request_id", e.request_id);
    j.string("authority", e.authority);
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
    j.string("upstream_host", addr(e.upstream_host).as_deref());
    j.string("upstream_cluster", e.upstream_cluster);
    j.string(
        "upstream_local_address",
        addr(e.upstream_local_address).as_deref(),
    );
    j.string(
        "downstream_local_address",
        addr(e.downstream_local_address).as_deref(),
    );
    j.string(
        "downstream_remote_address",
        addr(e.downstream_remote_address).as_deref(),
    );
    j.string("requested_server_name", e.requested_server_name);
    j.string(
        "upstream_transport_failure_reason",
        e.upstream_transport_failure_reason,
    );
    j.string("keel_error", e.error);
    j.finish()
}

/// A flat JSON object written in key order.
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn with_capacity(n: usize) -> JsonObject {
        let mut out = String::with_capacity(n);
        out.push('{');
        JsonObject { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            None => self.out.push_str("null"),
            Some(v) => json_string(&mut self.out, v),
        }
    }

    fn number(&mut self, key: &str, value: u128) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn finish(mut self) -> String {
        self.out.push_str("}\n");
        self.out
    }
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Envoy's default `%START_TIME%`: UTC, milliseconds, `2020-11-25T21:26:18.409Z`.
struct Timestamp(SystemTime);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn start_time_is_utc_with_milliseconds() {
        assert_eq!(
            Timestamp(at(1_606_339_578, 409)).to_string(),
            "2020-11-25T21:26:18.409Z"
        );
        assert_eq!(Timestamp(at(0, 0)).to_string(), "1970-01-01T00:00:00.000Z");
        // Leap day and end of year.
        assert_eq!(
            Timestamp(at(951_782_400, 1)).to_string(),
            "2000-02-29T00:00:00.001Z"
        );
        assert_eq!(
            Timestamp(at(1_704_067_199, 999)).to_string(),
            "2023-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn text_fields_never_break_the_line() {
        let mut out = String::new();
        field(&mut out, Some("a\nb\r\tc"));
        assert_eq!(out, "a b  c");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "q\"b\\n\n\u{1}é");
        assert_eq!(out, "\"q\\\"b\\\\n\\n\\u0001é\"");
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "q\"b\\n\n\u{1}é");
    }
}
