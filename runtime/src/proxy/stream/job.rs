//! The fill task of a streamed miss: reads the origin's body, gathers small frames, hands
//! the body to the clients' tee and keeps it for the store unless it grows too large.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::{Settle, Tee, LAG_CHUNKS};
use crate::cache::StoreKey;
use crate::origin::{OriginBody, OriginError};
use crate::proxy::driver::Flight;

/// Frames smaller than this are gathered into one chunk before clients and the kept body
/// get them (see [`Job::run`]).
const GATHER: usize = 16 * 1024;
/// Gathered bytes go on once the origin pauses this long: a page the origin flushes early
/// reaches the client at once.
const GATHER_PAUSE: Duration = Duration::from_millis(2);
/// ...and at the latest this long after the first of them arrived: a stream of tiny chunks
/// becomes at most 20 chunks a second besides one per 16 KiB.
const GATHER_AT_MOST: Duration = Duration::from_millis(50);

/// The fill task's part.
pub(super) struct Job {
    pub(super) tee: Arc<Tee>,
    pub(super) body: OriginBody,
    pub(super) limit: u64,
    pub(super) idle: Duration,
    pub(super) store: crate::cache::Store,
    pub(super) key: StoreKey,
    pub(super) settle: Arc<Settle>,
    /// The body so far while it is to be stored (`Some(vec![])` to start with).
    pub(super) kept: Option<Vec<Bytes>>,
    /// Bytes read so far (0 to start with).
    pub(super) len: u64,
}

impl Job {
    /// Reads the body to its end, handing it to the client as it comes; all of it if it is
    /// to be stored (`None`: too large, or the client left after it became too large).
    ///
    /// Small frames are gathered before they are handed on: up to [`GATHER`] bytes, until
    /// the origin pauses for [`GATHER_PAUSE`], or for [`GATHER_AT_MOST`]. hyper hands a
    /// chunked body over one chunk at a time, each a slice of its read buffer; held as they
    /// come in the tee and the kept list, an origin's one-byte chunks would cost 64 bytes
    /// each and pin the buffers, so a fill of `max_object_size` could hold dozens of times
    /// that until it ends.
    pub(super) async fn run(mut self) -> Result<Option<Vec<Bytes>>, OriginError> {
        let mut gathered = bytes::BytesMut::new();
        let mut hand_by = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            let wait_until = if gathered.is_empty() {
                now + self.idle
            } else {
                hand_by.min(now + GATHER_PAUSE)
            };
            let frame = match tokio::time::timeout_at(wait_until, self.body.frame()).await {
                // Nothing more came soon: what was gathered goes on now.
                Err(_) if !gathered.is_empty() => {
                    if self.hand_gathered(&mut gathered).await? {
                        return Ok(None);
                    }
                    continue;
                }
                Err(_) => return Err(OriginError::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    // What did arrive still reaches the clients before the error does (the
                    // tee hands out its chunks before its end); none of it is kept.
                    if !gathered.is_empty() {
                        self.tee.push(gathered.split().freeze());
                    }
                    return Err(OriginError::Connect(crate::origin::error_chain(&e)));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let chunk = if data.len() >= GATHER {
                // Large: it goes on as it is, after what was gathered before it.
                if self.hand_gathered(&mut gathered).await? {
                    return Ok(None);
                }
                data
            } else {
                if gathered.is_empty() {
                    hand_by = tokio::time::Instant::now() + GATHER_AT_MOST;
                }
                gathered.extend_from_slice(&data);
                if gathered.len() < GATHER {
                    continue;
                }
                gathered.split().freeze()
            };
            if self.hand(chunk).await? {
                return Ok(None);
            }
        }
        if self.hand_gathered(&mut gathered).await? {
            return Ok(None);
        }
        Ok(self.kept)
    }

    /// [`Job::hand`] of what `gathered` holds, if anything.
    async fn hand_gathered(&mut self, gathered: &mut bytes::BytesMut) -> Result<bool, OriginError> {
        if gathered.is_empty() {
            return Ok(false);
        }
        self.hand(gathered.split().freeze()).await
    }

    /// Hands `chunk` to the clients and to the kept body, giving up keeping past the limit;
    /// whether to stop fetching (nobody reads and nothing is kept).
    async fn hand(&mut self, chunk: Bytes) -> Result<bool, OriginError> {
        self.len += chunk.len() as u64;
        if self.tee.shared && self.len > self.limit {
            // More than the announced length that fitted: not the object announced.
            return Err(OriginError::Connect("body longer than announced".into()));
        }
        if self.kept.is_some() && self.len > self.limit {
            // Too large to keep: give it up, and from now on read no faster than the
            // client does. Waiters must not wait on one client's pace: they fetch on
            // their own, and so do requests from now on.
            self.kept = None;
            self.store.mark_uncacheable(&self.key);
            self.settle.outcome(Flight::Pass);
        }
        if let Some(k) = &mut self.kept {
            k.push(chunk.clone());
        }
        self.tee.push(chunk);
        if self.kept.is_some() {
            return Ok(false);
        }
        loop {
            let taken = self.tee.taken.notified();
            {
                let s = self.tee.lock();
                if s.readers == 0 {
                    return Ok(true);
                }
                if s.chunks.len() < LAG_CHUNKS {
                    return Ok(false);
                }
            }
            // A client that takes nothing for as long as the origin may stay
            // silent is cut: it must not hold the origin connection forever.
            if tokio::time::timeout(self.idle, taken).await.is_err() {
                return Err(OriginError::Timeout);
            }
        }
    }
}
