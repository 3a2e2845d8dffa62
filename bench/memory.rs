//! Memory per cached object: N small objects stored the way a fill stores them, RSS measured
//! before and after, and the bytes each costs beyond its body, headers and key.
//!
//! `cargo bench -p tessera --bench memory [-- OBJECTS] [bare] [keyed]` (default 1,000,000).
//! Not a criterion benchmark: it prints one measurement. RSS comes from /proc/self/statm.
//! `bare` keeps the same entries in a plain `HashMap` instead of the store: the difference
//! between the two runs is what the store's own bookkeeping costs (slots, index, variants).
//! `keyed` stores each object under a key a script made (its URI then differs from its key
//! and is indexed for purges); by default objects are stored under their default key.
//! `http` fills the objects through the library server from a real origin instead and hits
//! each once (`memory/http.rs`): what the serving path really keeps per object.

#[path = "memory/http.rs"]
mod http_mode;
#[path = "support/origin.rs"]
mod origin;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tessera::cache::store::{Entry, Store};
use tessera::cache::StoreKey;
use tessera::clock::Clock;

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The fields a typical stored response keeps (hop-by-hop and per-client ones removed).
fn headers(i: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("max-age=300"));
    h.insert("content-length", HeaderValue::from(100u32));
    h.insert(
        "etag",
        HeaderValue::from_str(&format!("\"{i:x}\"")).unwrap(),
    );
    h.insert(
        "last-modified",
        HeaderValue::from_static("Mon, 23 Nov 2026 08:00:00 GMT"),
    );
    h
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::args().any(|a| a == "http") {
        return http_mode::run(n);
    }
    let bare = std::env::args().any(|a| a == "bare");
    let keyed = std::env::args().any(|a| a == "keyed");
    let store = Store::new(u64::MAX / 4, Clock::system());
    let mut plain: HashMap<StoreKey, Arc<Entry>> = HashMap::new();
    let mut keep = |key: &StoreKey, e: Arc<Entry>| {
        if bare {
            plain.insert(key.clone(), e);
        } else {
            store.insert(key, e);
        }
    };
    let body = Bytes::from(vec![b'x'; 100]);
    // Warm the allocator and moka's internals so that their fixed costs are not counted.
    for i in 0..1000 {
        let key = StoreKey::new("warm", &format!("warm.example/p/{i}"));
        keep(&key, entry(i, &key, body.clone()));
    }
    store.entry_count();
    let before = rss();
    let started = Instant::now();
    let (mut payload, mut keys) = (0usize, 0usize);
    for i in 0..n {
        let uri = StoreKey::new("bench", &format!("shop.example/products/{i}?a=1"));
        let key = if keyed {
            StoreKey::new("bench", &format!("shop.example/products/{i}?a=1#desktop"))
        } else {
            uri.clone()
        };
        // Every object gets its own copy of the body, with its head, as a fill does.
        let e = entry(i, &uri, body.clone());
        payload += e.body().len() + e.headers().text_len();
        keys += key.as_str().len() + if keyed { uri.as_str().len() } else { 0 };
        keep(&key, e);
    }
    let stored = if bare {
        plain.len() as u64
    } else {
        store.entry_count()
    };
    let took = started.elapsed();
    let grown = rss().saturating_sub(before);
    let holder = if bare { "a plain HashMap" } else { "the store" };
    println!("objects stored:           {stored} of {n} in {took:.2?}, in {holder}");
    report(grown, n, payload, keys);
}

/// Prints RSS growth per object and how much of it is payload, key text and the rest.
fn report(grown: u64, n: usize, payload: usize, keys: usize) {
    let per = grown as f64 / n as f64;
    let beyond = (grown as f64 - payload as f64 - keys as f64) / n as f64;
    println!(
        "RSS growth:               {:.1} MiB",
        grown as f64 / (1 << 20) as f64
    );
    println!("per object:               {per:.0} bytes");
    println!(
        "  body + headers:         {:.0} bytes",
        payload as f64 / n as f64
    );
    println!(
        "  key and URI text:       {:.0} bytes",
        keys as f64 / n as f64
    );
    println!("  overhead beyond those:  {beyond:.0} bytes");
}

/// An entry as a fill of `uri` stores it.
fn entry(i: usize, uri: &StoreKey, body: Bytes) -> Arc<Entry> {
    // A fill's URI is the text of its default key, shared with that key.
    let e = Entry::new(
        StatusCode::OK,
        &headers(i),
        uri.shared(),
        SystemTime::now(),
        Duration::from_secs(300),
    );
    Arc::new(e.with_body_of(&[body]))
}
