//! VirtualService tests for the parts of an HTTP route: redirects, direct responses,
//! rewrites, retries, fault injection, mirrors and CORS (Keel's own fixtures).

use super::tests::{ROUTE, accepted, errors, http, rejected, warned};

#[test]
fn redirects() {
    accepted(&http(
        "- redirect: {uri: /new, authority: new.example.com, redirectCode: 308}",
    ));
    accepted(&http(
        "- redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}",
    ));
    accepted(&http("- redirect: {port: 8443}"));
    rejected(
        &http("- redirect: {redirectCode: 301}"),
        "redirect must specify URI, authority, scheme, or port",
    );
    rejected(
        &http("- redirect: {uri: /x, redirectCode: 200}"),
        "spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx",
    );
    rejected(
        &http("- redirect: {scheme: ftp}"),
        "invalid redirect scheme, must be \"http\" or \"https\"",
    );
    rejected(
        &http("- redirect: {port: 70000}"),
        "port number 70000 must be in the range",
    );
    rejected(
        &http("- redirect: {port: 80, derivePort: FROM_REQUEST_PORT}"),
        "only one of port or derivePort",
    );
    let e = errors(&http("- redirect: {derivePort: FROM_REQUST_PORT}"));
    assert!(
        e.iter()
            .any(|m| m.contains("did you mean \"FROM_REQUEST_PORT\"")),
        "{e:?}"
    );
}

#[test]
fn route_redirect_direct_response_exclusive() {
    rejected(
        &(http("- redirect: {uri: /x}\n") + ROUTE),
        "HTTP route cannot contain both route and redirect",
    );
    rejected(
        &http("- redirect: {uri: /x}\n  fault: {abort: {httpStatus: 500}}"),
        "HTTP route cannot contain both fault and redirect",
    );
    rejected(
        &http("- redirect: {uri: /x}\n  rewrite: {uri: /y}"),
        "HTTP route rule cannot contain both rewrite and redirect",
    );
    rejected(
        &http("- redirect: {uri: /x}\n  directResponse: {status: 200}"),
        "HTTP route rule cannot contain both direct_response and redirect",
    );
    rejected(
        &(http("- directResponse: {status: 503}\n") + ROUTE),
        "HTTP route cannot contain both route and direct_response",
    );
    rejected(
        &http("- directResponse: {status: 503}\n  fault: {delay: {fixedDelay: 1s}}"),
        "HTTP route cannot contain both fault and direct_response",
    );
    rejected(
        &http("- directResponse: {status: 503}\n  rewrite: {uri: /y}"),
        "HTTP route rule cannot contain both rewrite and direct_response",
    );
}

#[test]
fn direct_responses() {
    accepted(&http(
        "- directResponse: {status: 503, body: {string: unavailable}}",
    ));
    accepted(&http(
        "- directResponse: {status: 200, body: {bytes: aGVsbG8=}}",
    ));
    rejected(
        &http("- directResponse: {status: 700}"),
        "HTTP status 700 is not in range 200-599",
    );
    rejected(
        &http("- directResponse: {body: {string: x}}"),
        "HTTP status 0 is not in range 200-599",
    );
    rejected(
        &http("- directResponse: {status: 200, body: {string: a, bytes: YQ==}}"),
        "only one of string or bytes",
    );
    rejected(
        &http("- directResponse: {status: 200, body: {bytes: 'not base64!'}}"),
        "must be base64-encoded",
    );
    let big = "x".repeat(200 * 1024);
    warned(
        &http(&format!(
            "- directResponse: {{status: 200, body: {{string: {big}}}}}"
        )),
        "large direct_responses may impact control plane performance",
    );
    let huge = "x".repeat(1024 * 1024 + 1);
    rejected(
        &http(&format!(
            "- directResponse: {{status: 200, body: {{string: {huge}}}}}"
        )),
        "must be less than 1MB",
    );
}

#[test]
fn rewrites() {
    accepted(&(http("- rewrite: {uri: /v2, authority: backend}\n") + ROUTE));
    accepted(
        &(http(
            "- rewrite: {uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1'}}\n",
        ) + ROUTE),
    );
    rejected(
        &(http("- rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n") + ROUTE),
        "rewrite may only contain one of URI or UriRegexRewrite",
    );
    rejected(
        &(http("- rewrite: {}\n") + ROUTE),
        "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
    );
    rejected(
        &(http("- rewrite: {uriRegexRewrite: {match: '^/a'}}\n") + ROUTE),
        "requires both Rewrite and Match",
    );
    rejected(
        &(http("- rewrite: {uriRegexRewrite: {match: '(', rewrite: b}}\n") + ROUTE),
        "UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\"",
    );
}

#[test]
fn retries() {
    accepted(&(http("- retries: {attempts: 0}\n") + ROUTE));
    accepted(
        &(http(
            "- retries: {attempts: 2, retryOn: 'cancelled,deadline-exceeded,retriable-status-codes,429', retryRemoteLocalities: true, retryIgnorePreviousHosts: true}\n",
        ) + ROUTE),
    );
    rejected(
        &(http("- retries: {attempts: -1}\n") + ROUTE),
        "attempts cannot be negative",
    );
    rejected(
        &(http("- retries: {attempts: 0, perTryTimeout: 1s}\n") + ROUTE),
        "http retry policy configured when attempts are set to 0 (disabled)",
    );
    rejected(
        &(http("- retries: {attempts: 3, perTryTimeout: 0.5ms}\n") + ROUTE),
        "duration must be greater than 1ms",
    );
    rejected(
        &(http("- retries: {attempts: 3, perTryTimeout: 1500us}\n") + ROUTE),
        "only durations to ms precision are supported",
    );
    rejected(
        &(http("- retries: {attempts: 3, retryOn: '5xx,sometimes'}\n") + ROUTE),
        "\"sometimes\" is not a valid retryOn policy",
    );
    // Codes must be real HTTP statuses, and spaces are not trimmed (as in Istio).
    rejected(
        &(http("- retries: {attempts: 3, retryOn: '599'}\n") + ROUTE),
        "\"599\" is not a valid retryOn policy",
    );
    rejected(
        &(http("- retries: {attempts: 3, retryOn: '5xx, reset'}\n") + ROUTE),
        "\" reset\" is not a valid retryOn policy",
    );
    rejected(
        &(http("- retries: {attempts: 3, backoff: 0s}\n") + ROUTE),
        "spec.http[0].retries.backoff: duration must be greater than 1ms",
    );
    rejected(&(http("- timeout: 0s\n") + ROUTE), "spec.http[0].timeout");
}

#[test]
fn faults() {
    accepted(
        &(http(
            "- fault:\n    delay: {fixedDelay: 5s, percentage: {value: 0.1}}\n    abort: {httpStatus: 503, percentage: {value: 100}}\n",
        ) + ROUTE),
    );
    accepted(&(http("- fault: {abort: {grpcStatus: UNAVAILABLE}}\n") + ROUTE));
    accepted(&(http("- fault: {delay: {fixedDelay: 1s, percent: 50}}\n") + ROUTE));
    rejected(
        &(http("- fault: {}\n") + ROUTE),
        "HTTP fault injection must have an abort and/or a delay",
    );
    rejected(
        &(http("- fault: {abort: {httpStatus: 100}}\n") + ROUTE),
        "HTTP status 100 is not in range 200-599",
    );
    rejected(
        &(http("- fault: {abort: {grpcStatus: NOPE}}\n") + ROUTE),
        "gRPC status \"NOPE\" is not supported",
    );
    rejected(
        &(http("- fault: {abort: {http2Error: REFUSED_STREAM}}\n") + ROUTE),
        "HTTP/2 abort fault injection not supported yet",
    );
    rejected(
        &(http("- fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL}}\n") + ROUTE),
        "only one of httpStatus, grpcStatus or http2Error",
    );
    warned(
        &(http("- fault: {abort: {percentage: {value: 5}}}\n") + ROUTE),
        "abort configured, but error type not set",
    );
    rejected(
        &(http("- fault: {abort: {httpStatus: 500, percentage: {value: 101}}}\n") + ROUTE),
        "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
    );
    rejected(
        &(http("- fault: {delay: {fixedDelay: 1s, percentage: {value: -1}}}\n") + ROUTE),
        "is neither 0.0, nor in range",
    );
    warned(
        &(http("- fault: {delay: {fixedDelay: 1s, percent: 150}}\n") + ROUTE),
        "percentage 150 is not in range 0..100; use percentage instead",
    );
    rejected(
        &(http("- fault: {delay: {exponentialDelay: 1s}}\n") + ROUTE),
        "exponentialDelay not supported yet",
    );
    rejected(
        &(http("- fault: {delay: {fixedDelay: 1s, exponentialDelay: 1s}}\n") + ROUTE),
        "only one of fixedDelay or exponentialDelay",
    );
    rejected(
        &(http("- fault: {delay: {fixedDelay: 0s}}\n") + ROUTE),
        "spec.http[0].fault.delay.fixedDelay: duration must be greater than 1ms",
    );
}

#[test]
fn mirrors() {
    accepted(&(http("- mirror: {host: shadow}\n  mirrorPercentage: {value: 12.5}\n") + ROUTE));
    accepted(
        &(http(
            "- mirrors:\n  - destination: {host: shadow-a}\n    percentage: {value: 50}\n  - destination: {host: shadow-b, subset: v2}\n",
        ) + ROUTE),
    );
    rejected(
        &(http("- mirror: {host: a}\n  mirrors:\n  - destination: {host: b}\n") + ROUTE),
        "HTTP route cannot contain both mirror and mirrors",
    );
    rejected(
        &(http("- mirrors:\n  - percentage: {value: 5}\n") + ROUTE),
        "destination is required for mirrors",
    );
    rejected(
        &(http("- mirrors:\n  - destination: {host: a}\n    percentage: {value: 101}\n") + ROUTE),
        "mirror percentage must have a max value of 100 (it has 101.000000)",
    );
    rejected(
        &(http("- mirror: {host: a}\n  mirrorPercentage: {value: -1}\n") + ROUTE),
        "mirror_percentage must have a min value of 0",
    );
    rejected(
        &(http("- mirror: {host: a}\n  mirrorPercentage: {value: 100.5}\n") + ROUTE),
        "mirror_percentage must have a max value of 100",
    );
    rejected(
        &(http("- mirror: {host: 'bad host'}\n") + ROUTE),
        "spec.http[0].mirror.host",
    );
    // The deprecated integer percentage: a warning, and still range-checked.
    warned(
        &(http("- mirror: {host: a}\n  mirrorPercent: 50\n") + ROUTE),
        "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
    );
    warned(
        &(http("- mirror: {host: a}\n  mirror_percent: 50\n") + ROUTE),
        "deprecated setting \"mirrorPercent\"",
    );
    rejected(
        &(http("- mirror: {host: a}\n  mirrorPercent: 101\n") + ROUTE),
        "mirror_percent must have a max value of 100 (it has 101)",
    );
}

#[test]
fn cors() {
    accepted(
        &(http(
            "- corsPolicy:
    allowOrigins: [{exact: 'https://a.example.com'}, {regex: 'https://.*\\.example\\.com'}]
    allowOrigin: ['https://legacy.example.com']
    allowMethods: [GET, POST]
    allowHeaders: ['*', x-custom]
    exposeHeaders: [x-trace_id]
    maxAge: 24h
    allowCredentials: false
    unmatchedPreflights: IGNORE\n",
        ) + ROUTE),
    );
    rejected(
        &(http("- corsPolicy: {allowOrigins: [{exact: ''}]}\n") + ROUTE),
        "'' is not a valid match type for CORS allow origins",
    );
    rejected(
        &(http("- corsPolicy: {allowOrigins: [{regex: '('}]}\n") + ROUTE),
        "\"corsPolicy.allowOrigins\": ",
    );
    rejected(
        &(http("- corsPolicy: {allowMethods: [get]}\n") + ROUTE),
        "\"get\" is not a supported HTTP method",
    );
    rejected(
        &(http("- corsPolicy: {allowHeaders: ['x header']}\n") + ROUTE),
        "header name x header is not a valid header name",
    );
    rejected(
        &(http("- corsPolicy: {exposeHeaders: ['']}\n") + ROUTE),
        "header name cannot be empty",
    );
    rejected(
        &(http("- corsPolicy: {maxAge: 1.5s}\n") + ROUTE),
        "max_age duration is accurate only to seconds precision",
    );
    let e = errors(&(http("- corsPolicy: {unmatchedPreflights: DROP}\n") + ROUTE));
    assert!(
        e.iter().any(|m| m.contains("unknown value \"DROP\"")),
        "{e:?}"
    );
}
