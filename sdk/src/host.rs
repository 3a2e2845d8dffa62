//! Host capabilities: logging, wall-clock time and randomness.
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
