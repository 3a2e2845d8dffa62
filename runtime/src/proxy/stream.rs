//! A miss streamed to its client while the cache fills: the client gets each chunk as the
//! origin sends it, and the same chunks (shared, not copied) become the stored object.
//!
//! The fill runs as its own task, so it outlives the client: a client that hangs up does
//! not cost the cache a storable object. Memory is bounded by `max_object_size` while the
//! object may still be stored; past it the object is given up and the client reads at its
//! own pace (the origin is read only as fast as the client takes the bytes), and a client
//! that is gone then stops the fetch.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use super::admit::Plan;
use super::deliver::{add_personal, Answer};
use super::driver::{Exchange, Flight};
use super::outcome::Outcome;
use crate::cache::coalesce::Leader;
use crate::cache::{Fwd, StoreKey};
use crate::origin::{BoxError, OriginBody, OriginError};

/// Chunks a client may lag behind once the object is no longer kept.
const LAG_CHUNKS: usize = 16;

/// A fill's outcome for the requests that wait on it: known now, or when the streamed body
/// has ended.
pub enum Pending {
    /// Known.
    Now(Flight),
    /// Known when the body ends; the fill task settles the flight itself.
    Later(Arc<Settle>),
}

impl Pending {
    /// Hands the outcome to the flight's followers, now or as soon as it is known.
    pub fn finish(self, leader: Leader<Flight>) {
        match self {
            Pending::Now(f) => leader.finish(f),
            Pending::Later(settle) => settle.leader(leader),
        }
    }
}

/// Where a streamed fill's outcome meets the flight's leader, whichever comes first. The
/// flight is settled before the client sees the end of the body, so a client that asks
/// again at once finds the stored object (or no flight of a failed fetch to join).
#[derive(Default)]
pub struct Settle(Mutex<(Option<Leader<Flight>>, Option<Flight>)>);

impl Settle {
    fn leader(&self, leader: Leader<Flight>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.1.take() {
            Some(f) => leader.finish(f),
            None => s.0 = Some(leader),
        }
    }

    fn outcome(&self, f: Flight) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.0.take() {
            Some(leader) => leader.finish(f),
            None => s.1 = Some(f),
        }
    }
}

/// Whether this miss may be streamed: a plain GET whose answer is the whole response (a
/// range or a precondition is answered from the complete object), not an ESI page (parsed
/// whole when stored).
pub fn eligible(x: &Exchange, esi: bool) -> bool {
    const WHOLE_ONLY: [header::HeaderName; 6] = [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ];
    !esi && x.req.method == http::Method::GET
        && !WHOLE_ONLY.iter().any(|h| x.req.headers.contains_key(h))
}

/// What the fill task and the client's body share.
#[derive(Default)]
struct Tee {
    state: Mutex<TeeState>,
    /// Wakes the fill task when the client took a chunk or went away.
    taken: Notify,
}

#[derive(Default)]
struct TeeState {
    queue: VecDeque<Bytes>,
    /// `Some` once the body ended: cleanly, or with this error.
    end: Option<Result<(), String>>,
    waker: Option<Waker>,
    reader_gone: bool,
}

impl Tee {
    fn lock(&self) -> std::sync::MutexGuard<'_, TeeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, chunk: Bytes) {
        let mut s = self.lock();
        if !s.reader_gone {
            s.queue.push_back(chunk);
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn end(&self, how: Result<(), String>) {
        let mut s = self.lock();
        s.end = Some(how);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

/// The client's body: the chunks as the fill task hands them over.
struct TeeBody(Arc<Tee>);

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut s = self.0.lock();
        if let Some(chunk) = s.queue.pop_front() {
            drop(s);
            self.0.taken.notify_one();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &s.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e.clone().into()))),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.reader_gone = true;
        s.queue.clear();
        drop(s);
        self.0.taken.notify_one();
    }
}

/// Starts the fill task and answers this client with the response as it streams in.
pub fn fill(
    x: &Exchange,
    key: &StoreKey,
    plan: Plan,
    head: http::response::Parts,
    body: OriginBody,
    fwd: Fwd,
    now: SystemTime,
) -> (Answer, Pending) {
    let code = plan.entry.status.as_u16();
    let mut headers = plan.entry.headers.clone();
    headers.insert(
        header::AGE,
        HeaderValue::from(plan.entry.age(now).as_secs()),
    );
    if let Some(len) = head.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, len.clone());
    }
    let ttl = plan.entry.remaining_ttl(now);
    let tee = Arc::new(Tee::default());
    let mut response = Response::new(TeeBody(tee.clone()).boxed());
    *response.status_mut() = plan.entry.status;
    *response.headers_mut() = headers;
    let Plan { entry, personal } = plan;
    add_personal(&mut response, personal);
    let settle = Arc::new(Settle::default());
    let (store, key, done) = (x.shared.store.clone(), key.clone(), settle.clone());
    let job = Job {
        tee: tee.clone(),
        body,
        limit: x.gen.config.cache.max_object_bytes,
        idle: x.site.origin.response_timeout(),
    };
    tokio::spawn(async move {
        // Stored and settled first, then the client sees the end.
        let (flight, end) = match job.run().await {
            Ok(Some(body)) => {
                let entry = Arc::new(crate::cache::Entry { body, ..entry });
                store.insert(&key, entry.clone());
                (Flight::Stored(entry, code), Ok(()))
            }
            Ok(None) => {
                store.mark_uncacheable(&key);
                (Flight::Pass, Ok(()))
            }
            Err(e) => {
                let why = format!("origin body: {}", e.detail());
                (Flight::Failed(e), Err(why))
            }
        };
        done.outcome(flight);
        tee.end(end);
    });
    let outcome = Outcome::Forwarded {
        fwd,
        status: code,
        stored: Ok(()),
    };
    let mut answer = Answer::new(response, outcome);
    answer.ttl = Some(ttl);
    (answer, Pending::Later(settle))
}

/// The fill task's part.
struct Job {
    tee: Arc<Tee>,
    body: OriginBody,
    limit: u64,
    idle: Duration,
}

impl Job {
    /// Reads the body to its end, handing each chunk to the client; the whole body if it
    /// is to be stored (`None`: too large, or the client left after it became too large).
    async fn run(mut self) -> Result<Option<Bytes>, OriginError> {
        let mut kept: Option<Vec<Bytes>> = Some(Vec::new());
        let mut len = 0u64;
        loop {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => Err(OriginError::Timeout),
                Ok(None) => break,
                Ok(Some(f)) => f.map_err(|e| OriginError::Connect(crate::origin::error_chain(&e))),
            };
            let frame = frame?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            len += chunk.len() as u64;
            if kept.is_some() && len > self.limit {
                // Too large to keep: give it up, and from now on read no faster than the
                // client does.
                kept = None;
            }
            if let Some(k) = &mut kept {
                k.push(chunk.clone());
            }
            self.tee.push(chunk);
            if kept.is_none() {
                loop {
                    let taken = self.tee.taken.notified();
                    {
                        let s = self.tee.lock();
                        if s.reader_gone {
                            // Nobody reads and nothing is kept: stop fetching.
                            return Ok(None);
                        }
                        if s.queue.len() < LAG_CHUNKS {
                            break;
                        }
                    }
                    taken.await;
                }
            }
        }
        Ok(kept.map(join))
    }
}

/// One buffer of the chunks (the chunk itself when there is one).
fn join(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            let mut b = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in &chunks {
                b.extend_from_slice(c);
            }
            b.freeze()
        }
    }
}
