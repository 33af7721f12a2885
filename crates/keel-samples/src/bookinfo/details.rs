//! The details service, a port of Istio's `details.rb`: `/details/<id>` answers the book's
//! details as JSON, `/health` says it is healthy.
//!
//! Like details v2 (`ENABLE_EXTERNAL_BOOK_SERVICE=true`) it can instead look the book up in
//! Google's Books API; Keel's port speaks plain HTTP only, so that needs `DO_NOT_ENCRYPT=true`
//! (Istio's egress TLS-origination tasks set it: the sidecar originates TLS).

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::bookinfo::parse_id;
use crate::client::{Client, Target};
use crate::http_util::{Body, json, not_found};
use crate::propagate;
use crate::server::Handler;

/// The ISBN of a Comedy of Errors edition with Shakespeare as single author, as in details.rb.
const ISBN: &str = "0486424618";

/// How details is configured.
#[derive(Debug, Clone, Default)]
pub struct DetailsConfig {
    /// Look books up in an external service (details v2) instead of answering from memory.
    pub external: Option<ExternalBooks>,
}

/// The external book service details v2 calls.
#[derive(Debug, Clone)]
pub struct ExternalBooks {
    /// Where the Books API is (`www.googleapis.com:443`).
    pub target: Target,
    /// Plain HTTP to `target` is allowed (`DO_NOT_ENCRYPT=true` or the older `WITH_ISTIO=true`):
    /// the sidecar originates TLS. Without it the call would need TLS, which this port lacks.
    pub plain_http: bool,
    /// Makes the call (through the HTTP proxy, when configured).
    pub client: Client,
    /// details.rb's read timeout: 5 s.
    pub timeout: Duration,
}

impl ExternalBooks {
    /// Google's Books API, as details.rb calls it.
    pub fn google(plain_http: bool, client: Client) -> Self {
        ExternalBooks {
            target: Target::new("www.googleapis.com", 443),
            plain_http,
            client,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The details app.
#[derive(Debug, Clone, Default)]
pub struct Details {
    config: DetailsConfig,
}

/// The JSON details.rb answers, fields in its order.
#[derive(Debug, Serialize)]
struct BookDetails {
    id: i64,
    author: Value,
    year: Value,
    #[serde(rename = "type")]
    kind: Value,
    pages: Value,
    publisher: Value,
    language: Value,
    #[serde(rename = "ISBN-10")]
    isbn10: Value,
    #[serde(rename = "ISBN-13")]
    isbn13: Value,
}

impl Details {
    /// A details app with `config`.
    pub fn new(config: DetailsConfig) -> Self {
        Details { config }
    }

    async fn book(&self, path: &str, headers: &HeaderMap) -> Result<BookDetails, String> {
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let id = parse_id(last).ok_or_else(|| "please provide numeric product id".to_owned())?;
        match &self.config.external {
            Some(external) => fetch_external(external, id, headers).await,
            None => Ok(BookDetails {
                id,
                author: "William Shakespeare".into(),
                year: 1595.into(),
                kind: "paperback".into(),
                pages: 200.into(),
                publisher: "PublisherA".into(),
                language: "English".into(),
                isbn10: "1234567890".into(),
                isbn13: "123-1234567890".into(),
            }),
        }
    }
}

impl Handler for Details {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if path == "/health" || path.starts_with("/health/") {
            return json(StatusCode::OK, r#"{"status":"Details is healthy"}"#);
        }
        if path != "/details" && !path.starts_with("/details/") {
            return not_found();
        }
        match self.book(path, req.headers()).await {
            Ok(book) => match serde_json::to_vec(&book) {
                Ok(body) => json(StatusCode::OK, body),
                Err(e) => error_reply(&e.to_string()),
            },
            Err(message) => error_reply(&message),
        }
    }
}

/// details.rb rescues every failure into a 400 with `{"error": message}`.
fn error_reply(message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    json(StatusCode::BAD_REQUEST, body)
}

async fn fetch_external(
    external: &ExternalBooks,
    id: i64,
    incoming: &HeaderMap,
) -> Result<BookDetails, String> {
    if !external.plain_http {
        return Err(format!(
            "calling https://{} needs TLS, which keel-sample does not originate: set DO_NOT_ENCRYPT=true and let the sidecar originate TLS",
            external.target.host
        ));
    }
    let mut headers = HeaderMap::new();
    propagate::copy(incoming, propagate::TRACE_HEADERS, &mut headers);
    let path = format!("/books/v1/volumes?q=isbn:{ISBN}");
    let reply = external
        .client
        .get(&external.target, &path, headers, external.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_slice(&reply.body).map_err(|e| {
        format!(
            "unexpected reply from the book service ({}): {e}",
            reply.status
        )
    })?;
    let book = json
        .pointer("/items/0/volumeInfo")
        .ok_or_else(|| format!("no book in the book service's reply ({})", reply.status))?;
    let map = |field: &str, expect: &str, name: &str| {
        if book.get(field).and_then(Value::as_str) == Some(expect) {
            Value::from(name)
        } else {
            Value::from("unknown")
        }
    };
    Ok(BookDetails {
        id,
        author: book.pointer("/authors/0").cloned().unwrap_or(Value::Null),
        year: book.get("publishedDate").cloned().unwrap_or(Value::Null),
        kind: map("printType", "BOOK", "paperback"),
        pages: book.get("pageCount").cloned().unwrap_or(Value::Null),
        publisher: book.get("publisher").cloned().unwrap_or(Value::Null),
        language: map("language", "en", "English"),
        isbn10: isbn(book, "ISBN_10"),
        isbn13: isbn(book, "ISBN_13"),
    })
}

fn isbn(book: &Value, kind: &str) -> Value {
    book.get("industryIdentifiers")
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter()
                .find(|i| i.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|i| i.get("identifier"))
        .cloned()
        .unwrap_or(Value::Null)
}
