//! Host capabilities: logging, wall-clock time, randomness, the site's script settings and
//! rate-limit counters.
//!
//! On `wasm32` these call the `tessera:edge` imports; elsewhere (native unit tests) they
//! go through the seam in [`crate::testing`].

use crate::LogLevel;

/// Writes one line to the host's log at `level`; the host tags it with site and request id.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::tessera::edge::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::seam::log(level, message);
}

/// Milliseconds since the Unix epoch, as the host's clock sees it.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::tessera::edge::clock::now_ms();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::seam::now_ms();
}

/// A uniformly random 64-bit number from the host's CSPRNG.
pub fn random_u64() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::tessera::edge::random::random_u64();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::seam::random_u64();
}

/// The value the operator set for `name` in the site's `[site.script_config]` (literal, or
/// a secret read from the environment or a file), if any.
pub fn config(name: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::tessera::edge::config::get(name);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::seam::config(name);
}

/// Counts one event for `key` in the current fixed window of `window_secs` seconds (1 to
/// 86400), kept by the host across requests; true while at most `limit` were counted in
/// it. Keys are at most 256 bytes (longer, or a window out of range, fails the hook).
pub fn rate_limit(key: &str, limit: u32, window_secs: u32) -> bool {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::tessera::edge::rate_limit::check(key, limit, window_secs);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::seam::rate_limit(key, limit, window_secs);
}
