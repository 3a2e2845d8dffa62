//! What the admin status page shows: recent traffic as a time series, the keys hit most,
//! recent purges, and guest time per script. Bounded in memory whatever the traffic.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// Samples kept: ten minutes at one per [`SAMPLE_EVERY`].
pub const SAMPLES: usize = 120;
/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Keys whose hits are counted; the least used ones are evicted (TinyLFU).
const TOP_KEYS: u64 = 4096;
/// Purges remembered.
const PURGES: usize = 20;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When.
    pub at: SystemTime,
    /// Requests answered so far.
    pub requests: u64,
    /// Of which from cache.
    pub hits: u64,
    /// Requests sent to origins so far.
    pub origin: u64,
}

/// One purge, for the audit trail on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    /// When.
    pub at: SystemTime,
    /// Who asked (client address).
    pub who: String,
    /// What: `tag product-1`, `url …`, `event publish entry blt123`, …
    pub what: String,
    /// Soft or hard.
    pub soft: bool,
    /// Stored responses reached.
    pub objects: usize,
}

/// The status page's data.
pub struct Board {
    requests: AtomicU64,
    hits: AtomicU64,
    origin: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
    /// Second (since the epoch) of the last sample.
    sampled: AtomicU64,
    top: moka::sync::Cache<Arc<str>, Arc<AtomicU64>>,
    purges: Mutex<VecDeque<PurgeRecord>>,
    /// Guest time per call in microseconds, by script file name.
    scripts: Mutex<HashMap<String, hdrhistogram::Histogram<u64>>>,
    started: SystemTime,
}

/// The process's board.
pub fn board() -> &'static Board {
    static B: LazyLock<Board> = LazyLock::new(|| Board {
        requests: AtomicU64::new(0),
        hits: AtomicU64::new(0),
        origin: AtomicU64::new(0),
        samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        sampled: AtomicU64::new(0),
        top: moka::sync::Cache::new(TOP_KEYS),
        purges: Mutex::new(VecDeque::with_capacity(PURGES)),
        scripts: Mutex::new(HashMap::new()),
        started: SystemTime::now(),
    });
    &B
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Board {
    /// Counts an answered request; `key` is its cache key when it was served from cache.
    pub fn request(&self, hit: bool, key: Option<&str>) {
        self.tick(SystemTime::now());
        self.requests.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(k) = key {
                // A hot key is counted without allocating its name again; only a key seen
                // for the first time (or again after eviction) is copied in.
                match self.top.get(k) {
                    Some(n) => n.fetch_add(1, Ordering::Relaxed),
                    None => self
                        .top
                        .get_with(k.into(), || Arc::new(AtomicU64::new(0)))
                        .fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    }

    /// Counts a request to an origin.
    pub fn origin(&self) {
        self.origin.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one guest call of `script`.
    pub fn guest(&self, script: &str, took: Duration) {
        let mut s = lock(&self.scripts);
        let micros = (took.as_micros() as u64).clamp(1, 60_000_000);
        // A script seen before is found without copying its name.
        if let Some(h) = s.get_mut(script) {
            let _ = h.record(micros);
            return;
        }
        if s.len() >= 256 {
            return;
        }
        let mut h =
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
        let _ = h.record(micros);
        s.insert(script.to_owned(), h);
    }

    /// Records a purge for the audit trail.
    pub fn purged(&self, record: PurgeRecord) {
        let mut p = lock(&self.purges);
        if p.len() == PURGES {
            p.pop_front();
        }
        p.push_back(record);
    }

    /// Takes a sample of the counters if the last one is [`SAMPLE_EVERY`] old. Called as
    /// requests are counted and when the board is read, so no task has to run for it (and
    /// several servers in one process share one series).
    pub fn tick(&self, now: SystemTime) {
        let sec = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.sampled.load(Ordering::Relaxed);
        if sec < last + SAMPLE_EVERY.as_secs()
            || self
                .sampled
                .compare_exchange(last, sec, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let s = Sample {
            at: now,
            requests: self.requests.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            origin: self.origin.load(Ordering::Relaxed),
        };
        let mut v = lock(&self.samples);
        if v.len() == SAMPLES {
            v.pop_front();
        }
        v.push_back(s);
    }

    /// Samples so far, oldest first, and the counters now.
    pub fn samples(&self) -> Vec<Sample> {
        self.tick(SystemTime::now());
        let mut v: Vec<Sample> = lock(&self.samples).iter().copied().collect();
        v.push(Sample {
            at: SystemTime::now(),
            requests: self.requests.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            origin: self.origin.load(Ordering::Relaxed),
        });
        v
    }

    /// The `n` keys hit most (among those tracked).
    pub fn top_keys(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .top
            .iter()
            .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Recent purges, newest first.
    pub fn recent_purges(&self) -> Vec<PurgeRecord> {
        lock(&self.purges).iter().rev().cloned().collect()
    }

    /// Guest time percentiles (p50, p90, p99, in µs) and call count of `script`.
    pub fn script_time(&self, script: &str) -> Option<(u64, u64, u64, u64)> {
        let s = lock(&self.scripts);
        let h = s.get(script)?;
        Some((
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.len(),
        ))
    }

    /// When the process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }
}
