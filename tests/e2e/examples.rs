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
