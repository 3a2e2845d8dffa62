//! One admin request to its answer: health, metrics, status, purge and events, with the
//! audit log of everything that changes the cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::purge::{self, Event, PurgeRequest};
use super::Token;
use crate::cache::Purge;
use crate::observe::{board, metrics, LogBudget, PurgeKind, PurgeRecord};
use crate::proxy::Shared;

/// Largest purge or event body read.
const MAX_BODY: usize = 64 * 1024;
/// Time a client has to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines a second about refused requests: a guesser must not flood the log.
const DENIALS_LOGGED_PER_SECOND: u64 = 5;

/// What every admin request sees.
pub(super) struct Ctx {
    shared: Arc<Shared>,
    token: Option<Token>,
    denials: LogBudget,
}

impl Ctx {
    pub(super) fn new(shared: Arc<Shared>, token: Option<Token>) -> Ctx {
        Ctx {
            shared,
            token,
            denials: LogBudget::new(DENIALS_LOGGED_PER_SECOND),
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    reply(status, "text/plain; charset=utf-8", body)
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Answer {
    let mut body = value.to_string();
    body.push('\n');
    reply(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Answer {
    json_reply(status, json!({ "error": message }))
}

/// Paths this listener answers, and the methods each takes.
const ROUTES: &[(&str, &str)] = &[
    ("/", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/readyz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/purge", "POST"),
    ("/events", "POST"),
];

/// Answers one admin request.
pub(super) async fn handle(ctx: &Ctx, peer: SocketAddr, req: Request<Incoming>) -> Answer {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    // Probes carry no credentials and learn nothing but "up" or "ready".
    match (read, req.uri().path()) {
        (true, "/healthz") => return text(StatusCode::OK, "ok\n"),
        (true, "/readyz") if ctx.shared.draining() => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        (true, "/readyz") => return text(StatusCode::OK, "ready\n"),
        _ => {}
    }
    if let Some(token) = &ctx.token {
        if !token.admits(req.headers()) {
            return denied(ctx, peer, &req);
        }
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/") => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::status::render(&ctx.shared, SystemTime::now()),
        )
        .with_csp(),
        (Method::GET | Method::HEAD, "/metrics") => {
            let store = &ctx.shared.store;
            let m = metrics();
            m.cache_entries.set(store.entry_count() as i64);
            m.cache_bytes.set(store.weighted_size() as i64);
            store.gauge_tiers(&m.storage);
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.encode(),
            )
        }
        (Method::POST, "/purge") => match body::<PurgeRequest>(req).await {
            Ok(r) => purge_one(ctx, peer, &r).await,
            Err(e) => e,
        },
        (Method::POST, "/events") => match body::<Event>(req).await {
            Ok(e) => event(ctx, peer, &e).await,
            Err(e) => e,
        },
        (_, p) => match ROUTES.iter().find(|(route, _)| *route == p) {
            Some((_, allow)) => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            None => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        },
    }
}

/// Security headers for the HTML page: nothing but inline styles may load or run, so a
/// cache key an attacker chose cannot become script even if escaping ever failed.
trait WithCsp {
    fn with_csp(self) -> Self;
}

impl WithCsp for Answer {
    fn with_csp(mut self) -> Self {
        let h = self.headers_mut();
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        self
    }
}

fn denied(ctx: &Ctx, peer: SocketAddr, req: &Request<Incoming>) -> Answer {
    metrics().admin_denied.inc();
    if let Some(suppressed) = ctx.denials.take() {
        tracing::warn!(
            target: "tessera::audit",
            who = %peer,
            method = %req.method(),
            path = req.uri().path(),
            suppressed,
            "admin request refused: missing or wrong token"
        );
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    let h = r.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tessera-admin\""),
    );
    // Lets a browser ask for the token (as the password) to show the status page.
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tessera-admin\", charset=\"UTF-8\""),
    );
    r
}

/// Reads and parses a JSON body, bounded in size and time.
async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let limited = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "the body took too long")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            ))
        }
        Ok(Err(_)) => return Err(error(StatusCode::BAD_REQUEST, "the body was cut short")),
        Ok(Ok(b)) => b.to_bytes(),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not the JSON expected: {e}"),
        )
    })
}

fn kind(p: &Purge) -> &'static str {
    match p {
        Purge::Uri(_) => "url",
        Purge::Prefix(_) => "prefix",
        Purge::Tag { .. } => "tag",
        Purge::Site(_) => "site",
        Purge::All => "all",
    }
}

/// Carries out one purge, counts it, records it for the status page and the audit log.
fn run(ctx: &Ctx, target: &Purge, soft: bool) -> usize {
    let objects = ctx.shared.store.purge(target, soft);
    let m = metrics();
    m.purged_objects.inc_by(objects as u64);
    objects
}

fn record(peer: SocketAddr, kind: &str, what: String, soft: bool, objects: usize) {
    metrics()
        .purges
        .get_or_create(&PurgeKind {
            kind: kind.to_owned(),
            soft: soft.to_string(),
        })
        .inc();
    tracing::info!(target: "tessera::audit", who = %peer, what = %what, soft, objects, "purge");
    board().purged(PurgeRecord {
        at: SystemTime::now(),
        who: peer.to_string(),
        what,
        soft,
        objects,
    });
}

/// Hands purges already applied here to the rest of the fleet, if there is one: `Err`
/// with the reason when Redis did not take them (the purge then did not reach the fleet).
async fn propagate(ctx: &Ctx, purges: Vec<(Purge, bool)>) -> Result<Option<String>, String> {
    match &ctx.shared.fleet {
        None => Ok(None),
        Some(f) => f.publish(purges).await.map(Some),
    }
}

/// The reply to a purge: 200 once applied here and, in a fleet, in the stream; 503 when
/// the stream could not take it (applied here only: the caller must retry).
fn purge_reply(mut body: serde_json::Value, fleet: Result<Option<String>, String>) -> Answer {
    match fleet {
        Ok(None) => json_reply(StatusCode::OK, body),
        Ok(Some(id)) => {
            body["fleet"] = json!({ "stream_id": id });
            json_reply(StatusCode::OK, body)
        }
        Err(why) => {
            tracing::warn!(target: "tessera::audit", "purge applied here but not sent to the fleet: {why}");
            body["fleet"] = json!({ "error": format!("applied on this node only: {why}") });
            json_reply(StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

async fn purge_one(ctx: &Ctx, peer: SocketAddr, r: &PurgeRequest) -> Answer {
    let gen = ctx.shared.generation();
    let (target, what) = match purge::targets(&gen, r) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e.0),
    };
    let objects = run(ctx, &target, r.soft);
    record(peer, kind(&target), what.clone(), r.soft, objects);
    let fleet = propagate(ctx, vec![(target, r.soft)]).await;
    purge_reply(
        json!({ "purged": what, "soft": r.soft, "objects": objects }),
        fleet,
    )
}

async fn event(ctx: &Ctx, peer: SocketAddr, e: &Event) -> Answer {
    let gen = ctx.shared.generation();
    let name = describe(e);
    let targets = match purge::event_targets(&gen, &gen.config.events, e) {
        Ok(t) => t,
        Err(err) => {
            tracing::warn!(target: "tessera::audit", who = %peer, event = %name, "event refused: {err}");
            metrics()
                .purges
                .get_or_create(&PurgeKind {
                    kind: "event-refused".into(),
                    soft: "false".into(),
                })
                .inc();
            return error(StatusCode::UNPROCESSABLE_ENTITY, &err.0);
        }
    };
    let mut total = 0;
    let mut done = Vec::with_capacity(targets.len());
    for (target, what, soft) in &targets {
        let objects = run(ctx, target, *soft);
        total += objects;
        done.push(json!({ "purged": what, "soft": soft, "objects": objects }));
    }
    let whats: Vec<&str> = targets.iter().map(|(_, w, _)| w.as_str()).collect();
    let soft = targets.iter().all(|(_, _, s)| *s);
    record(
        peer,
        "event",
        format!("event {name}: {}", whats.join(", ")),
        soft,
        total,
    );
    let all = targets.into_iter().map(|(t, _, soft)| (t, soft)).collect();
    let fleet = propagate(ctx, all).await;
    purge_reply(
        json!({ "event": name, "objects": total, "purges": done }),
        fleet,
    )
}

/// `publish entry blt123`: the event's name, type and id, for logs.
fn describe(e: &Event) -> String {
    ["event", "type", "id"]
        .iter()
        .filter_map(|k| e.get(*k))
        .map(|v| match v {
            serde_json::Value::String(s) => {
                s.chars().take(64).filter(|c| !c.is_control()).collect()
            }
            other => other.to_string().chars().take(64).collect(),
        })
        .collect::<Vec<String>>()
        .join(" ")
}
