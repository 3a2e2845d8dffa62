//! `tessera simulate` and `tessera gen-log` through the real binary, on the sample logs in
//! `samples/logs/` and on small logs whose every outcome is known in advance.

use serde_json::Value;

use crate::support::{guest, repo, run_cli, run_cli_split};

fn sample(name: &str) -> String {
    repo().join("samples/logs").join(name).display().to_string()
}

/// Runs `simulate … --json` and returns the document; panics with the output on failure.
fn simulate(args: &[&str]) -> Value {
    let mut all = vec!["simulate", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = run_cli_split(&all, &[]);
    assert!(ok, "simulate failed:\n{out}\n{err}");
    assert!(!err.contains("' panicked at"), "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// [`simulate`] with normalize-key and nothing else.
fn normalize_key(log: &str) -> Value {
    let script = guest("guest-examples/normalize-key").display().to_string();
    simulate(&["--script", &script, "--log", log])
}

fn num(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, p| &v[p])
        .as_u64()
        .unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

fn ratio(v: &Value, path: &str) -> f64 {
    path.split('.').fold(v, |v, p| &v[p]).as_f64().unwrap()
}

/// A log whose outcomes are known: what a cache with five minutes of freshness must do.
const KNOWN: &str = r#"10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 1000 "-" "Mozilla/5.0 (X11; Linux x86_64)"
10.0.0.2 - - [01/Nov/2026:10:00:10 +0000] "GET /a HTTP/1.1" 200 1000 "-" "Mozilla/5.0 (X11; Linux x86_64)"
10.0.0.3 - - [01/Nov/2026:10:00:20 +0000] "GET /a?utm_source=mail HTTP/1.1" 304 0 "-" "Mozilla/5.0 (X11; Linux x86_64)"
10.0.0.4 - - [01/Nov/2026:10:00:30 +0000] "GET /a?id=7 HTTP/1.1" 200 500 "-" "Mozilla/5.0 (X11; Linux x86_64)"
10.0.0.5 - - [01/Nov/2026:10:06:40 +0000] "GET /a HTTP/1.1" 200 1000 "-" "Mozilla/5.0 (X11; Linux x86_64)"
10.0.0.6 - - [01/Nov/2026:10:06:50 +0000] "POST /a HTTP/1.1" 200 10 "-" "Mozilla/5.0 (X11; Linux x86_64)"
this line is not a log line
"#;

fn known_log(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("known.log");
    std::fs::write(&path, KNOWN).unwrap();
    path.display().to_string()
}

#[test]
fn a_known_log_gives_the_outcomes_rfc_9111_and_the_header_set_call_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = known_log(&dir);
    let doc = simulate(&[
        "--script",
        &guest("guest-examples/ttl-by-type").display().to_string(),
        "--log",
        &log,
        "--against",
        "none",
    ]);
    assert_eq!(num(&doc, "log.requests"), 6);
    assert_eq!(num(&doc, "log.skipped"), 1);
    assert_eq!(
        doc["log"]["errors"][0],
        "line 7: not Common/Combined Log Format or a JSON object: no [time]"
    );
    let plain = &doc["simulations"][1];
    assert_eq!(plain["label"], "no script");
    // max-age=300: miss, hit, hit (tracking parameter dropped, a 304 stands for the 200),
    // miss (another key), miss (400 s later: stale, no stale window), pass (POST).
    for (path, want) in [
        ("served.hit", 2),
        ("served.stale", 0),
        ("served.miss", 3),
        ("served.pass", 1),
        ("origin_requests", 4),
        ("keys", 2),
        ("urls", 3),
        ("stored", 3),
    ] {
        assert_eq!(num(plain, path), want, "{path}");
    }
    assert!((ratio(plain, "hit_ratio") - 2.0 / 6.0).abs() < 1e-9);
    // ttl-by-type gives HTML 120 s: the requests at +10 s and +20 s hit.
    let scripted = &doc["simulations"][0];
    assert_eq!(scripted["label"], "ttl-by-type.wasm");
    assert_eq!(num(scripted, "served.hit"), 2);

    // With a stale-while-revalidate window the late request is served stale while one
    // refresh goes to the origin.
    let with_headers = |h: &str| {
        let script = guest("guest-examples/normalize-key").display().to_string();
        simulate(&["--script", &script, "--log", &log, "-H", h])["simulations"][0].clone()
    };
    let swr = &with_headers("Cache-Control: max-age=300, stale-while-revalidate=600");
    assert_eq!(num(swr, "served.stale"), 1);
    assert_eq!(num(swr, "served.miss"), 2);
    assert_eq!(num(swr, "origin_requests"), 4);

    // Nothing shareable: nothing stored, every request goes to the origin.
    let private = &with_headers("Cache-Control: private");
    assert_eq!(num(private, "stored"), 0);
    assert_eq!(num(private, "served.hit"), 0);
    assert_eq!(num(private, "origin_requests"), 6);
}

#[test]
fn the_sample_log_shows_what_a_key_script_changes_and_warns_of_cache_busters() {
    let script = guest("guest-examples/normalize-key").display().to_string();
    let args = [
        "--script",
        &script,
        "--against",
        "none",
        "--log",
        &sample("shop.log"),
    ];
    let doc = simulate(&args);
    assert_eq!(num(&doc, "log.requests"), 2000);
    assert_eq!(num(&doc, "log.skipped"), 0);
    let (scripted, plain) = (&doc["simulations"][0], &doc["simulations"][1]);
    for r in [scripted, plain] {
        let s = &r["served"];
        let sum: u64 = [
            "hit",
            "stale",
            "miss",
            "pass",
            "edge",
            "refused",
            "unroutable",
        ]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
        assert_eq!(sum, 2000);
        let h = ratio(r, "hit_ratio");
        assert!(h > 0.0 && h < 1.0, "{h}");
        // POST /cart/add always passes.
        assert!(num(r, "served.pass") > 0);
        assert_eq!(
            r["timeline"].as_array().unwrap().len(),
            12,
            "1 h in 5 min rows"
        );
    }
    // The script splits by device class: every top key says which.
    for k in scripted["top_keys"].as_array().unwrap() {
        let key = k["key"].as_str().unwrap();
        assert!(
            ["#desktop", "#mobile", "#tablet", "#bot"]
                .iter()
                .any(|d| key.ends_with(d)),
            "{key}"
        );
    }
    assert!(
        num(scripted, "keys") > num(plain, "keys"),
        "device classes split keys"
    );
    // jQuery's `_=` cache buster is in both keys: both are warned.
    for r in [scripted, plain] {
        let warned: Vec<&str> = r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["component"].as_str().unwrap())
            .collect();
        assert!(warned.contains(&"query:_"), "{warned:?}");
        assert!(!warned.contains(&"query:page"), "{warned:?}");
    }
    // The same log, the same answer: admission and eviction are reproducible.
    let again = simulate(&args);
    assert_eq!(again["simulations"], doc["simulations"]);
}

#[test]
fn a_smaller_cache_predicts_fewer_hits_the_same_way_every_time() {
    let script = guest("guest-examples/normalize-key").display().to_string();
    let big = simulate(&["--script", &script, "--log", &sample("shop.log")]);
    let small = simulate(&[
        "--script",
        &script,
        "--log",
        &sample("shop.log"),
        "--cache-size",
        "1MiB",
    ]);
    let (big, small_r) = (&big["simulations"][0], &small["simulations"][0]);
    assert_eq!(num(small_r, "cache_bytes"), 1 << 20);
    assert!(ratio(small_r, "hit_ratio") < ratio(big, "hit_ratio"));
    assert!(num(small_r, "origin_requests") > num(big, "origin_requests"));
    assert!(num(small_r, "objects_at_end") < num(big, "objects_at_end"));
    let again = simulate(&[
        "--script",
        &script,
        "--log",
        &sample("shop.log"),
        "--cache-size",
        "1MiB",
    ]);
    assert_eq!(again["simulations"], small["simulations"]);
}

#[test]
fn json_lines_with_cookies_and_a_blocking_script_are_replayed() {
    let doc = simulate(&[
        "--script",
        &guest("guest-examples/bot-block").display().to_string(),
        "--log",
        &sample("shop.jsonl"),
    ]);
    assert_eq!(num(&doc, "log.requests"), 500);
    assert_eq!(num(&doc, "log.skipped"), 0);
    let blocked = std::fs::read_to_string(sample("shop.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("python-requests/"))
        .count() as u64;
    assert!(blocked > 0, "the sample has scrapers");
    let r = &doc["simulations"][0];
    assert_eq!(
        num(r, "served.edge"),
        blocked,
        "answered by on_request, never cached"
    );
}

#[test]
fn the_text_report_puts_two_scripts_side_by_side() {
    let a = guest("guest-examples/normalize-key").display().to_string();
    let b = guest("guest-examples/ab-test").display().to_string();
    let (ok, out) = run_cli(&[
        "simulate",
        "--script",
        &a,
        "--against",
        &b,
        "--log",
        &sample("shop.log"),
        "--top",
        "3",
    ]);
    assert!(ok, "{out}");
    let header = out
        .lines()
        .find(|l| l.contains("normalize-key.wasm"))
        .unwrap();
    assert!(header.contains("ab-test.wasm"), "{header}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` row:\n{out}"))
            .trim_start_matches(name)
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    for name in ["hit ratio (requests)", "hit ratio (bytes)"] {
        let cells = row(name);
        assert_eq!(cells.len(), 2, "{cells:?}");
        assert!(cells.iter().all(|c| c.ends_with('%')), "{cells:?}");
    }
    for name in ["origin requests", "distinct keys"] {
        let cells = row(name);
        assert_eq!(cells.len(), 2, "{cells:?}");
        assert!(
            cells
                .iter()
                .all(|c| c.replace(',', "").parse::<u64>().is_ok()),
            "{cells:?}"
        );
    }
    assert!(out.contains("top keys, ab-test.wasm"), "{out}");
    assert!(
        out.contains("#ab="),
        "the A/B bucket is in that script's keys:\n{out}"
    );
}

#[test]
fn a_failing_key_script_leaves_requests_uncached_and_the_replay_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trap.log");
    let mut text = String::new();
    for i in 0..10 {
        let path = if i % 2 == 0 { "/trap" } else { "/fine" };
        text.push_str(&format!(
            "10.0.0.1 - - [01/Nov/2026:10:00:{i:02} +0000] \"GET {path} HTTP/1.1\" 200 100 \"-\" \"t\"\n"
        ));
    }
    std::fs::write(&log, text).unwrap();
    let doc = simulate(&[
        "--script",
        &guest("tests/guests/misbehave").display().to_string(),
        "--log",
        &log.display().to_string(),
    ]);
    let r = &doc["simulations"][0];
    assert_eq!(
        num(r, "served.pass"),
        5,
        "a failed cache_key never reaches the cache"
    );
    assert_eq!(num(r, "served.hit"), 4);
    assert_eq!(num(r, "served.miss"), 1);
}

#[test]
fn hostile_logs_are_skipped_line_by_line_without_unbounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.log");
    let good =
        "10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] \"GET /ok HTTP/1.1\" 200 10 \"-\" \"t\"\n";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(good.as_bytes());
    bytes.extend(std::iter::repeat_n(b'x', 5 << 20)); // 5 MiB, no newline
    bytes.push(b'\n');
    bytes.extend_from_slice(b"\xff\xfe\x00 binary \x00\n");
    bytes.extend_from_slice(b"10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] \"GET /ok HTTP/1.1\" 200 99999999999999999999999 \"-\" \"t\"\n");
    bytes.extend_from_slice(format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000)).as_bytes());
    bytes.extend_from_slice(
        format!(
            "{{\"time\":1,\"uri\":\"/\",\"status\":200,\"x\":{}1{}}}\n",
            "[".repeat(5_000),
            "]".repeat(5_000)
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(
        b"{\"time\":1793527200,\"host\":\"bad host\",\"uri\":\"/\",\"status\":200}\n",
    );
    bytes.extend_from_slice(
        b"10.0.0.1 - - [01/Nov/2026:10:00:01 +0000] \"GET /ok HTTP/1.1\" 200 10 \"-\" \"t\"",
    );
    std::fs::write(&path, bytes).unwrap();
    let doc = normalize_key(&path.display().to_string());
    assert_eq!(num(&doc, "log.lines"), 8);
    assert_eq!(num(&doc, "log.requests"), 3);
    assert_eq!(num(&doc, "log.skipped"), 5);
    let errors = doc["log"]["errors"].to_string();
    assert!(errors.contains("line 2: longer than"), "{errors}");
    assert!(errors.contains("bad `bytes`"), "{errors}");
    let r = &doc["simulations"][0];
    assert_eq!((num(r, "served.miss"), num(r, "served.hit")), (1, 1));
    assert_eq!(num(r, "served.unroutable"), 1, "a host that is not a host");
}

#[test]
fn mistakes_are_named() {
    let script = guest("guest-examples/normalize-key").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = known_log(&dir);
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "garbage\n\n").unwrap();
    let empty = empty.display().to_string();
    for (args, says) in [
        (
            vec!["--log", "/nonexistent/x.log"],
            "--log /nonexistent/x.log: cannot open",
        ),
        (
            vec!["--log", &log, "--cache-size", "lots"],
            "--cache-size: `lots` is not a size",
        ),
        (
            vec!["--log", &log, "-H", "no colon"],
            "-H `no colon`: expected `Name: value`",
        ),
        (
            vec!["--log", &log, "--against", "/nonexistent.wasm"],
            "--against: /nonexistent.wasm not found",
        ),
        (vec!["--log", &empty], "no request could be read"),
    ] {
        let mut all = vec!["simulate", "--script", &script];
        all.extend(args);
        let (ok, out) = run_cli(&all);
        assert!(!ok, "{all:?} succeeded:\n{out}");
        assert!(out.contains(says), "{all:?}: wanted `{says}` in:\n{out}");
    }
    let (ok, out) = run_cli(&["simulate", "--log", &log]);
    assert!(!ok && out.contains("--config"), "{out}");
}

#[test]
fn gen_log_writes_the_same_log_for_a_seed_and_simulate_reads_every_line() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["combined", "json"] {
        let a = dir.path().join(format!("a.{format}"));
        let b = dir.path().join(format!("b.{format}"));
        for p in [&a, &b] {
            let (ok, out) = run_cli(&[
                "gen-log",
                "--lines",
                "3000",
                "--seed",
                "5",
                "--hours",
                "2",
                "--format",
                format,
                "-o",
                &p.display().to_string(),
            ]);
            assert!(ok, "{out}");
        }
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap());
        assert_eq!(text.lines().count(), 3000);
        let doc = normalize_key(&a.display().to_string());
        assert_eq!(num(&doc, "log.requests"), 3000);
        assert_eq!(num(&doc, "log.skipped"), 0);
        assert_eq!(doc["log"]["first"], "2026-11-01T00:00:00Z");
        if format == "json" {
            assert_eq!(num(&doc["simulations"][0], "served.unroutable"), 0);
        }
    }
    let (ok, out) = run_cli(&["gen-log", "--hours", "0"]);
    assert!(!ok && out.contains("--hours"), "{out}");
}
