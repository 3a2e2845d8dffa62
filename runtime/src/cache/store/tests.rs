//! The store's unit tests: keys, variants, purges, indexes, weights, evictions and expiry.

use super::*;
use crate::cache::vary::VaryKey;
use crate::cache::Payload;
use bytes::Bytes;
use http::StatusCode;

fn entry(uri: &str, body: &str, ttl: u64) -> Arc<Entry> {
    let e = Entry::new(
        StatusCode::OK,
        &HeaderMap::new(),
        uri.into(),
        SystemTime::now(),
        Duration::from_secs(ttl),
    );
    Arc::new(e.with_body_of(&[Bytes::from(body.to_owned())]))
}

#[test]
fn sites_cannot_reach_each_others_keys() {
    let s = Store::new(1 << 20, Clock::system());
    s.insert(&StoreKey::new("a", "k"), entry("a\u{1f}/p", "A", 60));
    assert!(matches!(
        s.lookup(&StoreKey::new("b", "k"), &HeaderMap::new()),
        Lookup::UriMiss
    ));
    assert_eq!(StoreKey::new("a", "k").site(), "a");
    assert_eq!(StoreKey::new("a", "x\u{1f}y").key(), "x\u{1f}y");
}

#[test]
fn a_uri_reaches_every_key_stored_for_it_and_the_index_follows_evictions() {
    let s = Store::new(1 << 20, Clock::system());
    let (k1, k2) = (
        StoreKey::new("a", "p#mobile"),
        StoreKey::new("a", "p#desktop"),
    );
    s.insert(&k1, entry("a\u{1f}/p", "m", 60));
    s.insert(&k2, entry("a\u{1f}/p", "d", 60));
    s.insert(&k2, entry("a\u{1f}/p", "d2", 60));
    assert_eq!(s.remove_uri("a\u{1f}/p"), 2);
    assert!(matches!(s.lookup(&k1, &HeaderMap::new()), Lookup::UriMiss));
    assert_eq!(s.indexed_uris(), 0);
}

#[test]
fn evictions_by_size_leave_no_index_behind() {
    let s = Store::new(64 << 10, Clock::system());
    for i in 0..2000 {
        let body = "x".repeat(100);
        s.insert(
            &StoreKey::new("a", &format!("k{i}")),
            entry(&format!("a\u{1f}/p{i}"), &body, 60),
        );
    }
    let stored = s.entry_count() as usize;
    assert!(stored < 2000);
    assert!(
        s.indexed_uris() <= stored,
        "{} > {stored}",
        s.indexed_uris()
    );
}

/// A purge of `what` naming `key` in site `a`'s namespace.
fn in_a(what: fn(String) -> Purge, key: &str) -> Purge {
    what(StoreKey::new("a", key).as_str().into())
}

fn tagged(uri: &str, tags: &[&str]) -> Arc<Entry> {
    Arc::new(Entry {
        extras: Extras::boxed(
            tags.iter().map(|t| t.to_string()).collect(),
            VaryKey::Any,
            None,
        ),
        ..Arc::try_unwrap(entry(uri, "b", 600)).unwrap()
    })
}

#[test]
fn purges_reach_what_they_name_and_the_tag_index_empties() {
    let s = Store::new(1 << 20, Clock::system());
    let put = |site: &str, k: &str, tags: &[&str]| {
        s.insert(
            &StoreKey::new(site, k),
            tagged(StoreKey::new(site, k).as_str(), tags),
        );
    };
    put("a", "h/p/1", &["p", "p-1"]);
    put("a", "h/p/2", &["p"]);
    put("a", "h/q", &[]);
    put("b", "h/p/1", &["p-1"]);
    let tag = |t: &str, site: Option<&str>| Purge::Tag {
        tag: t.into(),
        site: site.map(Into::into),
    };
    assert_eq!(s.purge(&tag("p-1", Some("b")), false), 1);
    assert_eq!(s.purge(&tag("p-1", None), false), 1);
    assert_eq!(s.purge(&in_a(Purge::Prefix, "h/p/"), false), 1);
    assert_eq!(s.purge(&in_a(Purge::Uri, "h/q"), false), 1);
    assert_eq!(s.purge(&Purge::All, false), 0);
    assert_eq!(s.indexed_tags(), 0);
    assert_eq!(s.indexed_uris(), 0);
    put("a", "h/x", &["x"]);
    put("b", "h/x", &["x"]);
    assert_eq!(s.purge(&Purge::Site("b".into()), false), 1);
    assert_eq!(s.purge(&tag("x", None), false), 1);
}

#[test]
fn a_soft_purge_ends_freshness_now_and_keeps_the_object() {
    let clock = Clock::frozen();
    let s = Store::new(1 << 20, clock.clone());
    let k = StoreKey::new("a", "h/p");
    let e = Arc::new(Entry {
        response_time: clock.now().into(),
        ..Arc::try_unwrap(tagged(k.as_str(), &["t"])).unwrap()
    });
    s.insert(&k, e.clone());
    assert!(clock.advance(Duration::from_secs(100)));
    assert_eq!(
        s.purge(
            &Purge::Tag {
                tag: "t".into(),
                site: None
            },
            true
        ),
        1
    );
    assert_eq!(e.effective_ttl(), Duration::from_secs(100));
    assert_eq!(e.remaining_ttl(clock.now()), 0);
    // A second soft purge later does not push the end of freshness back.
    assert!(clock.advance(Duration::from_secs(50)));
    assert_eq!(s.purge(&Purge::All, true), 1);
    assert_eq!(e.effective_ttl(), Duration::from_secs(100));
    assert!(matches!(s.lookup(&k, &HeaderMap::new()), Lookup::Found(_)));
    assert_eq!(s.indexed_tags(), 1, "a soft purge keeps the object indexed");
}

#[test]
fn tags_and_vary_data_are_weighed() {
    let plain = entry("u", "", 60);
    let mut tagged = Entry {
        extras: Extras::boxed(
            (0..50).map(|i| format!("tag-{i}")).collect(),
            VaryKey::Any,
            None,
        ),
        ..Arc::try_unwrap(entry("u", "", 60)).unwrap()
    };
    assert!(tagged.weight() > plain.weight() + 50 * 5);
    let vary = VaryKey::of(
        &[("vary", "x-long")]
            .into_iter()
            .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
            .collect(),
        &[("x-long", "y".repeat(1000))]
            .into_iter()
            .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
            .collect(),
    );
    let tags = tagged.tags().into();
    tagged.set_extras(tags, vary, None);
    assert!(tagged.weight() > plain.weight() + 1000);
}

#[test]
fn an_object_past_use_is_a_miss_and_leaves_store_and_index_at_lookup() {
    let clock = Clock::frozen();
    // A replay's store: it never sweeps on its own, so only the lookup can drop it.
    let s = Store::reproducible(1 << 20, clock.clone());
    let k = StoreKey::new("a", "h/p");
    s.insert(&k, entry(k.as_str(), "b", 60));
    let e = match s.lookup(&k, &HeaderMap::new()) {
        Lookup::Found(e) => e,
        other => panic!("{other:?}"),
    };
    // A second past its last use (the clock counts whole milliseconds).
    assert!(clock.advance_to(e.response_time.get() + Duration::from_secs(61) + KEEP));
    assert!(matches!(s.lookup(&k, &HeaderMap::new()), Lookup::UriMiss));
    assert_eq!((s.entry_count(), s.indexed_uris()), (0, 0));
}

#[test]
fn the_sweep_drops_what_no_lookup_will_use_again() {
    let clock = Clock::frozen();
    let s = Store::sharded(1 << 20, 1 << 16, clock.clone());
    // Keys a script made (the URI index holds them), so the sweep must unindex them.
    for i in 0..50 {
        let k = StoreKey::new("a", &format!("h/old/{i}#mobile"));
        s.insert(&k, tagged(&format!("a\u{1f}h/old/{i}"), &["old"]));
    }
    assert!(clock.advance(Duration::from_secs(600) + KEEP + SWEEP_EVERY));
    // The next insert finds a sweep due and starts it; it runs beside the caller.
    let k = StoreKey::new("a", "h/new#mobile");
    let fresh = Arc::new(Entry {
        response_time: clock.now().into(),
        ..Arc::try_unwrap(tagged("a\u{1f}h/new", &["new"])).unwrap()
    });
    s.insert(&k, fresh);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.entry_count() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.entry_count(), 1);
    assert_eq!((s.indexed_uris(), s.indexed_tags()), (1, 1));
    assert!(matches!(s.lookup(&k, &HeaderMap::new()), Lookup::Found(_)));
}

#[test]
fn shards_always_leave_room_for_the_largest_object() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (max, object) in [
        (256u64 << 20, 16u64 << 20),
        (1 << 20, 16 << 20),
        (64 << 30, 16 << 20),
        (1 << 30, 1),
        (0, 0),
    ] {
        let n = shards_for(max, object);
        assert!(n.is_power_of_two() && n <= 4 * cores, "{max} {object}: {n}");
        assert!(
            n == 1 || max / n as u64 >= 4 * object,
            "{max} {object}: {n}"
        );
    }
    // And such an object is stored, not turned away for its shard's share.
    let s = Store::sharded(256 << 20, 16 << 20, Clock::system());
    let k = StoreKey::new("a", "h/big");
    let big = Arc::new(Entry {
        payload: Payload::head(
            &[("content-type", "text/html")]
                .into_iter()
                .map(|(n, v)| (HeaderName::from_static(n), v.parse().unwrap()))
                .collect::<HeaderMap>(),
        )
        .with_body(Bytes::from(vec![b'x'; 16 << 20])),
        ..Arc::try_unwrap(entry(k.as_str(), "", 600)).unwrap()
    });
    s.insert(&k, big);
    assert!(matches!(s.lookup(&k, &HeaderMap::new()), Lookup::Found(_)));
}

#[test]
fn a_scan_of_one_hit_wonders_does_not_flush_the_hot_set() {
    // Room for about 70 objects; 20 asked for again and again, then 300 asked for once.
    let s = Store::new(1 << 20, Clock::system());
    let body = "x".repeat(14_000);
    let get_or_fill = |name: &str| {
        let k = StoreKey::new("a", name);
        let hit = matches!(s.lookup(&k, &HeaderMap::new()), Lookup::Found(_));
        if !hit {
            s.insert(&k, entry(k.as_str(), &body, 600));
        }
        hit
    };
    for _ in 0..5 {
        for i in 0..20 {
            get_or_fill(&format!("hot/{i}"));
        }
    }
    for i in 0..300 {
        assert!(!get_or_fill(&format!("scan/{i}")));
    }
    let kept = (0..20).filter(|i| get_or_fill(&format!("hot/{i}"))).count();
    assert_eq!(kept, 20);
    assert!(s.weighted_size() <= s.max_bytes());
}

#[test]
fn variants_that_together_outweigh_a_shard_keep_the_newest_instead_of_losing_the_key() {
    // Four shards of 16 MiB; each variant weighs 7 MiB (4 MiB of HTML and room for its
    // compressed copies): three together are more than a shard admits.
    let s = Store::sharded(64 << 20, 4 << 20, Clock::system());
    let k = StoreKey::new("a", "h/big");
    let vary: HeaderMap = [(
        HeaderName::from_static("vary"),
        "accept-language".parse().unwrap(),
    )]
    .into_iter()
    .collect();
    let mut head = vary.clone();
    head.insert("content-type", "text/html".parse().unwrap());
    let asked = |lang: &str| -> HeaderMap {
        [(
            HeaderName::from_static("accept-language"),
            lang.parse().unwrap(),
        )]
        .into_iter()
        .collect()
    };
    for lang in ["en", "de", "fr"] {
        s.insert(
            &k,
            Arc::new(Entry {
                payload: Payload::head(&head).with_body(Bytes::from(vec![b'x'; 4 << 20])),
                extras: Extras::boxed(Box::default(), VaryKey::of(&vary, &asked(lang)), None),
                ..Arc::try_unwrap(entry(k.as_str(), "", 600)).unwrap()
            }),
        );
        assert!(
            matches!(s.lookup(&k, &asked(lang)), Lookup::Found(_)),
            "{lang} was just stored"
        );
    }
    assert!(matches!(s.lookup(&k, &asked("de")), Lookup::Found(_)));
    assert!(!matches!(s.lookup(&k, &asked("en")), Lookup::Found(_)));
    // Stored under its own URI: found by key, not indexed.
    assert_eq!((s.entry_count(), s.indexed_uris()), (1, 0));
}

#[test]
fn concurrent_inserts_removals_purges_and_evictions_leave_no_index_behind() {
    let s = Store::sharded(256 << 10, 16 << 10, Clock::system());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (t + 1);
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let body = "x".repeat(4000);
                for _ in 0..3000 {
                    let r = next();
                    let i = r % 97;
                    let uri = StoreKey::new("a", &format!("h/{i}"));
                    // Odd objects under a key a script made (their URIs are indexed), even
                    // ones under their own URI.
                    let k = if i % 2 == 1 {
                        StoreKey::new("a", &format!("h/{i}#m"))
                    } else {
                        uri.clone()
                    };
                    let soft = (r >> 40) % 2 == 0;
                    match (r >> 32) % 12 {
                        0..=5 => s.insert(&k, tagged_with(uri.as_str(), &body, i)),
                        6 => {
                            s.remove(&k);
                        }
                        7 => {
                            let tag = format!("t{}", i % 7);
                            s.purge(&Purge::Tag { tag, site: None }, soft);
                        }
                        8 => {
                            s.purge(&Purge::Uri(uri.as_str().into()), soft);
                        }
                        9 => {
                            let prefix = StoreKey::new("a", &format!("h/{}", i % 10));
                            s.purge(&Purge::Prefix(prefix.as_str().into()), soft);
                        }
                        _ => {
                            s.lookup(&k, &HeaderMap::new());
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(s.weighted_size() <= s.max_bytes());
    // Whatever interleaving happened, removing everything leaves no membership behind.
    s.purge(&Purge::All, false);
    assert_eq!(s.entry_count(), 0);
    assert_eq!((s.indexed_uris(), s.indexed_tags()), (0, 0));
}

fn tagged_with(uri: &str, body: &str, i: u64) -> Arc<Entry> {
    Arc::new(Entry {
        extras: Extras::boxed(
            [format!("t{}", i % 7), format!("u{i}")].into(),
            VaryKey::Any,
            None,
        ),
        ..Arc::try_unwrap(entry(uri, body, 600)).unwrap()
    })
}

#[test]
fn uri_and_prefix_purges_reach_objects_under_their_own_uri_without_the_index() {
    let s = Store::new(1 << 20, Clock::system());
    let own = |k: &str| {
        let k = StoreKey::new("a", k);
        s.insert(&k, entry(k.as_str(), "b", 600));
        k
    };
    let (p1, p2, q) = (own("h/p/1"), own("h/p/2"), own("h/q"));
    // A script's key that starts like the prefix but stands for another URI.
    let scripted = StoreKey::new("a", "h/p/3#mobile");
    s.insert(
        &scripted,
        entry(StoreKey::new("a", "h/elsewhere").as_str(), "b", 600),
    );
    // And one whose key is another URI's text: a purge of that URI must not reach it.
    let borrowed = StoreKey::new("a", "h/r");
    s.insert(
        &borrowed,
        entry(StoreKey::new("a", "h/s").as_str(), "b", 600),
    );
    assert_eq!(
        s.indexed_uris(),
        2,
        "only the script-keyed entries are indexed"
    );
    assert_eq!(s.purge(&Purge::Uri(q.as_str().into()), false), 1);
    assert_eq!(s.purge(&Purge::Uri(borrowed.as_str().into()), false), 0);
    let prefix = StoreKey::new("a", "h/p/");
    assert_eq!(s.purge(&Purge::Prefix(prefix.as_str().into()), false), 2);
    for k in [&p1, &p2, &q] {
        assert!(matches!(s.lookup(k, &HeaderMap::new()), Lookup::UriMiss));
    }
    assert!(matches!(
        s.lookup(&scripted, &HeaderMap::new()),
        Lookup::Found(_)
    ));
    assert_eq!(s.purge(&in_a(Purge::Uri, "h/elsewhere"), false), 1);
    assert_eq!(s.purge(&in_a(Purge::Uri, "h/s"), false), 1);
    assert_eq!((s.entry_count(), s.indexed_uris()), (0, 0));
}

#[test]
fn a_key_mixing_its_own_uri_and_a_scripts_keeps_the_index_exact() {
    let s = Store::new(1 << 20, Clock::system());
    let k = StoreKey::new("a", "h/p");
    let other = StoreKey::new("a", "h/other");
    let vary: HeaderMap = [(HeaderName::from_static("vary"), "x-v".parse().unwrap())]
        .into_iter()
        .collect();
    let variant = |uri: &StoreKey, v: &str| {
        let asked: HeaderMap = [(HeaderName::from_static("x-v"), v.parse().unwrap())]
            .into_iter()
            .collect();
        Arc::new(Entry {
            extras: Extras::boxed(Box::default(), VaryKey::of(&vary, &asked), None),
            ..Arc::try_unwrap(entry(uri.as_str(), "b", 600)).unwrap()
        })
    };
    s.insert(&k, variant(&k, "1"));
    s.insert(&k, variant(&other, "2"));
    assert_eq!(
        s.indexed_uris(),
        1,
        "only the other URI's variant is indexed"
    );
    // A purge of the other URI reaches the key that holds its variant (the whole key).
    assert_eq!(s.purge(&Purge::Uri(other.as_str().into()), true), 2);
    s.insert(&k, variant(&k, "2"));
    assert_eq!(
        s.indexed_uris(),
        0,
        "replaced by a variant under the key's own URI"
    );
    assert_eq!(s.purge(&Purge::Uri(k.as_str().into()), false), 2);
    assert_eq!((s.entry_count(), s.indexed_uris()), (0, 0));
}

#[test]
fn a_uri_is_charged_only_when_it_is_not_the_keys_own_text() {
    let own = StoreKey::new("a", "h/p");
    let scripted = StoreKey::new("a", "h/p#mobile");
    let e = entry(own.as_str(), "b", 60);
    assert_eq!(e.weight_under(&own), e.weight());
    assert!(e.weight_under(&scripted) > e.weight() + own.as_str().len());
}
