//! Observability: metrics, the status board's data, and one access-log line per request.

mod board;
mod budget;
mod metrics;
pub mod storage;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pub use board::{board, Board, PurgeRecord, Sample, SAMPLES, SAMPLE_EVERY};
pub use budget::LogBudget;
pub use metrics::{
    metrics, site, FleetEvent, GuestError as GuestErrorLabel, GuestInstance, Hook as HookLabel,
    KeyMemoResult, Metrics, PurgeKind, Result as ResultLabel,
};

use crate::origin::{BoxError, OutBody};

/// What the access log and the request metrics record of one request, written when its
/// response body is done (or the client went away).
#[derive(Debug)]
pub struct Access {
    /// Request id.
    pub id: std::sync::Arc<str>,
    /// Site name, `-` when none answered.
    pub site: String,
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub target: String,
    /// Status sent.
    pub status: u16,
    /// Cache outcome (`hit`, `miss`, …).
    pub outcome: &'static str,
    /// The cache key, for the top-keys table (and the log line when the site debugs).
    pub key: Option<String>,
    /// Log the key too.
    pub log_key: bool,
    /// When the request head arrived.
    pub started: Instant,
    /// Time to the response head.
    pub head: std::time::Duration,
    /// Time spent waiting for origins' response heads.
    pub origin_wait: std::time::Duration,
}

impl Access {
    fn finish(&self, bytes: u64, complete: bool) {
        let m = metrics();
        let elapsed = self.started.elapsed();
        m.requests
            .get_or_create(&metrics::SiteOutcome {
                site: self.site.clone(),
                outcome: self.outcome.to_owned(),
            })
            .inc();
        let s = site(&self.site);
        m.response_seconds
            .get_or_create(&s)
            .observe(elapsed.as_secs_f64());
        m.served_bytes.get_or_create(&s).inc_by(bytes);
        let hit = matches!(self.outcome, "hit" | "stale");
        board().request(hit, self.key.as_deref());
        let key = if self.log_key {
            self.key.as_deref()
        } else {
            None
        };
        tracing::info!(
            target: "tessera::access",
            request_id = &*self.id,
            site = %self.site,
            method = %self.method,
            target = %self.target,
            status = self.status,
            outcome = self.outcome,
            bytes,
            complete,
            duration_ms = ms(elapsed),
            head_ms = ms(self.head),
            origin_ms = ms(self.origin_wait),
            key,
            "access"
        );
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// A response body that counts what it sends and writes the access line when it is dropped.
pub struct Logged {
    inner: OutBody,
    bytes: u64,
    done: bool,
    access: Access,
}

impl Logged {
    /// Wraps `body`.
    pub fn new(inner: OutBody, access: Access) -> Logged {
        Logged {
            inner,
            bytes: 0,
            done: false,
            access,
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let complete = self.done || self.inner.is_end_stream();
        self.access.finish(self.bytes, complete);
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.done = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
