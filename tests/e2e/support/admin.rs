//! Talking to the admin listener: the test token, JSON requests, metrics scrapes.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::{exchange, Got, PATIENCE};

/// The token test configs name (through `token_file = "admin-token"`).
pub const TOKEN: &str = "test-admin-token-0123456789";

/// Writes `admin-token` (0600) with [`TOKEN`] into `dir`.
pub fn write_token_file(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One admin request over a fresh connection; `token` goes in `Authorization: Bearer`.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Got {
    let mut headers = Vec::new();
    let bearer;
    if let Some(t) = token {
        bearer = format!("Bearer {t}");
        headers.push(("authorization", bearer.as_str()));
    }
    call_with(addr, method, path, &headers, body).await
}

/// One admin request with raw headers.
pub async fn call_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    exchange(
        addr,
        req.body(Full::new(Bytes::from(body.to_owned()))).unwrap(),
    )
    .await
}

/// POSTs `json` to `path` with the test token and returns the JSON answer; panics unless 200.
pub async fn post(addr: SocketAddr, path: &str, json: &str) -> serde_json::Value {
    let got = call(addr, "POST", path, Some(TOKEN), json).await;
    assert_eq!(got.status, 200, "{path} {json}: {}", got.body);
    serde_json::from_str(&got.body).unwrap()
}

/// `POST /purge` and the number of objects it reached.
pub async fn purge(addr: SocketAddr, json: &str) -> u64 {
    post(addr, "/purge", json).await["objects"]
        .as_u64()
        .unwrap()
}

/// The value of one series in a text exposition (`name{labels}` exactly as written).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Scrapes `/metrics` until every `(series, value)` holds or [`PATIENCE`] runs out, and
/// returns the last scrape. The access metrics of a response are counted when the server
/// drops its body, which may be a moment after the client has read it; the test then
/// asserts exact values on what this returns.
pub async fn scrape_until(addr: SocketAddr, wanted: &[(&str, f64)]) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = call(addr, "GET", "/metrics", Some(TOKEN), "").await;
        assert_eq!(got.status, 200);
        let done = wanted.iter().all(|(s, v)| metric(&got.body, s) == Some(*v));
        if done || tokio::time::Instant::now() > deadline {
            return got.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
