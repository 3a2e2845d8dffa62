//! The cache's notion of "now": the system clock, or a virtual clock that tests move forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Wall-clock time as the cache sees it (freshness, ages, stale windows, scripts' `now_ms`).
///
/// Timers of the network stack (timeouts, keep-alive) always use real time; only the
/// decisions that RFC 9111 bases on `now` go through this clock, so a test can age an entry
/// by 130 s in a microsecond and never depend on how fast the machine is.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew: Option<Arc<AtomicU64>>,
    /// Where a frozen clock stands before any advance; `None`: it runs with the system.
    base: Option<SystemTime>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            skew: None,
            base: None,
        }
    }

    /// A clock that runs with the system clock plus an offset that [`Clock::advance`] grows.
    pub fn virtual_clock() -> Clock {
        Clock {
            skew: Some(Arc::new(AtomicU64::new(0))),
            base: None,
        }
    }

    /// A virtual clock that stands still between advances, at a whole second: for windows
    /// shorter than the pauses of a loaded machine (a 1 s TTL), which a running clock
    /// would cross at random.
    pub fn frozen() -> Clock {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Clock::frozen_at(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// A virtual clock that stands at `at` until advanced (a replayed log's first line).
    pub fn frozen_at(at: SystemTime) -> Clock {
        Clock {
            skew: Some(Arc::new(AtomicU64::new(0))),
            base: Some(at),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        let now = self.base.unwrap_or_else(SystemTime::now);
        match &self.skew {
            None => now,
            Some(s) => now + Duration::from_millis(s.load(Ordering::Relaxed)),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Moves a virtual clock forward; returns false (and does nothing) on the system clock.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.skew {
            None => false,
            Some(s) => {
                s.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
                true
            }
        }
    }
}

impl Clock {
    /// Moves a virtual clock forward to `t`; a `t` in its past leaves it where it is (a log's
    /// lines are only roughly in order).
    pub fn advance_to(&self, t: SystemTime) -> bool {
        match t.duration_since(self.now()) {
            Ok(by) => self.advance(by),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let c = Clock::frozen();
        let t = c.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.now(), t);
        assert!(c.advance(Duration::from_secs(2)));
        assert_eq!(c.now(), t + Duration::from_secs(2));
        assert_eq!(c.now_ms() % 1000, 0, "it stands at a whole second");
        let later = t + Duration::from_secs(60);
        assert!(c.advance_to(later));
        assert!(!c.advance_to(t), "never backwards");
        assert_eq!(c.now(), later);
    }

    #[test]
    fn a_virtual_clock_moves_only_when_told_and_the_system_clock_never_does() {
        let v = Clock::virtual_clock();
        let before = v.now();
        assert!(v.advance(Duration::from_secs(130)));
        let after = v.now();
        assert!(after.duration_since(before).unwrap() >= Duration::from_secs(130));
        assert!(!Clock::system().advance(Duration::from_secs(1)));
    }
}
