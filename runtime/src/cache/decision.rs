//! How a response is to be cached: what the standards propose, as a script may change it.

use std::time::Duration;

/// A storage decision for one response; durations are whole seconds on the wire to scripts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether to store the response.
    pub store: bool,
    /// Freshness lifetime.
    pub ttl: Duration,
    /// RFC 5861 stale-while-revalidate window after `ttl`.
    pub swr: Duration,
    /// RFC 5861 stale-if-error window after `ttl`.
    pub sie: Duration,
    /// Surrogate keys for purging by tag.
    pub tags: Vec<String>,
}
