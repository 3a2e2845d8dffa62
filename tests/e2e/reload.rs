//! Hot reload of the real binary: SIGHUP and `--watch` swap config and scripts while
//! requests run; a bad version is refused and the old one keeps serving; the cache stays.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::admin::scrape_until;
use crate::support::{
    compiled_dir, guest, origin_reaches, send, Launch, Origin, Proxy, Reply, PATIENCE,
};

/// A config whose node name (`X-Served-By`) tells the generations apart.
fn config(node: &str, scripts: &[&str]) -> String {
    let script = scripts
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
node_name = "{node}"

[admin]
listen = "127.0.0.1:0"
token_file = "admin-token"

[[site]]
name = "shop"
hosts = ["shop.test"]
origin = "{{origin}}"
script = [{script}]
"#
    )
}

/// Replaces the proxy's config file the way a deploy does: write aside, rename over.
fn rewrite(proxy: &Proxy, origin: &Origin, toml: &str) {
    let path = proxy.config.as_ref().expect("started from a config");
    let dir = path.parent().unwrap();
    let text = toml
        .replace("{origin}", &origin.url())
        .replace("{compiled}", &compiled_dir().display().to_string())
        .replace("{dir}", &dir.display().to_string());
    let aside = dir.join("tessera.toml.new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn hangup(proxy: &Proxy) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let r = unsafe { libc::kill(proxy.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0);
}

/// Asks until a response is served by `node` (a reload is asynchronous to the signal).
async fn served_by(proxy: &Proxy, node: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = send(proxy.addr, "GET", "/cached", &[]).await;
        if got.h("x-served-by") == node {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served by {node}: {}",
            got.h("x-served-by")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn origin_reply(seen: &crate::support::Seen, n: usize) -> Reply {
    match seen.path_and_query.as_str() {
        "/cached" => Reply::ok("cached").header("cache-control", "max-age=600"),
        _ => Reply::ok(&format!("fresh {n}")).header("cache-control", "no-store"),
    }
}

/// How many requests for `path` reached the origin.
fn fetches(origin: &Origin, path: &str) -> usize {
    origin
        .seen()
        .iter()
        .filter(|s| s.path_and_query == path)
        .count()
}

fn script(name: &str) -> String {
    guest(&format!("guest-examples/{name}"))
        .display()
        .to_string()
}

#[tokio::test]
async fn five_reloads_under_traffic_fail_no_request_and_keep_the_cache() {
    let origin = Origin::start(origin_reply).await;
    // Both versions key alike (normalize-key), so the cached object stays reachable.
    let (key, block) = (script("normalize-key"), script("bot-block"));
    let versions: [&[&str]; 2] = [&[&key], &[&key, &block]];
    let proxy = Launch::config(&origin, &config("gen-0", versions[0]))
        .start()
        .await;
    assert_eq!(send(proxy.addr, "GET", "/cached", &[]).await.body, "cached");

    // A bounded loop of requests, cached and not, until the reloads are done.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..2 {
        let (stop, sent, addr) = (stop.clone(), sent.clone(), proxy.addr);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let path = if (i + c) % 2 == 0 {
                    "/cached"
                } else {
                    "/fresh"
                };
                let got = send(addr, "GET", path, &[]).await;
                if got.status != 200 {
                    failures.push(format!("{path}: {} {}", got.status, got.body));
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for g in 1..=5 {
        let node = format!("gen-{g}");
        rewrite(&proxy, &origin, &config(&node, versions[g % 2]));
        hangup(&proxy);
        served_by(&proxy, &node).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent.load(Ordering::Relaxed) > 0);
    // The scripts of generation 5 (with bot-block) are in force.
    let blocked = send(
        proxy.addr,
        "GET",
        "/cached",
        &[("user-agent", "badbot/1.0")],
    )
    .await;
    assert_eq!(blocked.status, 403);
    // The object cached before the first reload was never fetched again.
    assert_eq!(fetches(&origin, "/cached"), 1);
    let metrics = scrape_until(
        proxy.admin.unwrap(),
        &[("tessera_reloads_total{result=\"ok\"}", 5.0)],
    )
    .await;
    assert!(
        metrics.contains("tessera_reloads_total{result=\"ok\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_reload_is_refused_and_the_old_version_keeps_serving() {
    let origin = Origin::start(origin_reply).await;
    let good = script("bot-block");
    let proxy = Launch::config(&origin, &config("gen-1", &[&good]))
        .capture_logs()
        .start()
        .await;
    let admin = proxy.admin.unwrap();
    assert_eq!(send(proxy.addr, "GET", "/cached", &[]).await.body, "cached");
    let dir = proxy.config.as_ref().unwrap().parent().unwrap().to_owned();
    let broken = dir.join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0 this is not a component").unwrap();

    let bad_versions = [
        // Not TOML.
        "node_name = \"gen-2\"\n[[site]\nname = ".to_owned(),
        // A key that does not exist.
        config("gen-2", &[&good]).replace("[[site]]", "[[site]]\nspeed = \"fast\""),
        // A script that is not a component.
        config("gen-2", &[&broken.display().to_string()]),
        // A change that needs a restart.
        format!(
            "{}\n[cache]\nmax_size = \"1GiB\"\n",
            config("gen-2", &[&good])
        ),
    ];
    for (i, bad) in bad_versions.iter().enumerate() {
        rewrite(&proxy, &origin, bad);
        hangup(&proxy);
        let errors = (i + 1) as f64;
        let text = scrape_until(
            admin,
            &[("tessera_reloads_total{result=\"error\"}", errors)],
        )
        .await;
        assert!(
            text.contains(&format!(
                "tessera_reloads_total{{result=\"error\"}} {}",
                i + 1
            )),
            "{bad}\n{text}"
        );
        let got = send(proxy.addr, "GET", "/cached", &[("user-agent", "badbot")]).await;
        assert_eq!(
            (got.status, got.h("x-served-by").as_str()),
            (403, "gen-1"),
            "{bad}"
        );
        assert!(send(proxy.addr, "GET", "/cached", &[]).await.hit());
    }
    let logs = proxy.logs().join("\n");
    assert!(
        logs.contains("reload (SIGHUP) refused, generation 1 keeps serving"),
        "{logs}"
    );
    assert!(
        logs.contains("tessera.toml"),
        "the error names the file: {logs}"
    );
    assert!(logs.contains("speed"), "the error names the key: {logs}");
    assert!(
        logs.contains("broken.wasm"),
        "the error names the script: {logs}"
    );
    assert!(logs.contains("restart"), "{logs}");

    // Fixed, it goes through.
    rewrite(&proxy, &origin, &config("gen-2", &[&good]));
    hangup(&proxy);
    served_by(&proxy, "gen-2").await;
    assert_eq!(fetches(&origin, "/cached"), 1);
}

#[tokio::test]
async fn watch_reloads_when_the_config_or_a_script_changes() {
    let origin = Origin::start(origin_reply).await;
    let proxy = Launch::config(&origin, &config("gen-1", &["{dir}/script.wasm"])).arg("--watch");
    // The script the config names is a copy the test replaces later; neither version
    // computes keys, so the cached object stays reachable.
    let dir = proxy_dir(&proxy);
    std::fs::copy(script("ttl-by-type"), dir.join("script.wasm")).unwrap();
    let proxy = proxy.start().await;
    assert_eq!(
        send(proxy.addr, "GET", "/cached", &[("user-agent", "badbot")])
            .await
            .status,
        200
    );

    rewrite(&proxy, &origin, &config("gen-2", &["{dir}/script.wasm"]));
    served_by(&proxy, "gen-2").await;

    // A new script, renamed over the old one as a deploy would.
    let aside = dir.join("script.wasm.new");
    std::fs::copy(script("bot-block"), &aside).unwrap();
    std::fs::rename(&aside, dir.join("script.wasm")).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while send(proxy.addr, "GET", "/cached", &[("user-agent", "badbot")])
        .await
        .status
        != 403
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new script never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetches(&origin, "/cached"), 1);
}

/// The temp dir a [`Launch`] writes its config into.
fn proxy_dir(launch: &Launch) -> std::path::PathBuf {
    launch.config_path().parent().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_version_it_started_with() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = Origin::start({
        let gate = gate.clone();
        move |seen, n| match seen.path_and_query.as_str() {
            "/slow" => Reply::ok("slow").gate(&gate),
            _ => origin_reply(seen, n),
        }
    })
    .await;
    let proxy = Launch::config(&origin, &config("gen-1", &[&script("normalize-key")]))
        .start()
        .await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move { send(addr, "GET", "/slow", &[]).await });
    assert_eq!(origin_reaches(&origin, 1).await, 1);

    rewrite(&proxy, &origin, &config("gen-2", &[&script("bot-block")]));
    hangup(&proxy);
    served_by(&proxy, "gen-2").await;
    gate.add_permits(1);
    let got = tokio::time::timeout(PATIENCE, slow).await.unwrap().unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "slow"));
    assert_eq!(got.h("x-served-by"), "gen-1");
}
