//! The guest examples through the library server with a virtual clock: what each promises
//! its users, measured in origin requests.

use tessera::clock::Clock;

use crate::support::{guest, origin_reaches, send, Lib, Origin, Reply};

#[tokio::test]
async fn micro_cache_holds_a_hot_api_to_one_origin_request_per_second() {
    // A frozen clock shared by the edge and the origin's `Date`: a 1 s TTL must not be
    // crossed by how long a loaded machine takes, nor every response look aged by skew.
    let clock = Clock::frozen();
    let origin = Origin::start({
        let clock = clock.clone();
        move |seen, n| {
            let reply = match seen.path_and_query.as_str() {
                "/api/me" => Reply::ok(&format!("me {n}")).header("cache-control", "private"),
                _ => {
                    Reply::ok(&format!("{{\"n\":{n}}}")).header("content-type", "application/json")
                }
            };
            reply.header("date", &httpdate::fmt_http_date(clock.now()))
        }
    })
    .await;
    let script = guest("guest-examples/micro-cache");
    let toml = format!(
        "[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        script.display()
    );
    let proxy = Lib::start_on(&origin, &toml, clock).await;

    // A burst of 50 (10 at once, then 40 one by one): one origin request.
    let addr = proxy.addr;
    let burst: Vec<_> = (0..10)
        .map(|_| tokio::spawn(send(addr, "GET", "/api/prices", &[])))
        .collect();
    for t in burst {
        assert_eq!(t.await.unwrap().body, "{\"n\":1}");
    }
    for _ in 0..40 {
        assert_eq!(proxy.get("/api/prices", &[]).await.body, "{\"n\":1}");
    }
    assert_eq!(origin.count(), 1);

    // Two seconds on: stale answers at once while one refresh runs.
    proxy.advance(2);
    for _ in 0..20 {
        let got = proxy.get("/api/prices", &[]).await;
        assert!(
            got.body == "{\"n\":1}" || got.body == "{\"n\":2}",
            "{}",
            got.body
        );
    }
    assert_eq!(origin_reaches(&origin, 2).await, 2);
    assert_eq!(origin.count(), 2, "one refresh for twenty requests");

    // Past the stale window: fetched again before answering.
    proxy.advance(30);
    assert_eq!(proxy.get("/api/prices", &[]).await.body, "{\"n\":3}");
    assert_eq!(origin.count(), 3);

    // What the origin keeps private, and paths outside /api/, are not micro-cached.
    for _ in 0..2 {
        proxy.get("/api/me", &[]).await;
        proxy.get("/page", &[]).await;
    }
    assert_eq!(origin.count(), 7);
}

#[tokio::test]
async fn geo_key_shares_an_entry_per_region_and_a_client_cannot_choose_its_region() {
    let origin = Origin::start(|seen, _| {
        let region = seen
            .headers
            .get("x-edge-region")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(&format!("prices for {region}")).header("cache-control", "max-age=600")
    })
    .await;
    let script = guest("guest-examples/geo-key");
    let toml = format!(
        "[server]\nclient_country_header = \"cf-ipcountry\"\n[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        script.display()
    );
    let proxy = Lib::start(&origin, &toml).await;
    let from = |country: &'static str| [("cf-ipcountry", country)];

    assert_eq!(proxy.get("/p", &from("DE")).await.body, "prices for eu");
    let fr = proxy.get("/p", &from("FR")).await;
    assert!(
        fr.hit() && fr.body == "prices for eu",
        "{}",
        fr.cache_status()
    );
    assert_eq!(proxy.get("/p", &from("US")).await.body, "prices for na");
    assert_eq!(proxy.get("/p", &[]).await.body, "prices for row");
    assert_eq!(origin.count(), 3);

    // A forged region header is overwritten; an invalid country is no country.
    let forged = proxy
        .get("/p", &[("cf-ipcountry", "DE"), ("x-edge-region", "na")])
        .await;
    assert!(forged.hit() && forged.body == "prices for eu");
    let junk = proxy.get("/p", &from("D3")).await;
    assert!(junk.hit() && junk.body == "prices for row");
    assert_eq!(origin.count(), 3);
    assert!(origin
        .seen()
        .iter()
        .all(|s| s.headers.get_all("x-edge-region").iter().count() == 1));
}

/// An HS256 JWT over `claims`, as an identity provider would sign it.
fn jwt(header: &str, claims: &str, key: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::Mac;
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signing.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

#[tokio::test]
async fn jwt_gate_passes_signed_in_users_and_never_shares_their_pages() {
    const SECRET: &str = "an-edge-secret-of-32-bytes-00000";
    let origin = Origin::start(|seen, n| {
        let user = seen.headers.get("x-user-id").and_then(|v| v.to_str().ok());
        match user {
            Some(u) => {
                Reply::ok(&format!("hello {u} ({n})")).header("cache-control", "max-age=600")
            }
            None => Reply::ok(&format!("hello guest ({n})")).header("cache-control", "max-age=600"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let toml = format!(
        "[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n[site.script_config]\njwt_secret = {{ file = \"{}\" }}\n",
        guest("guest-examples/jwt-gate").display(),
        secret.display()
    );
    let proxy = Lib::start(&origin, &toml).await;
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    let ann = jwt(
        hs256,
        r#"{"sub":"ann","exp":4102444800}"#,
        SECRET.as_bytes(),
    );
    let bearer = format!("Bearer {ann}");

    // Anonymous: cached once for everybody; a claimed identity is stripped.
    assert_eq!(proxy.get("/news", &[]).await.body, "hello guest (1)");
    let claimed = proxy.get("/news", &[("x-user-id", "root")]).await;
    assert!(claimed.hit() && claimed.body == "hello guest (1)");
    assert_eq!(origin.count(), 1);

    // Signed in (header or cookie): past the cache every time, never stored.
    for i in 1..=2 {
        let got = proxy.get("/news", &[("authorization", &bearer)]).await;
        assert_eq!(got.body, format!("hello ann ({})", i + 1));
        assert!(
            got.cache_status().contains("fwd=bypass"),
            "{}",
            got.cache_status()
        );
    }
    let cookie = format!("session={ann}");
    assert_eq!(
        proxy.get("/account", &[("cookie", &cookie)]).await.body,
        "hello ann (4)"
    );
    let after = proxy.get("/news", &[]).await;
    assert!(
        after.hit() && after.body == "hello guest (1)",
        "ann's page was not stored"
    );
    assert_eq!(origin.count(), 4);

    // Protected without a token, forged tokens anywhere: 401, the origin never asked.
    let none = jwt(
        r#"{"alg":"none"}"#,
        r#"{"sub":"root","exp":4102444800}"#,
        b"",
    );
    let wrong_key = jwt(hs256, r#"{"sub":"root","exp":4102444800}"#, b"guessed");
    let expired = jwt(hs256, r#"{"sub":"ann","exp":1}"#, SECRET.as_bytes());
    let got = proxy.get("/account", &[]).await;
    assert_eq!(got.status, 401);
    assert!(
        got.h("www-authenticate").starts_with("Bearer"),
        "{:?}",
        got.headers
    );
    for token in [none, wrong_key, expired, "garbage".into()] {
        let got = proxy
            .get("/news", &[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(got.status, 401, "{token}");
        assert!(!got.body.contains("hello"));
    }
    assert_eq!(origin.count(), 4);
    assert!(origin
        .seen()
        .iter()
        .all(|s| s.headers.get("x-user-id").is_none_or(|u| u == "ann")));
}

#[tokio::test]
async fn fresh_vs_cached_shields_the_origin_and_rations_each_api_client() {
    let origin = Origin::start(|seen, n| {
        let client = seen
            .headers
            .get("x-api-client")
            .and_then(|v| v.to_str().ok());
        let body = format!("stock {n} for {}", client.unwrap_or("all"));
        Reply::ok(&body).header("cache-control", "max-age=60")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "partner-a:key-a-123,partner-b:key-b-456\n").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let toml = format!(
        "[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n[site.script_config]\napi_keys = {{ file = \"{}\" }}\nrate_limit_per_minute = \"3\"\n",
        guest("guest-examples/fresh-vs-cached").display(),
        keys.display()
    );
    // Rate-limit windows follow the cache's clock: a frozen one, so no window ends mid-test.
    let proxy = Lib::start_on(&origin, &toml, Clock::frozen()).await;

    // The cached route: twenty readers, one origin request; a forged client name is dropped.
    for _ in 0..20 {
        let got = proxy
            .get("/delivery/stock", &[("x-api-client", "partner-a")])
            .await;
        assert_eq!(got.body, "stock 1 for all");
    }
    assert_eq!(origin.count(), 1);

    // The fresh route: past the cache, three a minute per client, never the key upstream.
    let a = [("x-api-key", "key-a-123")];
    for i in 0..3 {
        let got = proxy.get("/fresh/stock", &a).await;
        assert_eq!(got.body, format!("stock {} for partner-a", i + 2));
        assert!(
            got.cache_status().contains("fwd=bypass"),
            "{}",
            got.cache_status()
        );
    }
    let limited = proxy.get("/fresh/stock", &a).await;
    assert_eq!(limited.status, 429);
    assert!(limited
        .h("retry-after")
        .parse::<u64>()
        .is_ok_and(|s| (1..=60).contains(&s)));
    let b = proxy
        .get("/fresh/stock", &[("x-api-key", "key-b-456")])
        .await;
    assert_eq!(
        b.body, "stock 5 for partner-b",
        "clients are rationed apart"
    );
    for key in ["", "key-a-12", "partner-a", "key-a-1234"] {
        let got = proxy.get("/fresh/stock", &[("x-api-key", key)]).await;
        assert_eq!(got.status, 401, "{key:?}");
    }
    assert_eq!(proxy.get("/fresh/stock", &[]).await.status, 401);
    assert_eq!(origin.count(), 5);
    assert!(origin
        .seen()
        .iter()
        .all(|s| s.headers.get("x-api-key").is_none()));

    // A minute later partner-a may go on.
    proxy.advance(60);
    assert_eq!(
        proxy.get("/fresh/stock", &a).await.body,
        "stock 6 for partner-a"
    );
}

#[tokio::test]
async fn geo_key_takes_the_country_from_a_geoip_database_when_no_header_gives_it() {
    let origin = Origin::start(|seen, _| {
        let region = seen
            .headers
            .get("x-edge-region")
            .and_then(|v| v.to_str().ok());
        Reply::ok(&format!("prices for {}", region.unwrap_or("none")))
            .header("cache-control", "max-age=600")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    let loopback = std::net::Ipv4Addr::new(127, 0, 0, 0);
    std::fs::write(
        &db,
        crate::support::mmdb::country_db(&[(loopback, 8, "FR")]),
    )
    .unwrap();
    let toml = format!(
        "[server]\nclient_country_header = \"cf-ipcountry\"\ngeoip_db = \"{}\"\n[[site]]\nname = \"s\"\norigin = \"{{origin}}\"\nscript = \"{}\"\n",
        db.display(),
        guest("guest-examples/geo-key").display()
    );
    let proxy = Lib::start(&origin, &toml).await;
    // This test's clients connect from 127.0.0.1, which the database places in France.
    assert_eq!(proxy.get("/p", &[]).await.body, "prices for eu");
    // A trusted upstream's header wins over the address.
    let us = proxy.get("/p", &[("cf-ipcountry", "US")]).await;
    assert_eq!(us.body, "prices for na");
    assert_eq!(origin.count(), 2);
}
