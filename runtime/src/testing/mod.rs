//! `tessera test`: a site's real config and scripts run in-process against sample pages, on
//! a virtual clock that steps move forward, with expectations on what each visitor gets.

mod expect;
mod pages;
pub mod spec;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::clock::Clock;
use crate::config::Config;
use spec::{RequestStep, Spec, Step};

/// How long one response may take before the step fails (real time: the origin is local).
const PATIENCE: Duration = Duration::from_secs(30);

/// How one test file went.
#[derive(Debug)]
pub struct FileResult {
    /// The test file.
    pub file: PathBuf,
    /// Steps run.
    pub steps: usize,
    /// Why it failed (the first failing step, with its request), if it did.
    pub failure: Option<String>,
    /// How long it ran.
    pub took: Duration,
}

/// The test files named by `paths`: files as given, folders searched for `*.test.toml`.
pub fn find(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target" && n != "pages") {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(".test.toml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Runs every file, side by side; results in the order given. With `update`, body
/// snapshots are written instead of compared.
pub async fn run(files: &[PathBuf], update: bool) -> Vec<FileResult> {
    futures_util::future::join_all(files.iter().map(|f| run_file(f, update))).await
}

/// Runs one test file.
pub async fn run_file(file: &Path, update: bool) -> FileResult {
    let started = std::time::Instant::now();
    let mut result = FileResult {
        file: file.to_owned(),
        steps: 0,
        failure: None,
        took: Duration::ZERO,
    };
    if let Err(why) = run_steps(file, update, &mut result.steps).await {
        result.failure = Some(why);
    }
    result.took = started.elapsed();
    result
}

async fn run_steps(file: &Path, update: bool, done: &mut usize) -> Result<(), String> {
    let spec = Spec::load(file).map_err(|e| e.to_string())?;
    let mut config = Config::load(&spec.config).map_err(|e| e.to_string())?;
    if let Some((name, line)) = &spec.site {
        let names: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
        if !names.contains(&name.as_str()) {
            return Err(format!(
                "{}:{line}: key `site`: {} has no [[site]] named {name:?} (it has {})",
                file.display(),
                spec.config.display(),
                names.join(", ")
            ));
        }
        config.sites.retain(|s| s.name == *name);
    }
    let clock = Clock::frozen();
    let pages = pages::Pages::start(spec.pages.clone(), spec.variations.clone(), clock.clone());
    // Everything goes to the sample pages, in this process: no port is opened and nothing
    // of the machine or its network is touched.
    let origin: http::Uri = "http://sample-pages.invalid".parse().expect("a URL");
    for site in &mut config.sites {
        site.origin = origin.clone();
        site.origin_ca = None;
        site.local_origin = Some(pages.origin());
        site.shields.clear();
    }
    config.cache.disk = None;
    config.fleet = None;
    // A step's `country` comes in as a trusted upstream would tell it: through the
    // site's own country header, or one of the test's.
    let country_header = config
        .server
        .client_country_header
        .get_or_insert_with(|| http::HeaderName::from_static("x-tessera-test-country"))
        .clone();
    let host = config
        .sites
        .first()
        .and_then(|s| s.hosts.iter().find(|h| !h.contains('*')).cloned())
        .unwrap_or_else(|| "localhost".to_owned());
    let shared = crate::proxy::build(config, clock.clone())
        .await
        .map_err(|e| format!("{}: {e:#}", spec.config.display()))?;
    for (i, step) in spec.steps.iter().enumerate() {
        match step {
            Step::Advance(d) => {
                clock.advance(*d);
            }
            Step::Purge {
                request,
                purged,
                line,
            } => {
                let at = |why: String| format!("step {} (line {line}): purge: {why}", i + 1);
                let (target, _) = crate::admin::purge::targets(&shared.generation(), request)
                    .map_err(|e| at(e.to_string()))?;
                let n = shared.store.purge(&target, request.soft);
                if let Some(want) = purged {
                    if *want != n {
                        return Err(at(format!(
                            "\n  expected responses purged: {want}\n       got responses purged: {n}"
                        )));
                    }
                }
            }
            Step::Request(r) => {
                let got = send(&shared, r, &host, &country_header)
                    .await
                    .map_err(|e| format!("step {} (line {}): {}: {e}", i + 1, r.line, r.request))?;
                // A stale answer's background refresh belongs to this step: what the
                // origin saw is counted once it is done.
                let deadline = tokio::time::Instant::now() + PATIENCE;
                while !shared.flights.is_idle() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let counts = |target: &str| pages.count(target);
                let snapshots = expect::Snapshots {
                    dir: file.parent().unwrap_or(Path::new(".")),
                    update,
                };
                expect::check(&r.expect, &got, pages.total(), &counts, &snapshots).map_err(
                    |mismatch| {
                        format!(
                            "step {} (line {}): {} (host {})\n{mismatch}",
                            i + 1,
                            r.line,
                            r.request,
                            r.host.as_deref().unwrap_or(&host)
                        )
                    },
                )?;
            }
        }
        *done += 1;
    }
    Ok(())
}

/// What a step's request got.
#[derive(Debug)]
pub struct Got {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: http::HeaderMap,
    /// Body, as text (lossy).
    pub body: String,
}

async fn send(
    shared: &Arc<crate::proxy::Shared>,
    r: &RequestStep,
    host: &str,
    country_header: &http::HeaderName,
) -> Result<Got, String> {
    let (method, target) = spec::request_line(&r.request)?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(target)
        .header(http::header::HOST, r.host.as_deref().unwrap_or(host));
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(c) = &r.country {
        req = req.header(country_header, c.as_str());
    }
    if let Some(agent) = r.device.as_deref().and_then(spec::device_agent) {
        req = req.header(http::header::USER_AGENT, agent);
    }
    if !r.cookies.is_empty() {
        let cookie: Vec<String> = r.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        req = req.header(http::header::COOKIE, cookie.join("; "));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let conn = crate::proxy::ConnInfo {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        scheme: "http",
        listener: None,
    };
    let resp = tokio::time::timeout(PATIENCE, crate::proxy::handle(shared.clone(), req, conn))
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .map_err(|_| "the body did not end in 30 s".to_owned())?
        .map_err(|e| format!("the body failed: {e}"))?
        .to_bytes();
    Ok(Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
