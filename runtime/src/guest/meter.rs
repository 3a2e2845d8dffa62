//! One request's script budget: time spent running guest code, and calls into the host.
//!
//! The time counted is the time a guest call is actually running, not the time its request
//! spends queued behind other work: a busy host slows a well-behaved script down but never
//! makes it exceed its budget. A call's first stretch (up to the first epoch tick, when it
//! yields) is measured by the wall clock, which is free; once it has yielded, each further
//! stretch is measured in the thread's CPU time, so that the operating system preempting
//! the thread on a loaded machine is not charged to the script either.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Host calls (log, clock, random) one request's scripts may make in all.
pub const MAX_HOSTCALLS: u32 = 10_000;

/// The script budget of one request, shared by every script of its chain.
#[derive(Debug)]
pub struct Meter {
    budget: Duration,
    base: Instant,
    /// Nanoseconds spent running so far, not counting a run in progress.
    used: AtomicU64,
    /// Nanoseconds after `base` at which the current run started; 0 when not running.
    since: AtomicU64,
    /// Thread CPU nanoseconds at which the current run started, when it is measured in CPU
    /// time; 0 otherwise.
    since_cpu: AtomicU64,
    hostcalls: AtomicU32,
    log_lines: AtomicU32,
    /// A synchronous call is running: the epoch callback must not ask it to yield.
    sync: std::sync::atomic::AtomicBool,
}

/// The request ran out of script time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("script time budget of {0:?} exceeded")]
pub struct BudgetExceeded(pub Duration);

/// The request's scripts made too many host calls.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("more than {MAX_HOSTCALLS} host calls in one request")]
pub struct HostcallsExceeded;

impl Meter {
    /// A meter with `budget` of script time.
    pub fn new(budget: Duration) -> Meter {
        Meter {
            budget,
            base: Instant::now(),
            used: AtomicU64::new(0),
            since: AtomicU64::new(0),
            since_cpu: AtomicU64::new(0),
            hostcalls: AtomicU32::new(0),
            log_lines: AtomicU32::new(0),
            sync: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The budget this meter was made with.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    fn now_ns(&self) -> u64 {
        // +1 so that a start at `base` is not mistaken for "not running".
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn start(&self, cpu: bool) {
        if cpu {
            self.since_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
        }
        self.since.store(self.now_ns(), Ordering::Relaxed);
    }

    fn stop(&self) {
        let running = self.running_ns();
        self.since.store(0, Ordering::Relaxed);
        self.since_cpu.store(0, Ordering::Relaxed);
        self.used.fetch_add(running, Ordering::Relaxed);
    }

    /// Time of the run in progress; CPU time when it is so measured. Called on the thread
    /// running the guest (poll, or the epoch callback inside it).
    fn running_ns(&self) -> u64 {
        let cpu = self.since_cpu.load(Ordering::Relaxed);
        if cpu != 0 {
            return thread_cpu_ns().saturating_sub(cpu);
        }
        match self.since.load(Ordering::Relaxed) {
            0 => 0,
            since => self.now_ns().saturating_sub(since),
        }
    }

    /// From now on, measures the run in progress in the thread's CPU time. Called at an epoch
    /// tick (on the thread running the guest): a run that reaches one is long enough that
    /// the syscall is worth it.
    pub fn to_cpu(&self) {
        if self.since_cpu.load(Ordering::Relaxed) != 0 {
            return;
        }
        let since = self.since.load(Ordering::Relaxed);
        if since != 0 {
            let now = self.now_ns();
            self.used
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
            self.since.store(now, Ordering::Relaxed);
            self.since_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
        }
    }

    /// Runs a synchronous guest call (the HTML callbacks inside lol_html), counting its time.
    pub fn run_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        self.sync.store(true, Ordering::Relaxed);
        self.start(false);
        let r = f();
        self.stop();
        self.sync.store(false, Ordering::Relaxed);
        r
    }

    /// Whether the guest code running now was called synchronously (it cannot yield).
    pub fn in_sync_call(&self) -> bool {
        self.sync.load(Ordering::Relaxed)
    }

    /// Script time used so far, including a run in progress.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.used.load(Ordering::Relaxed) + self.running_ns())
    }

    /// Whether the budget is spent; checked at every epoch tick while a script runs.
    pub fn exceeded(&self) -> bool {
        self.used() > self.budget
    }

    /// Counts one host call; an error traps the guest.
    pub fn hostcall(&self) -> Result<(), HostcallsExceeded> {
        if self.hostcalls.fetch_add(1, Ordering::Relaxed) >= MAX_HOSTCALLS {
            return Err(HostcallsExceeded);
        }
        Ok(())
    }

    /// Counts one log line; false once the request has logged `max` lines.
    pub fn log_line(&self, max: u32) -> bool {
        self.log_lines.fetch_add(1, Ordering::Relaxed) < max
    }

    /// Polls `fut` to completion, counting only the time spent inside `poll`.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut resumed = false;
        std::future::poll_fn(|cx| {
            self.start(resumed);
            let r = fut.as_mut().poll(cx);
            self.stop();
            resumed = true;
            r
        })
        .await
    }
}

/// CPU time the calling thread has used, in nanoseconds (never 0).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_THREAD_CPUTIME_ID always exists
    // on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn time_waiting_outside_poll_is_not_counted() {
        let m = Meter::new(Duration::from_millis(5));
        // Sleeping is time spent pending, not running: it must not use the budget.
        m.run(tokio::time::sleep(Duration::from_millis(30))).await;
        assert!(!m.exceeded(), "used {:?}", m.used());
        // Blocking inside poll is running time.
        m.run(async { std::thread::sleep(Duration::from_millis(10)) })
            .await;
        assert!(m.exceeded());
    }

    #[tokio::test]
    async fn after_a_yield_sleeping_inside_poll_is_not_cpu_time() {
        let m = Meter::new(Duration::from_millis(5));
        // First poll yields; the second blocks in sleep, which uses no CPU.
        let mut polled = false;
        m.run(std::future::poll_fn(|cx| {
            if polled {
                std::thread::sleep(Duration::from_millis(20));
                std::task::Poll::Ready(())
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }))
        .await;
        assert!(!m.exceeded(), "used {:?}", m.used());
    }

    #[test]
    fn a_synchronous_call_switched_to_cpu_time_is_not_charged_for_sleeping() {
        let m = Meter::new(Duration::from_millis(5));
        m.run_sync(|| {
            m.to_cpu();
            std::thread::sleep(Duration::from_millis(20));
        });
        assert!(!m.exceeded(), "used {:?}", m.used());
    }

    #[test]
    fn hostcalls_are_capped() {
        let m = Meter::new(Duration::from_secs(1));
        for _ in 0..MAX_HOSTCALLS {
            m.hostcall().unwrap();
        }
        assert!(m.hostcall().is_err());
    }
}
