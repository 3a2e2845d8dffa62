//! A miss streamed to its client while the cache fills: the client gets each chunk as the
//! origin sends it, and the same chunks are joined into the stored object at the end.
//!
//! Requests coalesced onto the fill read the same chunks from the start, as they come, when
//! the object's announced length fits the cache (it is kept whole anyway); otherwise they
//! wait for the stored object.
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
use std::time::SystemTime;

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
use crate::cache::{Entry, Fwd, StoreKey};
use crate::origin::{BoxError, OriginBody};

mod job;
use job::Job;

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
pub struct Settle(Mutex<SettleState>);

#[derive(Default)]
struct SettleState {
    leader: Option<Leader<Flight>>,
    early: Option<Flight>,
    outcome: Option<Flight>,
    /// The first outcome given is the one: later ones (the end of a body whose object
    /// was given up earlier) change nothing.
    settled: bool,
}

impl Settle {
    fn lock(&self) -> std::sync::MutexGuard<'_, SettleState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn early(&self, f: Flight) {
        self.lock().early = Some(f);
    }

    fn leader(&self, leader: Leader<Flight>) {
        let mut s = self.lock();
        match s.outcome.take() {
            Some(f) => leader.finish(f),
            None => {
                if let Some(e) = s.early.take() {
                    leader.publish(e);
                }
                s.leader = Some(leader);
            }
        }
    }

    fn outcome(&self, f: Flight) {
        let mut s = self.lock();
        if std::mem::replace(&mut s.settled, true) {
            return;
        }
        match s.leader.take() {
            Some(leader) => leader.finish(f),
            None => s.outcome = Some(f),
        }
    }
}

/// Whether the client's request takes the whole response: a plain GET (a range or a
/// precondition is answered from the complete object).
pub fn takes_whole(req: &crate::request::ClientRequest) -> bool {
    const WHOLE_ONLY: [header::HeaderName; 6] = [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ];
    req.method == http::Method::GET && !WHOLE_ONLY.iter().any(|h| req.headers.contains_key(h))
}

/// Whether this miss may be streamed: the client takes the whole response, and it is not
/// an ESI page (parsed whole when stored).
pub fn eligible(x: &Exchange, esi: bool) -> bool {
    !esi && takes_whole(&x.req)
}

/// A fill in progress that requests coalesced onto it read from the start, as it comes.
pub struct Streamed {
    /// The object's head (its body is still arriving).
    head: Arc<Entry>,
    tee: Arc<Tee>,
}

impl Streamed {
    /// Whether it is the variant `req` asks for.
    pub fn matches(&self, req: &http::HeaderMap) -> bool {
        self.head.vary().matches(req)
    }

    /// The `Vary` field names of the object.
    pub fn vary_names(&self) -> Vec<header::HeaderName> {
        self.head.vary().names()
    }

    /// The object's head, as it is being stored.
    pub fn head(&self) -> &Arc<Entry> {
        &self.head
    }
}

/// A coalesced request's answer from the fill in progress.
pub fn join(s: &Streamed, fwd: Fwd, now: SystemTime) -> Answer {
    let mut response = Response::new(s.tee.reader().boxed());
    *response.status_mut() = s.head.status;
    let h = response.headers_mut();
    *h = s.head.parts().0;
    h.insert(header::AGE, HeaderValue::from(s.head.age(now).as_secs()));
    let status = s.head.status.as_u16();
    let mut answer = Answer::new(response, Outcome::Collapsed { fwd, status });
    answer.ttl = Some(s.head.remaining_ttl(now));
    answer
}

/// What the fill task and the clients' bodies share. Shared (every chunk kept, each
/// reader at its own place: the object fits `max_object_size`, and it is stored anyway)
/// or a queue for the one client (the length is unknown: it may outgrow the bound).
#[derive(Default)]
struct Tee {
    shared: bool,
    state: Mutex<TeeState>,
    /// Wakes the fill task when a client took a chunk or went away.
    taken: Notify,
}

#[derive(Default)]
struct TeeState {
    chunks: VecDeque<Bytes>,
    /// `Some` once the body ended: cleanly, or with this error.
    end: Option<Result<(), String>>,
    wakers: Vec<Waker>,
    readers: usize,
}

impl Tee {
    fn lock(&self) -> std::sync::MutexGuard<'_, TeeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(self: &Arc<Self>) -> TeeBody {
        self.lock().readers += 1;
        TeeBody {
            tee: self.clone(),
            at: 0,
        }
    }

    fn wake(s: &mut TeeState) {
        for w in s.wakers.drain(..) {
            w.wake();
        }
    }

    fn push(&self, chunk: Bytes) {
        let mut s = self.lock();
        if self.shared || s.readers > 0 {
            s.chunks.push_back(chunk);
        }
        Tee::wake(&mut s);
    }

    fn end(&self, how: Result<(), String>) {
        let mut s = self.lock();
        s.end = Some(how);
        Tee::wake(&mut s);
    }
}

/// A client's body: the chunks as the fill task hands them over.
struct TeeBody {
    tee: Arc<Tee>,
    /// The next chunk's place (shared tees).
    at: usize,
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let tee = self.tee.clone();
        let mut s = tee.lock();
        let chunk = if tee.shared {
            let c = s.chunks.get(self.at).cloned();
            self.at += usize::from(c.is_some());
            c
        } else {
            s.chunks.pop_front()
        };
        if let Some(chunk) = chunk {
            drop(s);
            tee.taken.notify_one();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &s.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e.clone().into()))),
            None => {
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        let mut s = self.tee.lock();
        s.readers = s.readers.saturating_sub(1);
        if !self.tee.shared && s.readers == 0 {
            s.chunks.clear();
        }
        drop(s);
        self.tee.taken.notify_one();
    }
}

/// Starts the fill task and answers this client with the response as it streams in.
pub fn fill(
    x: &Exchange,
    key: &StoreKey,
    plan: Plan,
    body: OriginBody,
    fwd: Fwd,
    now: SystemTime,
) -> (Answer, Pending) {
    let code = plan.entry.status.as_u16();
    let limit = x.gen.config.cache.max_object_bytes;
    let mut headers = plan.entry.head_map();
    // The stored head keeps the origin's Content-Length: it is the client's too.
    let fits = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n <= limit);
    let tee = Arc::new(Tee {
        shared: fits,
        ..Tee::default()
    });
    headers.insert(
        header::AGE,
        HeaderValue::from(plan.entry.age(now).as_secs()),
    );
    let ttl = plan.entry.remaining_ttl(now);
    let mut response = Response::new(tee.reader().boxed());
    *response.status_mut() = plan.entry.status;
    *response.headers_mut() = headers;
    let Plan { entry, personal } = plan;
    add_personal(&mut response, personal);
    let settle = Arc::new(Settle::default());
    if fits {
        // Requests coalesced onto this fill read it as it comes.
        let head = Arc::new(entry.clone_head());
        let streamed = Streamed {
            head,
            tee: tee.clone(),
        };
        settle.early(Flight::Streaming(Arc::new(streamed)));
    }
    let (store, key, done) = (x.shared.store.clone(), key.clone(), settle.clone());
    let job = Job {
        tee: tee.clone(),
        body,
        limit,
        idle: x.site.origin.response_timeout(),
        store: store.clone(),
        key: key.clone(),
        settle: settle.clone(),
        kept: Some(Vec::new()),
        len: 0,
    };
    tokio::spawn(async move {
        // Should the task die (a panic), its waiters and readers are released all the same.
        let mut guard = Released {
            tee: tee.clone(),
            settle: done.clone(),
            armed: true,
        };
        // Stored and settled first, then the clients see the end.
        let (flight, end) = match job.run().await {
            Ok(Some(body)) => {
                let entry = Arc::new(entry.with_body_of(&body));
                store.insert(&key, entry.clone());
                (Flight::Stored(entry, code), Ok(()))
            }
            Ok(None) => (Flight::Pass, Ok(())),
            Err(e) => {
                let why = format!("origin body: {}", e.detail());
                (Flight::Failed(e), Err(why))
            }
        };
        guard.armed = false;
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

/// Releases a fill's waiters and readers if its task ends without doing so.
struct Released {
    tee: Arc<Tee>,
    settle: Arc<Settle>,
    armed: bool,
}

impl Drop for Released {
    fn drop(&mut self) {
        if self.armed {
            self.settle.outcome(Flight::Pass);
            self.tee.end(Err("the fill stopped".into()));
        }
    }
}
