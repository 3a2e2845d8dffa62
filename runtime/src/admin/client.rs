//! The client side of the admin API, for `tessera purge`.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Longest the admin API is given to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Sends `body` as JSON to `path` on the admin API at `admin` (`http://host:port`) and
/// returns the JSON answer; an answer other than 200 is an error carrying its message.
pub async fn post(
    admin: &str,
    token: Option<&str>,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let base: http::Uri = admin
        .parse()
        .with_context(|| format!("--admin: `{admin}` is not a URL"))?;
    anyhow::ensure!(
        base.scheme_str() == Some("http") && base.authority().is_some(),
        "--admin: `{admin}` must be http://host:port"
    );
    let uri = format!("http://{}{path}", base.authority().expect("checked"));
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.trim()));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let answer = tokio::time::timeout(TIMEOUT, async {
        let res = client.request(req).await?;
        let status = res.status();
        let bytes = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        anyhow::Ok((status, bytes))
    })
    .await
    .map_err(|_| anyhow::anyhow!("{uri}: no answer within {} s", TIMEOUT.as_secs()))?
    .with_context(|| uri.to_string())?;
    let (status, bytes) = answer;
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    if status != StatusCode::OK {
        let message = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(300)
                    .collect()
            });
        anyhow::bail!("{uri} answered {status}: {message}");
    }
    json.with_context(|| format!("{uri}: the answer is not JSON"))
}
