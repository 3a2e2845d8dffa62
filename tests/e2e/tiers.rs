//! Tiered caching: edges send misses to shield nodes (real `tessera` processes) chosen
//! per key, the origin sees one request per object, headers chain across tiers, and a
//! shield that dies costs no request.

use crate::support::{run_cli, Origin, Proxy, Reply};

fn shield_config(name: &str) -> String {
    format!(
        "node_name = \"{name}\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\n"
    )
}

fn edge_config(name: &str, shields: &[&Proxy]) -> String {
    let list: Vec<String> = shields
        .iter()
        .map(|s| format!("\"http://{}\"", s.addr))
        .collect();
    format!(
        "node_name = \"{name}\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\nshields = [{}]\n",
        list.join(", ")
    )
}

fn object_origin() -> impl Fn(&crate::support::Seen, usize) -> Reply + Send + Sync + 'static {
    |seen, _| {
        Reply::ok(&format!("object {}", seen.path_and_query)).header("cache-control", "max-age=600")
    }
}

#[tokio::test]
async fn an_object_requested_through_two_edges_reaches_the_origin_once() {
    let origin = Origin::start(object_origin()).await;
    let shield = Proxy::with_config(&origin, &shield_config("shield-1")).await;
    let edge1 = Proxy::with_config(&origin, &edge_config("edge-1", &[&shield])).await;
    let edge2 = Proxy::with_config(&origin, &edge_config("edge-2", &[&shield])).await;

    let first = edge1.get("/p", &[]).await;
    assert_eq!(first.body, "object /p");
    // Upstream first, as each cache appends its own (RFC 9211 order).
    assert_eq!(first.h("x-cache"), "MISS, MISS");
    assert_eq!(first.h("x-served-by"), "shield-1, edge-1");
    let cs = first.cache_status();
    assert!(
        cs.starts_with("shield-1; fwd=uri-miss") && cs.contains("edge-1; fwd=uri-miss"),
        "{cs}"
    );

    let second = edge2.get("/p", &[]).await;
    assert_eq!(second.body, "object /p");
    assert_eq!(second.h("x-cache"), "HIT, MISS");
    assert_eq!(second.h("x-served-by"), "shield-1, edge-2");
    let third = edge2.get("/p", &[]).await;
    assert_eq!(
        third.h("x-cache"),
        "HIT, HIT",
        "the shield's hit at fill time, then ours"
    );
    assert_eq!(
        origin.count(),
        1,
        "one origin request for three clients on two edges"
    );
    // The shield found the site by the client's Host; the origin sees both hops.
    let via: Vec<String> = origin.seen()[0]
        .headers
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(via, ["1.1 edge-1 (tessera)", "1.1 shield-1 (tessera)"]);
}

#[tokio::test]
async fn keys_spread_over_shields_and_a_dead_shield_costs_no_request() {
    let origin = Origin::start(object_origin()).await;
    let a = Proxy::with_config(&origin, &shield_config("shield-a")).await;
    let b = Proxy::with_config(&origin, &shield_config("shield-b")).await;
    let edge = Proxy::with_config(&origin, &edge_config("edge", &[&a, &b])).await;
    let mut by = std::collections::HashMap::<String, usize>::new();
    for i in 0..40 {
        let got = edge.get(&format!("/k{i}"), &[]).await;
        assert_eq!(got.status, 200);
        *by.entry(got.h("x-served-by")).or_default() += 1;
    }
    assert!(by.get("shield-a, edge").is_some_and(|n| *n > 5), "{by:?}");
    assert!(by.get("shield-b, edge").is_some_and(|n| *n > 5), "{by:?}");
    assert_eq!(origin.count(), 40);

    // Shield a dies: its keys go to b; nothing fails.
    a.kill().await;
    for i in 40..80 {
        let got = edge.get(&format!("/k{i}"), &[]).await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, format!("object /k{i}").as_str())
        );
        assert_eq!(got.h("x-served-by"), "shield-b, edge");
    }
    // Both die: the edge goes to the origin itself.
    b.kill().await;
    for i in 80..90 {
        let got = edge.get(&format!("/k{i}"), &[]).await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, format!("object /k{i}").as_str())
        );
        assert_eq!(got.h("x-served-by"), "edge");
    }
    assert_eq!(origin.count(), 90);
}

/// An edge and a shield configured as each other's shield; `trust` is their `[server]`.
/// The shield reaches the edge through a forwarder whose target is set once the edge is up
/// (each process binds an ephemeral port).
async fn looped_pair(origin: &Origin, trust: &str) -> (Proxy, Proxy) {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let target: std::sync::Arc<std::sync::OnceLock<std::net::SocketAddr>> = Default::default();
    let to = target.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = hole.accept().await {
            let Some(addr) = to.get().copied() else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let shield_toml = format!(
        "node_name = \"s1\"\n{trust}[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nshields = [\"http://{hole_addr}\"]\n"
    );
    let shield = Proxy::with_config(origin, &shield_toml).await;
    let edge_toml = format!(
        "node_name = \"e1\"\n{trust}[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nshields = [\"http://{}\"]\n",
        shield.addr
    );
    let edge = Proxy::with_config(origin, &edge_toml).await;
    target.set(edge.addr).unwrap();
    (edge, shield)
}

#[tokio::test]
async fn shields_configured_in_a_loop_do_not_bounce_a_request_forever() {
    // Nodes that trust each other break the loop by going to the origin.
    let origin = Origin::start(object_origin()).await;
    let trust = "[server]\ntrusted_edges = [\"127.0.0.1\"]\n";
    let (edge, _shield) = looped_pair(&origin, trust).await;
    let got = edge.get("/x", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "object /x"));
    assert_eq!(origin.count(), 1);
    // It did go around once: edge, shield, edge again (which went to the origin).
    let via: Vec<String> = origin.seen()[0]
        .headers
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        via,
        ["1.1 e1 (tessera)", "1.1 s1 (tessera)", "1.1 e1 (tessera)"]
    );

    // Without trust the loop is refused at once: 508, the origin never asked.
    let origin = Origin::start(object_origin()).await;
    let (edge, _shield) = looped_pair(&origin, "").await;
    let got = edge.get("/y", &[]).await;
    assert_eq!(got.status, 508, "{} {:?}", got.body, got.headers);
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn a_client_that_writes_the_edge_into_via_gets_508_not_a_way_around_the_shield() {
    let origin = Origin::start(object_origin()).await;
    let shield = Proxy::with_config(&origin, &shield_config("shield-1")).await;
    let edge = Proxy::with_config(&origin, &edge_config("edge-1", &[&shield])).await;
    let got = edge.get("/z", &[("via", "1.1 edge-1 (tessera)")]).await;
    assert_eq!(got.status, 508);
    assert!(
        got.cache_status().contains("detail=\"loop\""),
        "{}",
        got.cache_status()
    );
    assert_eq!(origin.count(), 0);
    // Someone else's Via is fine.
    let got = edge.get("/z", &[("via", "1.1 cdn-7 (varnish)")]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "object /z"));
}

#[test]
fn bad_shield_lists_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    for (list, says) in [
        (
            "[\"ftp://x\"]",
            "must be an http:// or https:// URL with a host and no path",
        ),
        ("[\"http://x/path\"]", "no path"),
        ("[\"http://x\", \"http://x\"]", "listed twice"),
        ("\"http://x\"", "expected a sequence"),
    ] {
        std::fs::write(
            &path,
            format!("[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nshields = {list}\n"),
        )
        .unwrap();
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{list} accepted");
        assert!(
            out.contains("t.toml:4") && out.contains(says),
            "{list}: {out}"
        );
    }
}

#[tokio::test]
async fn a_fleet_starts_from_the_command_line_without_config_files() {
    let origin = Origin::start(object_origin()).await;
    let shield = crate::support::Launch::quick(&origin, &[])
        .arg("--name")
        .arg("shield-q")
        .start()
        .await;
    let edge = crate::support::Launch::quick(&origin, &[])
        .arg("--name")
        .arg("edge-q")
        .arg("--shield")
        .arg(&format!("http://{}", shield.addr))
        .start()
        .await;
    let got = edge.get("/q", &[]).await;
    assert_eq!(got.body, "object /q");
    assert_eq!(got.h("x-served-by"), "shield-q, edge-q");
    let (ok, out) = run_cli(&["serve", "--origin", &origin.url(), "--shield", "ftp://x"]);
    assert!(
        !ok && out.contains("--shield: `ftp://x` is not an http(s) URL"),
        "{out}"
    );
}

#[tokio::test]
async fn age_carries_across_tiers_so_an_edge_never_extends_a_lifetime() {
    // The origin's response is already 100 s old (a CDN or cache behind it).
    let origin = Origin::start(|_, _| {
        Reply::ok("aged")
            .header("cache-control", "max-age=600")
            .header("age", "100")
    })
    .await;
    let shield = Proxy::with_config(&origin, &shield_config("shield-1")).await;
    let edge = Proxy::with_config(&origin, &edge_config("edge-1", &[&shield])).await;
    let got = edge.get("/a", &[]).await;
    let age: u64 = got.h("age").parse().unwrap();
    assert!(age >= 100, "age {age}");
    // The edge's remaining freshness counts from the origin's age, not from its own fetch.
    let again = edge.get("/a", &[]).await;
    assert!(again.hit());
    assert!(again.ttl() <= 500, "ttl {}", again.ttl());
}

#[tokio::test]
async fn a_shield_learns_the_client_from_edges_it_trusts_and_from_no_one_else() {
    let origin = Origin::start(|seen, _| {
        let x = seen.headers.get("x-seen").and_then(|v| v.to_str().ok());
        Reply::ok(x.unwrap_or("-")).header("cache-control", "no-store")
    })
    .await;
    // The shield runs a script that tells the origin which country it sees.
    let shield_toml = format!(
        "node_name = \"shield-1\"\n[server]\ntrusted_edges = [\"127.0.0.1\"]\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        crate::support::guest("tests/guests/hostile").display()
    );
    let shield = Proxy::with_config(&origin, &shield_toml).await;
    let edge_toml = format!(
        "node_name = \"edge-1\"\n[server]\nclient_country_header = \"cf-ipcountry\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"{{origin}}\"\nshields = [\"http://{}\"]\n",
        shield.addr
    );
    let edge = Proxy::with_config(&origin, &edge_toml).await;
    // The edge found DE; a client's own claim to the shield's field is dropped at the edge.
    let got = edge
        .get(
            "/whoami",
            &[("cf-ipcountry", "DE"), ("tessera-client-country", "US")],
        )
        .await;
    assert_eq!(got.body, "scheme=http; country=DE");
    let got = edge
        .get("/whoami", &[("tessera-client-country", "US")])
        .await;
    assert_eq!(
        got.body, "scheme=http; country=-",
        "no country at the edge: none at the shield"
    );
    assert!(origin
        .seen()
        .iter()
        .all(|s| s.headers.get("tessera-client-country").is_none()));
}
