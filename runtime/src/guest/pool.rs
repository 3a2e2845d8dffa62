//! Admission to the instance pool: requests wait in a bounded queue for a free instance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ScriptsConfig;

/// Why a request got no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// As many requests are already waiting as the queue holds.
    #[error("instance queue is full")]
    QueueFull,
    /// The wait for an instance took longer than the queue timeout.
    #[error("no instance became free in time")]
    Timeout,
}

/// Slots of the wasmtime pool, handed out in FIFO order.
#[derive(Debug)]
pub struct InstancePool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
    timeout: Duration,
}

/// Held while instances are alive; dropping it frees their slots.
#[derive(Debug)]
pub struct Slots(#[allow(dead_code)] OwnedSemaphorePermit);

impl InstancePool {
    /// A pool as configured; its size must match the engine's pooling allocator.
    pub fn new(cfg: &ScriptsConfig) -> InstancePool {
        InstancePool {
            permits: Arc::new(Semaphore::new(cfg.instances as usize)),
            waiting: AtomicUsize::new(0),
            max_queued: cfg.max_queued,
            timeout: cfg.queue_timeout,
        }
    }

    /// Takes `n` slots at once (one per script of a chain, so that chains never deadlock on
    /// each other), waiting in line if none are free.
    pub async fn admit(&self, n: u32) -> Result<Slots, Busy> {
        if let Ok(p) = self.permits.clone().try_acquire_many_owned(n) {
            return Ok(Slots(p));
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy::QueueFull);
        }
        let got =
            tokio::time::timeout(self.timeout, self.permits.clone().acquire_many_owned(n)).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(Slots(p)),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Busy::Timeout),
        }
    }

    /// Requests waiting for an instance right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(instances: u32, max_queued: usize, timeout_ms: u64) -> InstancePool {
        InstancePool::new(&ScriptsConfig {
            instances,
            max_queued,
            queue_timeout: Duration::from_millis(timeout_ms),
        })
    }

    #[tokio::test]
    async fn waiters_get_slots_in_turn_and_a_full_queue_refuses() {
        let p = Arc::new(pool(1, 1, 60_000));
        let held = p.admit(1).await.unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.admit(1).await.map(|_| ()) })
        };
        while p.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(p.admit(1).await.unwrap_err(), Busy::QueueFull);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(p.available(), 1);
    }

    #[tokio::test]
    async fn a_wait_past_the_timeout_gives_up() {
        let p = pool(1, 10, 10);
        let _held = p.admit(1).await.unwrap();
        assert_eq!(p.admit(1).await.unwrap_err(), Busy::Timeout);
        assert_eq!(p.waiting(), 0);
    }
}
