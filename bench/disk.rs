//! The disk tier, measured through the real store: a Zipf workload whose working set is five
//! times the memory tier (memory only vs memory + disk, side by side), a memory hit's
//! latency next to a disk hit's, and the start-up scan of a tier holding N objects.
//!
//! `cargo bench -p tessera --bench disk [-- zipf] [-- recover N]` (default: both; recovery
//! of 1,000,000 objects). Not a criterion benchmark: it prints measurements. Files go to
//! `target/bench-disk` (removed after).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use rand::{Rng, SeedableRng};
use tessera::cache::disk::{Disk, DiskConfig, Find};
use tessera::cache::store::{Entry, Lookup, Store};
use tessera::cache::StoreKey;
use tessera::clock::Clock;

const MIB: u64 = 1 << 20;

fn entry(key: &StoreKey, body: Bytes) -> Arc<Entry> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/html"));
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    headers.insert("etag", HeaderValue::from_static("\"abc\""));
    let uri = Arc::from(key.as_str());
    let e = Entry::new(
        StatusCode::OK,
        &headers,
        uri,
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    Arc::new(e.with_body_of(&[body]))
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn key(i: usize) -> StoreKey {
    StoreKey::new("bench", &format!("shop.example/p/{i}"))
}

/// Ranks drawn with probability ∝ 1/rank^s.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += 1.0 / (r as f64).powf(s);
            cdf.push(sum);
        }
        Zipf(cdf.into_iter().map(|c| c / sum).collect())
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-disk")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One request: a hit says its tier; a miss stores the object, as a fill would.
async fn one(store: &Store, req: &HeaderMap, body: &Bytes, k: StoreKey) -> Option<&'static str> {
    let found = store.lookup_tiered(&k, req, false).await;
    if matches!(found.lookup, Lookup::Found(_)) {
        return Some(found.tier.tier);
    }
    store.insert(&k, entry(&k, Bytes::copy_from_slice(body)));
    None
}

/// Replays `requests` Zipf-drawn requests: a miss stores the object (as a fill would).
/// Returns (hit ratio, requests per second, disk hits, disk writes dropped).
async fn zipf_run(
    store: &Store,
    objects: usize,
    size: usize,
    requests: usize,
) -> (f64, f64, u64, u64) {
    let zipf = Zipf::new(objects, 0.9);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let body = Bytes::from(vec![b'x'; size]);
    let req = HeaderMap::new();
    let mut misses = 0u64;
    // Fills come at the origin's pace, which a disk keeps up with; a loop of lookups would
    // outrun it and drop writes, so it waits for the disk every 64 misses (the wait is
    // part of the time measured).
    let pace = |misses: &mut u64| {
        *misses += 1;
        if (*misses).is_multiple_of(64) {
            if let Some(d) = store.disk() {
                d.flush();
            }
        }
    };
    // Warm-up: half as many requests of the same workload, not counted.
    for _ in 0..requests / 2 {
        if one(store, &req, &body, key(zipf.sample(&mut rng)))
            .await
            .is_none()
        {
            pace(&mut misses);
        }
    }
    let dropped = tessera::observe::metrics()
        .storage
        .disk_writes_dropped
        .get();
    let (mut hits, mut disk_hits) = (0usize, 0u64);
    let started = Instant::now();
    for _ in 0..requests {
        match one(store, &req, &body, key(zipf.sample(&mut rng))).await {
            Some(tier) => {
                hits += 1;
                disk_hits += u64::from(tier == "disk");
            }
            None => pace(&mut misses),
        }
    }
    let took = started.elapsed().as_secs_f64();
    let dropped = tessera::observe::metrics()
        .storage
        .disk_writes_dropped
        .get()
        - dropped;
    (
        hits as f64 / requests as f64,
        requests as f64 / took,
        disk_hits,
        dropped,
    )
}

async fn zipf() {
    let (objects, size) = (20_000usize, 16 * 1024usize);
    let working_set = (objects * size) as u64;
    let memory = working_set / 5;
    let requests = 400_000;
    println!(
        "Zipf (s = 0.9) over {objects} objects of {} KiB: working set {} MiB, memory tier {} MiB (1/5), {requests} requests after as many/2 of warm-up",
        size / 1024,
        working_set / MIB,
        memory / MIB
    );
    let only = Store::new(memory, Clock::system());
    let (ratio_m, rate_m, _, _) = zipf_run(&only, objects, size, requests).await;
    drop(only);
    let dir = fresh_dir("zipf");
    let cfg = DiskConfig {
        path: dir.clone(),
        max_bytes: working_set * 2,
        max_body: 16 << 20,
    };
    let disk = Disk::open(&cfg, Clock::system()).expect("disk tier opens");
    let hybrid = Store::new(memory, Clock::system()).with_disk(disk.clone());
    let (ratio_h, rate_h, disk_hits, dropped) = zipf_run(&hybrid, objects, size, requests).await;
    println!("                 hit ratio   lookups+fills/s   hits from disk   writes dropped");
    println!(
        "memory only      {:>8.1}%   {:>15.0}",
        ratio_m * 100.0,
        rate_m
    );
    println!(
        "memory + disk    {:>8.1}%   {:>15.0}   {:>14}   {:>14}",
        ratio_h * 100.0,
        rate_h,
        disk_hits,
        dropped
    );

    // One object in memory, one only on disk, each read the way a hit reads it: memory's
    // lookup; the disk index, then the file read and checked on a blocking thread.
    let req = HeaderMap::new();
    let k = key(objects + 1);
    hybrid.insert(&k, entry(&k, Bytes::from(vec![b'y'; size])));
    disk.flush();
    let rounds = 20_000;
    let mut mem = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let s = Instant::now();
        let f = hybrid.lookup(&k, &req);
        mem.push(s.elapsed());
        assert!(matches!(f, Lookup::Found(_)));
    }
    let mut on_disk = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let s = Instant::now();
        let Find::Candidate(meta) = disk.find(&k, &req) else {
            panic!("on disk")
        };
        let (d, k2) = (disk.clone(), k.clone());
        let read = tokio::task::spawn_blocking(move || d.read(&k2, &meta, u64::MAX))
            .await
            .unwrap();
        on_disk.push(s.elapsed());
        assert_eq!(read.unwrap().0.body().len(), size);
    }
    let pct = |t: &mut Vec<Duration>, p: usize| {
        t.sort();
        t[t.len() * p / 100]
    };
    let (m50, m99) = (pct(&mut mem, 50), pct(&mut mem, 99));
    let (d50, d99) = (pct(&mut on_disk, 50), pct(&mut on_disk, 99));
    println!(
        "a {} KiB hit: memory p50 {:.1?} p99 {:.1?}; disk (page cache warm) p50 {:.1?} p99 {:.1?} ({:.0}× memory's p50)",
        size / 1024,
        m50,
        m99,
        d50,
        d99,
        d50.as_secs_f64() / m50.as_secs_f64()
    );
    drop(hybrid);
    disk.close();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

fn recover(n: usize) {
    let dir = fresh_dir("recover");
    let cfg = DiskConfig {
        path: dir.clone(),
        max_bytes: 64 << 30,
        max_body: 16 << 20,
    };
    let disk = Disk::open(&cfg, Clock::system()).expect("disk tier opens");
    let started = Instant::now();
    let body = Bytes::from(vec![b'z'; 200]);
    for i in 0..n {
        let k = key(i);
        disk.store(&k, &entry(&k, body.clone()));
        if i % 10_000 == 9_999 {
            // Keep the queue short: the bench measures the scan, not dropped writes.
            disk.flush();
        }
    }
    disk.close();
    let (written, _) = disk.usage();
    println!(
        "wrote {written} objects of 200 bytes in {:.1?}",
        started.elapsed()
    );
    drop(disk);
    // Each restart in a process of its own, so that memory the writes freed is not reused
    // and the index's own cost shows. The page cache holds what was just written: warm.
    scan_in_child(&dir, "warm restart");
    // A cold restart (after a reboot): the page cache emptied, when this user may do so.
    let dropped = std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    if dropped {
        scan_in_child(&dir, "cold restart (page cache dropped)");
    } else {
        println!("cold restart: not measured (cannot drop the page cache as this user)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn scan_in_child(dir: &Path, what: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("scan")
        .arg(dir)
        .output()
        .expect("the bench runs itself");
    print!("{what}: {}", String::from_utf8_lossy(&out.stdout));
}

/// Opens the tier at `dir` and reports the scan.
fn scan(dir: &Path) {
    let cfg = DiskConfig {
        path: dir.to_owned(),
        max_bytes: 64 << 30,
        max_body: 16 << 20,
    };
    let before = rss();
    let disk = Disk::open(&cfg, Clock::system()).expect("disk tier opens");
    let found = disk.wait_loaded();
    println!(
        "{} objects ({} MiB of files) found again in {:.2?} ({:.0} objects/s), {} damaged; the index takes {:.0} bytes of memory per object",
        found.objects,
        found.bytes / MIB,
        found.took,
        found.objects as f64 / found.took.as_secs_f64(),
        found.damaged,
        rss().saturating_sub(before) as f64 / found.objects.max(1) as f64
    );
    disk.close();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [first, dir] = args.as_slice() {
        if first == "scan" {
            return scan(Path::new(dir));
        }
    }
    let all = !args.iter().any(|a| a == "zipf" || a == "recover");
    if all || args.iter().any(|a| a == "zipf") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(zipf());
    }
    if all || args.iter().any(|a| a == "recover") {
        let n = args
            .iter()
            .find_map(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        recover(n);
    }
}
