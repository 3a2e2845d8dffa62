//! `tessera key`: a request taken through the real recv and hash phases offline (no cache,
//! no origin), reporting how it is keyed and why.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;

use super::driver::Exchange;
use super::hash::{self, Keyed};
use super::recv::{self, ConnInfo};
use super::Shared;
use crate::cache::key;
use crate::guest::Hook;

/// How one request is keyed, phase by phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The site the request was routed to.
    pub site: String,
    /// The device class the host derived from `User-Agent`.
    pub device: &'static str,
    /// The hooks that ran, each with the script that implements it.
    pub hooks: Vec<String>,
    /// The host's default key, before any script.
    pub default_key: String,
    /// The key the request is looked up and stored under (without the site namespace);
    /// `None` when it never reaches the cache.
    pub key: Option<String>,
    /// What happens next, in words.
    pub outcome: String,
    /// The query the origin would get on a miss (`None`: unchanged; `Some(None)`: none).
    pub origin_query: Option<Option<String>>,
    /// The steps of the default key's normalisation, for `--explain`.
    pub steps: Vec<String>,
}

/// Routes `req` (absolute-form URI or a `Host` field) and runs `on_request` and the key
/// phase; `None` if no site serves its host.
pub async fn explain(shared: Arc<Shared>, req: Request<()>, peer: SocketAddr) -> Option<KeyReport> {
    let scheme = if req.uri().scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    let conn = ConnInfo {
        peer,
        scheme,
        listener: None,
    };
    let gen = shared.generation();
    let (parts, ()) = req.into_parts();
    let (site, creq) = recv::route(&gen, parts, &conn).ok()?;
    let mut x = Exchange::new(
        shared,
        gen,
        site.clone(),
        creq,
        "tessera-key".into(),
        std::time::Instant::now(),
    );
    let ran = |hook: Hook| -> Vec<String> {
        site.scripts
            .iter()
            .filter(|s| s.implements(hook))
            .map(|s| format!("{} ({})", hook.as_str(), s.name()))
            .collect()
    };
    let mut report = KeyReport {
        site: site.cfg.name.clone(),
        device: x.req.client.device.as_str(),
        hooks: ran(Hook::OnRequest),
        default_key: String::new(),
        key: None,
        outcome: String::new(),
        origin_query: None,
        steps: Vec::new(),
    };
    match recv::hooks(&mut x).await {
        Err(answer) => {
            report.outcome = format!(
                "answered at the edge with {} (on-request), never cached",
                answer.response.status()
            );
            return Some(report);
        }
        Ok(recv::Route::Pass) => {
            report.device = x.req.client.device.as_str();
            report.outcome =
                "passed to the origin past the cache (on-request), never stored".into();
            return Some(report);
        }
        Ok(recv::Route::Cache) => {}
    }
    // Edits `on_request` made are what the key phase sees.
    report.device = x.req.client.device.as_str();
    let (default, steps) = key::explain_default_key(&x.req.authority, x.req.path(), x.req.query());
    report.default_key = default;
    report.steps = steps;
    report.hooks.extend(ran(Hook::CacheKey));
    match hash::key(&mut x).await {
        Err(answer) => {
            report.outcome = format!("refused with {} before the cache", answer.response.status());
        }
        Ok(Keyed::Failed(f)) => {
            report.outcome = format!("{f}: passed to the origin uncached (fails closed)");
        }
        Ok(Keyed::Key(k)) => {
            report.key = Some(k.key().to_owned());
            report.origin_query = x.origin_query.take();
            report.outcome = if matches!(x.req.method, http::Method::GET | http::Method::HEAD) {
                "looked up, and stored if the response allows it, under this key".into()
            } else {
                format!("{}: passed to the origin, never stored", x.req.method)
            };
        }
    }
    Some(report)
}
