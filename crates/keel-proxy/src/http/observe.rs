//! Measuring a request for telemetry without buffering it: bodies are wrapped to count bytes
//! (and catch gRPC trailers), and the record is written when the response body ends — or is
//! dropped, when the client goes away — so durations cover the whole exchange.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::telemetry::{RequestRecord, Telemetry};
use crate::upstream::Body;

/// Counts the bytes of a body as it streams (`None`: a body known to be empty, which
/// needs no shared counter).
pub struct Counted<B> {
    inner: B,
    count: Option<Arc<AtomicU64>>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Option<Arc<AtomicU64>>) -> Self {
        Counted { inner, count }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(count) = &self.count
        {
            count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body sent downstream: counts bytes, reads `grpc-status` from trailers, and
/// records the request when it ends or is dropped.
pub struct Recorded {
    inner: Body,
    /// Boxed: the record is several hundred bytes, and the body is moved a few times before
    /// it is boxed itself (each move a copy of it; measured: more than the allocation).
    record: Box<RequestRecord>,
    /// The record has been written (it is then left as it was, not moved out).
    recorded: bool,
    telemetry: Arc<Telemetry>,
    started: std::time::Instant,
    request_bytes: Option<Arc<AtomicU64>>,
}

impl Recorded {
    pub fn new(
        inner: Body,
        record: Box<RequestRecord>,
        telemetry: Arc<Telemetry>,
        started: std::time::Instant,
        request_bytes: Option<Arc<AtomicU64>>,
    ) -> Self {
        Recorded {
            inner,
            record,
            recorded: false,
            telemetry,
            started,
            request_bytes,
        }
    }

    fn finish(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let r = &mut self.record;
        r.duration = self.started.elapsed();
        r.bytes_received = self
            .request_bytes
            .as_ref()
            .map_or(0, |n| n.load(Ordering::Relaxed));
        self.telemetry.record_http(r);
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for Recorded {
    type Data = Bytes;
    type Error = crate::upstream::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::upstream::BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.record.bytes_sent += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    let status = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    self.record.grpc_status = status.or(self.record.grpc_status);
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
