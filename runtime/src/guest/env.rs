//! What a site's scripts can reach beyond their own request: the site's `script_config`
//! values and the host's rate-limit counters (`wit/host.wit`: `config`, `rate-limit`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ScriptConfig;

/// Counters kept at once, across all sites; the least used go first beyond this.
const MAX_COUNTERS: u64 = 100_000;
/// Longest rate-limit key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest window, in seconds.
pub const MAX_WINDOW_SECS: u32 = 86_400;

/// The site's script settings and the process's counters, shared by its scripts.
#[derive(Default)]
pub struct ScriptEnv {
    /// `[site.script_config]`.
    pub config: ScriptConfig,
    /// Rate-limit counters (shared by every site; keys are namespaced by site).
    pub limiter: Arc<RateLimiter>,
}

/// Fixed-window counters per (site, key, window length), kept across requests, instances
/// and reloads. Bounded: past [`MAX_COUNTERS`] the least used are forgotten, so a flood of
/// new keys costs memory only up to the bound.
pub struct RateLimiter {
    windows: moka::sync::Cache<Counter, Arc<Mutex<(u64, u32)>>>,
}

/// A counter's name: site, key, window length in seconds.
type Counter = (Arc<str>, String, u32);

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            windows: moka::sync::Cache::builder()
                .max_capacity(MAX_COUNTERS)
                .time_to_idle(Duration::from_secs(u64::from(MAX_WINDOW_SECS)))
                .build(),
        }
    }
}

impl RateLimiter {
    /// Counts one event for `key` of `site` in the window of `window_secs` holding
    /// `now_ms`; true while at most `limit` were counted in it.
    pub fn check(
        &self,
        site: &Arc<str>,
        key: &str,
        limit: u32,
        window_secs: u32,
        now_ms: u64,
    ) -> bool {
        let window = now_ms / 1000 / u64::from(window_secs.max(1));
        let cell = self
            .windows
            .get_with((site.clone(), key.to_owned(), window_secs), || {
                Arc::new(Mutex::new((window, 0)))
            });
        let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
        if c.0 != window {
            *c = (window, 0);
        }
        c.1 = c.1.saturating_add(1);
        c.1 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_limit_then_refuses_until_the_next() {
        let l = RateLimiter::default();
        let site: Arc<str> = "s".into();
        let t = 1_800_000_000_000;
        let admitted = (0..5).filter(|_| l.check(&site, "k", 3, 60, t)).count();
        assert_eq!(admitted, 3);
        assert!(l.check(&site, "other", 3, 60, t), "keys are apart");
        assert!(!l.check(&"s".into(), "k", 3, 60, t + 1_000), "same window");
        assert!(l.check(&site, "k", 3, 60, t + 60_000), "next window");
        assert!(l.check(&"t".into(), "k", 3, 60, t), "sites are apart");
        assert!(
            !l.check(&site, "k", 0, 60, t + 120_000),
            "a zero limit admits nothing"
        );
    }
}
