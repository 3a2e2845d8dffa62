//! `tessera test`: passing and failing test files through the real binary, the failure
//! messages a script author reads, virtual time, and bad test files named by file and line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{compiled_dir, repo};

/// Runs `tessera test ARGS…` (generous patience: a crate script is built on first use).
fn tessera_test(args: &[&str]) -> (bool, String) {
    tessera_test_through(&[], args)
}

/// `tessera test ARGS`, started by the command `through` (e.g. `unshare …`) if not empty.
fn tessera_test_through(through: &[&str], args: &[&str]) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let mut command = std::process::Command::new(through.first().copied().unwrap_or(bin));
    if !through.is_empty() {
        command.args(&through[1..]).arg(bin);
    }
    let mut child = command
        .arg("test")
        .args(args)
        .env("XDG_CACHE_HOME", compiled_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "tessera test ran too long"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A site with no script, sample pages with their headers, and `files` as test files.
fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("tessera.toml"),
        "[[site]]\nname = \"s\"\nhosts = [\"s.example\"]\norigin = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("pages/a")).unwrap();
    std::fs::write(d.join("pages/index.html"), "<h1>Home</h1>\n").unwrap();
    std::fs::write(
        d.join("pages/index.html.headers"),
        "Cache-Control: max-age=60\nSurrogate-Key: home\n",
    )
    .unwrap();
    std::fs::write(d.join("pages/a/month.json"), "{\"n\":1}\n").unwrap();
    std::fs::write(
        d.join("pages/a/month.json.headers"),
        "# thirty days\nCache-Control: max-age=2592000\nX-Kind: monthly\n",
    )
    .unwrap();
    std::fs::write(d.join("pages/gone.html"), "gone\n").unwrap();
    std::fs::write(d.join("pages/gone.html.headers"), "Status: 410\n").unwrap();
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn a_thirty_day_ttl_expires_on_the_virtual_clock_in_no_time() {
    let dir = site(&[(
        "month.test.toml",
        r#"config = "tessera.toml"
[[step]]
request = "/a/month.json"
expect = { status = 200, hit = false, stored = true, headers = { x-kind = "monthly", content-type = "application/json" } }
[[step]]
advance = "29d"
[[step]]
request = "/a/month.json"
expect = { hit = true, body = "{\"n\":1}\n", headers = { age = "2505600" }, origin_requests = 1 }
[[step]]
advance = "2d"
[[step]]
request = "GET /a/month.json"
expect = { hit = false, fwd = "uri-miss", headers = { age = "0" }, origin_requests_for = { "/a/month.json" = 2 } }
[[step]]
request = "/gone"
expect = { status = 410, body_contains = ["gone"], body_not_contains = ["Home"], headers = { x-kind = "" } }
"#,
    )]);
    let (ok, out) = tessera_test(&[&path(dir.path(), "month.test.toml")]);
    assert!(ok, "{out}");
    assert!(out.contains("month.test.toml ... ok (6 steps)"), "{out}");
    assert!(out.contains("test result: ok. 1 passed; 0 failed"), "{out}");
}

#[test]
fn each_kind_of_mismatch_fails_with_the_request_and_expected_against_got() {
    let cases = [
        ("status", "expect = { status = 404 }", "expected status: 404\n       got status: 200"),
        ("hit", "expect = { hit = true }", "expected a hit: true\n       got a hit: false"),
        ("header", "expect = { headers = { cache-control = \"no-store\" } }", "expected header `cache-control`: \"no-store\"\n       got header `cache-control`: \"max-age=60\""),
        ("contains", "expect = { body_contains = [\"Away\"] }", "expected the body to contain \"Away\"\n       got body: \"<h1>Home</h1>\\n\""),
        ("origin", "expect = { origin_requests = 2 }", "expected origin requests so far: 2\n       got origin requests so far: 1"),
        ("body", "expect = { body = \"<h1>Home</h1>\" }", "expected body: \"<h1>Home</h1>\"\n       got body: \"<h1>Home</h1>\\n\""),
        ("ttl", "expect = { ttl = 59 }", "expected ttl: 59\n       got ttl: 60"),
    ];
    let files: Vec<(String, String)> = cases
        .iter()
        .map(|(name, expect, _)| {
            (
                format!("{name}.test.toml"),
                format!("config = \"tessera.toml\"\n\n[[step]]\nrequest = \"/\"\n{expect}\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = site(&refs);
    let (ok, out) = tessera_test(&[&dir.path().display().to_string()]);
    assert!(!ok, "failing files make a failing run: {out}");
    for (name, _, message) in cases {
        assert!(
            out.contains(&format!("{name}.test.toml ... FAILED (0 steps)")),
            "{name}: {out}"
        );
        assert!(
            out.contains(message),
            "{name}: wanted {message:?} in\n{out}"
        );
    }
    assert!(out.contains("step 1 (line 3): / (host s.example)"), "{out}");
    assert!(
        out.contains("(Cache-Status: tessera; fwd=uri-miss; fwd-status=200; stored; ttl=60)"),
        "{out}"
    );
    assert!(
        out.contains("test result: FAILED. 0 passed; 7 failed"),
        "{out}"
    );
}

#[test]
fn bad_test_files_are_named_by_file_line_and_key() {
    let cases = [
        ("typo", "config = \"tessera.toml\"\n[[step]]\nrequest = \"/\"\nexpect = { hti = true }\n", ":2: step 1 (the 1st [[step]]): unknown field `hti`"),
        ("when", "config = \"tessera.toml\"\n[[step]]\nadvance = \"5 weeks\"\n", ":2: step 1 (the 1st [[step]]) key `advance`: expected a time"),
        ("both", "config = \"tessera.toml\"\n[[step]]\nrequest = \"/\"\nadvance = \"1s\"\n", ":2: step 1 (the 1st [[step]]): needs one of `request`, `advance` or `purge`"),
        ("target", "config = \"tessera.toml\"\n\n[[step]]\nrequest = \"/\"\n[[step]]\nrequest = \"GET a\"\n", ":5: step 2 (the 2nd [[step]]) key `request`: the target must start with `/`"),
        ("config", "config = \"nope.toml\"\n[[step]]\nrequest = \"/\"\n", ":1: key `config`: "),
        ("empty", "config = \"tessera.toml\"\n", "no `[[step]]`"),
        ("site", "config = \"tessera.toml\"\nsite = \"shop\"\n[[step]]\nrequest = \"/\"\n", ":2: key `site`: "),
    ];
    let refs: Vec<(String, &str)> = cases
        .iter()
        .map(|(n, text, _)| (format!("{n}.test.toml"), *text))
        .collect();
    let refs: Vec<(&str, &str)> = refs.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let dir = site(&refs);
    let (ok, out) = tessera_test(&[&dir.path().display().to_string()]);
    assert!(!ok);
    for (name, _, message) in cases {
        let want = format!("{name}.test.toml{message}");
        let want = if message.starts_with(':') {
            want
        } else {
            message.to_owned()
        };
        assert!(out.contains(&want), "{name}: wanted {want:?} in\n{out}");
    }
}

#[test]
fn a_test_file_can_take_one_site_of_a_config() {
    let dir = site(&[(
        "two.toml",
        "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigin = \"http://127.0.0.1:9\"\n[[site]]\nname = \"b\"\nhosts = [\"b.example\"]\norigin = \"http://127.0.0.1:9\"\n",
    ), (
        "b.test.toml",
        "config = \"two.toml\"\nsite = \"b\"\n[[step]]\nrequest = \"/\"\nexpect = { status = 200, body_contains = [\"Home\"] }\n[[step]]\nrequest = \"/\"\nhost = \"a.example\"\nexpect = { status = 200 }\n",
    )]);
    let (ok, out) = tessera_test(&[&path(dir.path(), "b.test.toml")]);
    assert!(!ok, "{out}");
    // Requests go to b's first host by default; a is not there at all.
    assert!(out.contains("b.test.toml ... FAILED (1 step)"), "{out}");
    assert!(out.contains("step 2 (line 6): / (host a.example)"), "{out}");
    assert!(out.contains("got status: 404"), "{out}");
}

#[test]
fn every_guest_example_passes_its_own_site_tests() {
    // Real scripts, built from their crates on load: tracking parameters collapse, device
    // classes split, a 120 s TTL ends, A/B buckets stick, the cart is never stored,
    // stale-while-revalidate serves stale once and refreshes, each visitor sees their own
    // name on one cached page, scanners are turned away, one copy per region, signed-in
    // users go past the cache and forged tokens are refused, API keys are rate-limited.
    let (ok, out) = tessera_test(&[&repo().join("guest-examples").display().to_string()]);
    assert!(ok, "{out}");
    for (file, steps) in [
        ("normalize-key/site-tests/keys.test.toml", 5),
        ("personalize/site-tests/visitors.test.toml", 3),
        ("ab-test/site-tests/buckets.test.toml", 4),
        ("micro-cache/site-tests/swr.test.toml", 7),
        ("bot-block/site-tests/agents.test.toml", 2),
        ("ttl-by-type/site-tests/ttls.test.toml", 7),
        ("geo-key/site-tests/regions.test.toml", 4),
        ("jwt-gate/site-tests/sessions.test.toml", 6),
        ("fresh-vs-cached/site-tests/routes.test.toml", 10),
    ] {
        assert!(
            out.contains(&format!("{file} ... ok ({steps} steps)")),
            "{file}: {out}"
        );
    }
    assert!(out.contains("test result: ok. 9 passed; 0 failed"), "{out}");
}

#[test]
fn html_is_checked_by_selector_and_snapshot_and_results_go_to_junit() {
    let page = "<html><body>\n<h1 class=\"greeting\">Hello, visitor</h1>\n<ul>\n<li class=\"i\">One <b>1</b></li>\n<li class=\"i\">Two</li>\n</ul>\n<a id=\"buy\" href=\"/cart\">Buy</a>\n</body></html>\n";
    let dir = site(&[(
        "html.test.toml",
        r##"config = "tessera.toml"
[[step]]
request = "/list"
[step.expect]
body_snapshot = "snapshots/list.html"
select = [
  { css = "li.i", count = 2 },
  { css = "h1.greeting", text = "Hello, visitor" },
  { css = "ul > li", contains = "One" },
  { css = "a#buy", attr = "href", equals = "/cart" },
]
"##,
    )]);
    std::fs::write(dir.path().join("pages/list.html"), page).unwrap();
    let file = path(dir.path(), "html.test.toml");
    let (ok, out) = tessera_test(&[&file]);
    assert!(!ok && out.contains("cannot read the snapshot"), "{out}");
    let (ok, out) = tessera_test(&["--update-snapshots", &file]);
    assert!(ok, "{out}");
    let snap = dir.path().join("snapshots/list.html");
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), page);
    let junit = dir.path().join("junit.xml");
    let (ok, out) = tessera_test(&["--junit", junit.to_str().unwrap(), &file]);
    assert!(ok, "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"tessera test\" tests=\"1\"") && !xml.contains("<failure"),
        "{xml}"
    );

    // The page changes: the snapshot shows the lines that differ, JUnit the failure.
    std::fs::write(&snap, page.replace("Two", "Three")).unwrap();
    let (ok, out) = tessera_test(&["--junit", junit.to_str().unwrap(), &file]);
    assert!(!ok);
    assert!(
        out.contains("the body is not the snapshot snapshots/list.html"),
        "{out}"
    );
    assert!(
        out.contains("-<li class=\"i\">Three</li>") && out.contains("+<li class=\"i\">Two</li>"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("step 1 (line 2): /list"),
        "{xml}"
    );

    // A selector that no longer holds says which and what it found.
    std::fs::write(
        dir.path().join("pages/list.html"),
        page.replace("visitor", "alice"),
    )
    .unwrap();
    std::fs::remove_file(&snap).unwrap();
    let (_, out) = tessera_test(&["--update-snapshots", &file]);
    assert!(
        out.contains("expected the text of `h1.greeting`: \"Hello, visitor\"")
            && out.contains("got the text of `h1.greeting`: \"Hello, alice\""),
        "{out}"
    );
}

#[test]
fn purge_steps_reach_what_they_name_and_count_it() {
    let dir = site(&[(
        "purge.test.toml",
        r#"config = "tessera.toml"
[[step]]
request = "/"
[[step]]
request = "/"
expect = { hit = true }
[[step]]
purge = { tag = "home" }
purged = 1
[[step]]
request = "/"
expect = { hit = false, origin_requests = 2 }
[[step]]
purge = { url = "http://s.example/", soft = true }
[[step]]
request = "/"
expect = { hit = false, fwd = "stale", origin_requests = 3 }
[[step]]
purge = { prefix = "http://s.example/a/" }
purged = 4
"#,
    )]);
    let (ok, out) = tessera_test(&[&path(dir.path(), "purge.test.toml")]);
    assert!(!ok);
    assert!(
        out.contains("purge.test.toml ... FAILED (6 steps)"),
        "{out}"
    );
    assert!(
        out.contains("step 7 (line 18): purge: \n  expected responses purged: 4\n       got responses purged: 0"),
        "{out}"
    );
}

#[test]
fn page_variations_answer_chosen_requests_differently() {
    let dir = site(&[(
        "outage.test.toml",
        r#"config = "tessera.toml"

[[page]]
path = "/"
requests = [2]
status = 503
headers = { cache-control = "no-store", retry-after = "5" }

[[step]]
request = "/?a=1"
expect = { status = 200, stored = true }
[[step]]
advance = "61s"
[[step]]
request = "/?a=1"
expect = { status = 503, headers = { retry-after = "5" }, body_contains = ["Home"] }
[[step]]
request = "/?a=1"
expect = { status = 200, hit = false, origin_requests = 3, origin_requests_for = { "/?a=1" = 3 } }
"#,
    ), (
        "bad-page.test.toml",
        "config = \"tessera.toml\"\n[[page]]\npath = \"/\"\ndelay = \"2h\"\n[[step]]\nrequest = \"/\"\n",
    )]);
    let (ok, out) = tessera_test(&[&path(dir.path(), "outage.test.toml")]);
    assert!(ok, "{out}");
    let (ok, out) = tessera_test(&[&path(dir.path(), "bad-page.test.toml")]);
    assert!(!ok);
    assert!(
        out.contains("bad-page.test.toml:2: page 1 (the 1st [[page]]) key `delay`: expected a time up to 60 s"),
        "{out}"
    );
}

#[test]
fn the_demo_shop_passes_its_site_tests() {
    // The demo's own pages (the side files the demo origin serves too): ESI assembly,
    // personalisation on one cached page, the cart never stored, HTML's 120 s.
    let (ok, out) = tessera_test(&[&repo().join("samples/site-tests").display().to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains("shop.test.toml ... ok (8 steps)"), "{out}");
}

#[test]
fn site_tests_need_no_network_at_all() {
    // Once outside, so that the scripts are built (cargo may want the registry)...
    let site = repo().join("samples/site-tests").display().to_string();
    let (ok, out) = tessera_test(&[&site]);
    assert!(ok, "{out}");
    // ...then in a network namespace of its own, which has no usable interface, not even
    // loopback: a runner that opened a port for its sample origin could not reach it.
    let (ok, out) =
        tessera_test_through(&["unshare", "--user", "--map-root-user", "--net"], &[&site]);
    assert!(ok, "{out}");
    assert!(out.contains("shop.test.toml ... ok (8 steps)"), "{out}");
}
