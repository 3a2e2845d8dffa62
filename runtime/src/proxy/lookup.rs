//! Phase "lookup": what to do with what the store holds for a request. A pure decision.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use super::outcome::StaleReason;
use crate::cache::directives::CacheControl;
use crate::cache::freshness::{self, Reuse, StoredFacts};
use crate::cache::{Entry, Fwd, Lookup};

/// The request's own caching directives (RFC 9111 §5.2.1, §5.4).
#[derive(Debug, Clone, Default)]
pub struct Directives {
    /// Its `Cache-Control`.
    pub cc: CacheControl,
    /// `Pragma: no-cache` without `Cache-Control`.
    pub pragma_no_cache: bool,
}

impl Directives {
    /// Reads them from the request headers.
    pub fn of(headers: &HeaderMap) -> Directives {
        Directives {
            cc: CacheControl::from_headers(headers),
            pragma_no_cache: freshness::pragma_no_cache(headers),
        }
    }

    fn forces_forward(&self) -> bool {
        self.cc.no_cache.is_some()
            || self.pragma_no_cache
            || self.cc.max_age.is_some()
            || self.cc.min_fresh.is_some()
    }
}

/// A stored response that is being revalidated, and whether it may stand in for an error.
#[derive(Debug, Clone)]
pub struct Stale {
    /// The stored response.
    pub entry: Arc<Entry>,
    /// Within stale-if-error: serve it if the origin fails.
    pub serve_on_error: bool,
}

/// What the request path does next.
#[derive(Debug)]
pub enum Action {
    /// Serve the stored response; start a background refresh if refresh-ahead says so.
    Hit {
        /// The response.
        entry: Arc<Entry>,
        /// Past the refresh-ahead point of its lifetime.
        refresh: bool,
    },
    /// Serve the stored response although stale.
    StaleHit {
        /// The response.
        entry: Arc<Entry>,
        /// Why that is allowed.
        reason: StaleReason,
        /// Start one background refresh.
        refresh: bool,
    },
    /// Go to the origin; with `stale`, conditionally (revalidation).
    Fetch {
        /// Why.
        fwd: Fwd,
        /// The stored response being revalidated.
        stale: Option<Stale>,
    },
    /// The client forbids going forward and nothing usable is stored: 504.
    OnlyIfCached(Fwd),
}

/// Decides from the lookup, the request's directives and the time.
pub fn decide(
    found: &Lookup,
    d: &Directives,
    now: SystemTime,
    refresh_ahead: Option<f64>,
) -> Action {
    let entry = match found {
        Lookup::Found(e) => e,
        Lookup::VaryMiss(_) | Lookup::UriMiss => {
            let fwd = if matches!(found, Lookup::UriMiss) {
                Fwd::UriMiss
            } else {
                Fwd::VaryMiss
            };
            return if d.cc.only_if_cached {
                Action::OnlyIfCached(fwd)
            } else {
                Action::Fetch { fwd, stale: None }
            };
        }
    };
    let ttl = entry.effective_ttl();
    let age = entry.age(now);
    let facts = StoredFacts {
        ttl,
        age,
        swr: entry.swr.get(),
        sie: entry.sie.get(),
        no_cache: entry.no_cache,
        must_revalidate: entry.must_revalidate,
    };
    let reuse = freshness::reuse(&facts, &d.cc, d.pragma_no_cache);
    if d.cc.only_if_cached && !matches!(reuse, Reuse::Fresh | Reuse::StaleAllowedByRequest) {
        // RFC 9111 §5.2.1.7: stored but not usable without going forward.
        return Action::OnlyIfCached(Fwd::Stale);
    }
    let entry = entry.clone();
    match reuse {
        Reuse::Fresh => {
            let refresh = refresh_ahead
                .is_some_and(|f| !ttl.is_zero() && age.as_secs_f64() >= ttl.as_secs_f64() * f);
            Action::Hit { entry, refresh }
        }
        Reuse::StaleAllowedByRequest => Action::StaleHit {
            entry,
            reason: StaleReason::MaxStale,
            refresh: false,
        },
        Reuse::Stale {
            within_swr: true, ..
        } => Action::StaleHit {
            entry,
            reason: StaleReason::WhileRevalidate,
            refresh: true,
        },
        Reuse::Stale { within_sie, .. } => Action::Fetch {
            fwd: Fwd::Stale,
            stale: Some(Stale {
                entry,
                serve_on_error: within_sie,
            }),
        },
        Reuse::MustRevalidate => Action::Fetch {
            fwd: if d.forces_forward() {
                Fwd::Request
            } else {
                Fwd::Stale
            },
            stale: Some(Stale {
                entry,
                serve_on_error: false,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(ttl: u64, age: u64, must_revalidate: bool, swr: u64) -> Arc<Entry> {
        let received = SystemTime::now() - Duration::from_secs(age);
        let e = Entry::new(
            http::StatusCode::OK,
            &HeaderMap::new(),
            "u".into(),
            received,
            Duration::from_secs(ttl),
        );
        Arc::new(Entry {
            swr: Duration::from_secs(swr).into(),
            must_revalidate,
            ..e
        })
    }

    fn with(cc: &str) -> Directives {
        let mut h = HeaderMap::new();
        h.insert("cache-control", cc.parse().unwrap());
        Directives::of(&h)
    }

    #[test]
    fn max_stale_never_reaches_an_entry_kept_only_for_revalidation() {
        let found = Lookup::Found(entry(0, 5, true, 0));
        let action = decide(&found, &with("max-stale"), SystemTime::now(), None);
        assert!(
            matches!(
                action,
                Action::Fetch {
                    fwd: Fwd::Stale,
                    stale: Some(_)
                }
            ),
            "{action:?}"
        );
    }

    #[test]
    fn max_stale_reaches_an_entry_that_had_a_lifetime() {
        let found = Lookup::Found(entry(10, 20, false, 0));
        let action = decide(&found, &with("max-stale=60"), SystemTime::now(), None);
        assert!(matches!(
            action,
            Action::StaleHit {
                reason: StaleReason::MaxStale,
                refresh: false,
                ..
            }
        ));
    }

    #[test]
    fn stale_within_swr_is_served_with_one_refresh_and_only_if_cached_misses_give_504() {
        let found = Lookup::Found(entry(10, 20, false, 60));
        let action = decide(&found, &Directives::default(), SystemTime::now(), None);
        assert!(matches!(
            action,
            Action::StaleHit {
                reason: StaleReason::WhileRevalidate,
                refresh: true,
                ..
            }
        ));
        let action = decide(
            &Lookup::UriMiss,
            &with("only-if-cached"),
            SystemTime::now(),
            None,
        );
        assert!(matches!(action, Action::OnlyIfCached(Fwd::UriMiss)));
    }

    #[test]
    fn refresh_ahead_fires_past_its_fraction_of_the_lifetime() {
        let found = Lookup::Found(entry(100, 95, false, 0));
        let action = decide(&found, &Directives::default(), SystemTime::now(), Some(0.9));
        assert!(matches!(action, Action::Hit { refresh: true, .. }));
        let found = Lookup::Found(entry(100, 10, false, 0));
        let action = decide(&found, &Directives::default(), SystemTime::now(), Some(0.9));
        assert!(matches!(action, Action::Hit { refresh: false, .. }));
    }
}
