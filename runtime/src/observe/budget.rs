//! A rate limit for log lines that hostile input could otherwise multiply.

use std::sync::atomic::{AtomicU64, Ordering};

/// Allows a few lines per second and counts the ones it holds back.
pub struct LogBudget {
    per_second: u64,
    /// Second (since the epoch) and count packed as `second << 16 | count`.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogBudget {
    /// At most `per_second` lines a second (at most 65,535).
    pub const fn new(per_second: u64) -> LogBudget {
        LogBudget {
            per_second: if per_second > 0xffff {
                0xffff
            } else {
                per_second
            },
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be written now.
    pub fn take(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let w = self.window.load(Ordering::Relaxed);
        let (sec, count) = (w >> 16, w & 0xffff);
        let next = if sec == now {
            if count >= self.per_second {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            w + 1
        } else {
            (now << 16) | 1
        };
        self.window.store(next, Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_not_written() {
        let b = LogBudget::new(2);
        let taken: Vec<Option<u64>> = (0..5).map(|_| b.take()).collect();
        // All five calls usually fall in one second; if the second turned, the budget
        // refilled and more lines pass, never fewer.
        assert!(taken.iter().filter(|t| t.is_some()).count() >= 2);
        assert_eq!(taken[0], Some(0));
    }
}
