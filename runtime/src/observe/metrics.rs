//! Prometheus metrics (prometheus-client): what the proxy counts and times, and the text
//! exposition served at the admin listener's `/metrics`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-site series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Site {
    /// Site name (`-` when no site answered).
    pub site: String,
}

/// Labels of request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteOutcome {
    /// Site name.
    pub site: String,
    /// `hit`, `stale`, `miss`, `uncacheable`, `collapsed`, `pass`, `origin-error`,
    /// `synthetic`, `refused`.
    pub outcome: String,
}

/// Labels of guest call times.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Hook {
    /// The hook's WIT name.
    pub hook: String,
}

/// Labels of instance counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuestInstance {
    /// Site name.
    pub site: String,
    /// `fresh` (instantiated for the request) or `reused` (kept from an earlier one).
    pub how: String,
}

/// Labels of memoised-key counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyMemoResult {
    /// Site name.
    pub site: String,
    /// `hit` (answered from the memo), `stored` (a call's answer kept) or `unstored` (a
    /// call that read the clock, randomness or a counter, ran on a used instance, or whose
    /// memo key was over 8 KiB or too heavy to keep).
    pub result: String,
}

/// Labels of guest failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuestError {
    /// Site name.
    pub site: String,
    /// The hook's WIT name.
    pub hook: String,
    /// `timeout`, `memory`, `trap`, `output`, `busy`, …
    pub kind: String,
}

/// Labels of purges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurgeKind {
    /// `url`, `prefix`, `tag`, `site`, `all`, `event`.
    pub kind: String,
    /// `true` for soft purges.
    pub soft: String,
}

/// Labels of fleet stream events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetEvent {
    /// `published`, `publish_failed`, `applied`, `disconnected`, `flushed_behind`, `malformed`.
    pub event: String,
}

/// Labels of reloads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Result {
    /// `ok` or `error`.
    pub result: String,
}

fn seconds() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

fn guest_seconds() -> Histogram {
    // 2 µs to ~65 ms.
    Histogram::new(exponential_buckets(0.000_002, 2.0, 16))
}

type Seconds = Family<Site, Histogram, fn() -> Histogram>;

/// Every series the proxy exports.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by site and cache outcome.
    pub requests: Family<SiteOutcome, Counter>,
    /// Time from request head to the end of the response body.
    pub response_seconds: Seconds,
    /// Requests sent to origins.
    pub origin_requests: Family<Site, Counter>,
    /// Time origins took to send a response head.
    pub origin_seconds: Seconds,
    /// Body bytes received from origins.
    pub origin_bytes: Family<Site, Counter>,
    /// Body bytes sent to clients.
    pub served_bytes: Family<Site, Counter>,
    /// Guest time per call, by hook.
    pub guest_seconds: Family<Hook, Histogram, fn() -> Histogram>,
    /// Failed hooks, by site, hook and kind.
    pub guest_errors: Family<GuestError, Counter>,
    /// Instances given to requests, by site, fresh or reused.
    pub guest_instances: Family<GuestInstance, Counter>,
    /// `cache-key` answers from the memo, and calls kept or not (`key_memo_kib`), by site.
    pub key_memo: Family<KeyMemoResult, Counter>,
    /// Purge requests (and publish events), by kind.
    pub purges: Family<PurgeKind, Counter>,
    /// Stored responses removed or marked stale by purges.
    pub purged_objects: Counter,
    /// Requests that waited for another request's origin fetch.
    pub coalesced: Family<Site, Counter>,
    /// Objects in the cache (set when scraped).
    pub cache_entries: Gauge,
    /// Bytes the cache holds (set when scraped).
    pub cache_bytes: Gauge,
    /// Configuration reloads, by result.
    pub reloads: Family<Result, Counter>,
    /// Admin requests refused for a missing or wrong token.
    pub admin_denied: Counter,
    /// Fleet purge stream events (see `fleet.rs`).
    pub fleet: Family<FleetEvent, Counter>,
    /// Storage tiers (memory, disk).
    pub storage: super::storage::Storage,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tessera");
        let m = Metrics {
            requests: Family::default(),
            response_seconds: Family::new_with_constructor(seconds),
            origin_requests: Family::default(),
            origin_seconds: Family::new_with_constructor(seconds),
            origin_bytes: Family::default(),
            served_bytes: Family::default(),
            guest_seconds: Family::new_with_constructor(guest_seconds),
            guest_errors: Family::default(),
            guest_instances: Family::default(),
            key_memo: Family::default(),
            purges: Family::default(),
            purged_objects: Counter::default(),
            coalesced: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            reloads: Family::default(),
            admin_denied: Counter::default(),
            fleet: Family::default(),
            storage: Default::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Requests answered, by site and cache outcome",
            m.requests.clone(),
        );
        r.register(
            "response_duration_seconds",
            "Request head to end of response body",
            m.response_seconds.clone(),
        );
        r.register(
            "origin_requests",
            "Requests sent to origins",
            m.origin_requests.clone(),
        );
        r.register(
            "origin_duration_seconds",
            "Time to an origin's response head",
            m.origin_seconds.clone(),
        );
        r.register(
            "origin_bytes",
            "Body bytes received from origins",
            m.origin_bytes.clone(),
        );
        r.register(
            "served_bytes",
            "Body bytes sent to clients",
            m.served_bytes.clone(),
        );
        r.register(
            "guest_call_duration_seconds",
            "Script time per hook call",
            m.guest_seconds.clone(),
        );
        r.register(
            "guest_errors",
            "Failed hooks, by site, hook and kind",
            m.guest_errors.clone(),
        );
        r.register(
            "guest_instances",
            "Instances given to requests, by site: fresh, or reused (instance_reuse)",
            m.guest_instances.clone(),
        );
        r.register(
            "guest_key_memo",
            "Memoised cache keys, by site: hit, stored, unstored (key_memo_kib)",
            m.key_memo.clone(),
        );
        r.register(
            "purges",
            "Purge requests and publish events, by kind",
            m.purges.clone(),
        );
        r.register(
            "purged_objects",
            "Stored responses removed or marked stale by purges",
            m.purged_objects.clone(),
        );
        r.register(
            "fleet_events",
            "Fleet purge stream: published, publish_failed, applied, disconnected, flushed_behind, malformed",
            m.fleet.clone(),
        );
        r.register(
            "coalesced_waiters",
            "Requests that waited for another request's origin fetch",
            m.coalesced.clone(),
        );
        r.register(
            "cache_entries",
            "Cache entries (keys; each holds its Vary variants)",
            m.cache_entries.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes the cache holds",
            m.cache_bytes.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, by result",
            m.reloads.clone(),
        );
        r.register(
            "admin_denied",
            "Admin requests refused for a missing or wrong token",
            m.admin_denied.clone(),
        );
        m.storage.register(r);
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// The process's metrics. One registry per process: several servers in one process (tests)
/// share it.
pub fn metrics() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

/// Shorthand for a per-site label.
pub fn site(name: &str) -> Site {
    Site {
        site: name.to_owned(),
    }
}
