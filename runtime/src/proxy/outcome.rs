//! How a request was answered, as named states that map straight onto `Cache-Status`.

use crate::cache::freshness::NotStorable;
use crate::cache::{CacheStatus, Fwd};
use crate::guest::HookFailure;

/// How the cache answered one request; rendered into `Cache-Status` (RFC 9211) and `X-Cache`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Served from cache without asking the origin.
    Hit,
    /// Served from cache although stale, for this reason.
    StaleHit(StaleReason),
    /// Forwarded to the origin; `stored` says whether the answer was kept.
    Forwarded {
        /// Why it went forward.
        fwd: Fwd,
        /// The origin's status.
        status: u16,
        /// Stored, or why not.
        stored: Result<(), NoStore>,
    },
    /// Waited for another request's fetch of the same variant and shared its answer.
    Collapsed {
        /// Why the leader went forward.
        fwd: Fwd,
        /// The origin's status.
        status: u16,
    },
    /// Sent to the origin without using the cache at all.
    Pass {
        /// Why.
        reason: PassReason,
        /// The origin's status, if it answered.
        status: Option<u16>,
    },
    /// Went forward and the origin gave no answer.
    OriginFailed {
        /// Why it went forward.
        fwd: Fwd,
        /// `origin-unreachable`, `origin-timeout`, …
        error: &'static str,
    },
    /// Answered by the site's script without cache or origin.
    Synthetic,
    /// Answered by the proxy itself.
    Refused(Refusal),
}

/// Why a stale response was served.
#[derive(Debug, Clone, PartialEq)]
pub enum StaleReason {
    /// RFC 5861 §3: served while one background refresh runs.
    WhileRevalidate,
    /// RFC 5861 §4: the origin failed with this detail.
    IfError(&'static str),
    /// RFC 9111 §5.2.1.2: the client accepts stale (`max-stale`).
    MaxStale,
}

/// Why a response was not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum NoStore {
    /// RFC 9111 rules.
    Rfc(NotStorable),
    /// Zero lifetime, no stale permission, not `public`, no validator: nothing makes it
    /// shareable and nothing could revalidate it.
    NoPermission,
    /// Larger than `max_object_size`.
    TooLarge,
    /// The site's script decided not to store it.
    Script,
    /// The site's script failed deciding; fail closed.
    ScriptFailed(HookFailure),
    /// A 5xx while a good stale copy is kept (RFC 5861 §4): the copy stays.
    KeptStaleCopy,
    /// A 304 that does not identify the stored response (RFC 9111 §4.3.4).
    NotSelected,
}

impl NoStore {
    /// The `Cache-Status` detail token.
    pub fn detail(&self) -> String {
        match self {
            NoStore::Rfc(r) => r.as_str().to_owned(),
            NoStore::NoPermission => "no-permission".into(),
            NoStore::TooLarge => "too-large".into(),
            NoStore::Script => "script".into(),
            NoStore::ScriptFailed(f) => f.detail(),
            NoStore::KeptStaleCopy => "kept-stale-copy".into(),
            NoStore::NotSelected => "304-not-selected".into(),
        }
    }

    /// Whether the response itself says it is not for sharing, so that later requests for
    /// the key should not wait for one another (hit-for-miss).
    pub fn marks_uncacheable(&self) -> bool {
        matches!(
            self,
            NoStore::Rfc(
                NotStorable::NoStore
                    | NotStorable::Private
                    | NotStorable::SetCookie
                    | NotStorable::Vary
                    | NotStorable::NoFreshness
            ) | NoStore::NoPermission
                | NoStore::TooLarge
                | NoStore::Script
        )
    }
}

/// Why a request bypassed the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum PassReason {
    /// The method is not served from cache.
    Method,
    /// The script's `cache_key` failed; fail closed, no lookup and no store.
    KeyFailed(HookFailure),
    /// A protocol upgrade (WebSocket): tunnelled, never cached.
    Upgrade,
    /// The site's `on_request` said `pass`.
    Script,
    /// It came back round from a trusted edge (shields in a loop): to the origin.
    Loop,
}

/// Why the proxy answered by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No site answers this Host.
    NoSite,
    /// The Host (or the target's authority) is not `host[:port]` (RFC 9112 §3.2).
    BadHost,
    /// RFC 9111 §5.2.1.7: nothing usable is stored and the client will not wait for the origin.
    OnlyIfCached(Fwd),
    /// No script instance became free in time.
    Busy,
    /// A hook whose failure policy is `fail` failed.
    ScriptFailed(HookFailure),
    /// The request body is over `max_request_body`.
    BodyTooLarge,
    /// An ESI page could not be assembled before its first byte was sent.
    IncludeFailed(String),
    /// As many upgraded connections are open as `max_connections` allows.
    TooManyTunnels,
    /// The request already came through this node (its `Via` names it) from a peer that is
    /// not a trusted edge: a loop, or a client pretending to be one.
    Loop,
}

impl Outcome {
    /// This cache's `Cache-Status` member fields (the caller adds ttl and key).
    pub fn cache_status(&self) -> CacheStatus {
        let mut s = CacheStatus::default();
        match self {
            Outcome::Hit => s.hit = true,
            Outcome::StaleHit(reason) => {
                s.hit = true;
                // A max-stale hit never went forward; the others did (or do, in background).
                if *reason != StaleReason::MaxStale {
                    s.fwd = Some(Fwd::Stale);
                }
                s.detail = Some(match reason {
                    StaleReason::WhileRevalidate => "stale-while-revalidate".into(),
                    StaleReason::IfError(why) => format!("stale-if-error; {why}"),
                    StaleReason::MaxStale => "max-stale".into(),
                });
            }
            Outcome::Forwarded {
                fwd,
                status,
                stored,
            } => {
                s.fwd = Some(*fwd);
                s.fwd_status = Some(*status);
                match stored {
                    Ok(()) => s.stored = true,
                    Err(why) => s.detail = Some(why.detail()),
                }
            }
            Outcome::Collapsed { fwd, status } => {
                s.fwd = Some(*fwd);
                s.fwd_status = Some(*status);
                s.collapsed = true;
            }
            Outcome::Pass { reason, status } => {
                s.fwd_status = *status;
                match reason {
                    PassReason::Method => s.fwd = Some(Fwd::Method),
                    PassReason::KeyFailed(f) => {
                        s.fwd = Some(Fwd::Bypass);
                        s.detail = Some(f.detail());
                    }
                    PassReason::Upgrade => {
                        s.fwd = Some(Fwd::Bypass);
                        s.detail = Some("upgrade".into());
                    }
                    PassReason::Script => {
                        s.fwd = Some(Fwd::Bypass);
                        s.detail = Some("script-pass".into());
                    }
                    PassReason::Loop => {
                        s.fwd = Some(Fwd::Bypass);
                        s.detail = Some("loop".into());
                    }
                }
            }
            Outcome::OriginFailed { fwd, error } => {
                s.fwd = Some(*fwd);
                s.detail = Some((*error).into());
            }
            Outcome::Synthetic => s.detail = Some("synthetic".into()),
            Outcome::Refused(r) => match r {
                Refusal::NoSite => {
                    s.fwd = Some(Fwd::Bypass);
                    s.detail = Some("no-site".into());
                }
                Refusal::BadHost => {
                    s.fwd = Some(Fwd::Bypass);
                    s.detail = Some("bad-host".into());
                }
                Refusal::OnlyIfCached(fwd) => {
                    s.fwd = Some(*fwd);
                    s.detail = Some("only-if-cached".into());
                }
                Refusal::Busy => s.detail = Some("busy".into()),
                Refusal::ScriptFailed(f) => s.detail = Some(f.detail()),
                Refusal::BodyTooLarge => s.detail = Some("request-body-too-large".into()),
                Refusal::TooManyTunnels => s.detail = Some("upgrade-limit".into()),
                Refusal::Loop => s.detail = Some("loop".into()),
                Refusal::IncludeFailed(why) => s.detail = Some(format!("esi; {why}")),
            },
        }
        s
    }

    /// A short name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::StaleHit(_) => "stale",
            Outcome::Forwarded { stored: Ok(()), .. } => "miss",
            Outcome::Forwarded { .. } => "uncacheable",
            Outcome::Collapsed { .. } => "collapsed",
            Outcome::Pass { .. } => "pass",
            Outcome::OriginFailed { .. } => "origin-error",
            Outcome::Synthetic => "synthetic",
            Outcome::Refused(_) => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{GuestError, Hook};

    #[test]
    fn outcomes_render_rfc9211_members() {
        let miss = Outcome::Forwarded {
            fwd: Fwd::UriMiss,
            status: 200,
            stored: Ok(()),
        };
        assert_eq!(
            miss.cache_status().render("edge-1"),
            "edge-1; fwd=uri-miss; fwd-status=200; stored"
        );
        let failed = Outcome::Pass {
            reason: PassReason::KeyFailed(HookFailure {
                hook: Hook::CacheKey,
                error: GuestError::Trap("x".into()),
            }),
            status: Some(200),
        };
        assert_eq!(
            failed.cache_status().render("n"),
            "n; fwd=bypass; fwd-status=200; detail=\"script-error; cache-key; trap\""
        );
        assert_eq!(
            Outcome::StaleHit(StaleReason::MaxStale)
                .cache_status()
                .render("n"),
            "n; hit; detail=\"max-stale\""
        );
    }
}
