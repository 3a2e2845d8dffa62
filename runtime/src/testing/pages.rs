//! The origin of a `tessera test` file: sample pages from a folder (`/p` → `p`, `p.html`,
//! `p.json` or `p/index.html`), each with response fields from a side file `<file>.headers`
//! (`Name: value` lines; `Status: 404` sets the status), counting what it is asked; a test
//! file's `[[page]]` variations change the status, fields or timing of chosen requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::spec::Variation;
use crate::clock::Clock;
use crate::origin::LocalOrigin;

/// A sample origin, reached in-process (no port); its connections end when it is dropped.
pub struct Pages {
    seen: Arc<Mutex<HashMap<String, u64>>>,
    origin: LocalOrigin,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for Pages {
    fn drop(&mut self) {
        for c in self.connections.lock().expect("page connections").drain(..) {
            c.abort();
        }
    }
}

impl Pages {
    /// Serves the files below `root`, dated by `clock` (the test's virtual clock: a real
    /// `Date` would make every response look as old as the time the steps skipped).
    pub fn start(root: PathBuf, variations: Vec<Variation>, clock: Clock) -> Pages {
        let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (root, counts) = (Arc::new(root), seen.clone());
        let variations = Arc::new(variations);
        let paths: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let tasks = connections.clone();
        let origin = LocalOrigin::new(move |stream| {
            let (root, counts, clock) = (root.clone(), counts.clone(), clock.clone());
            let (variations, paths) = (variations.clone(), paths.clone());
            let task = tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let target = req
                        .uri()
                        .path_and_query()
                        .map_or("/".to_owned(), |p| p.to_string());
                    let path = req.uri().path().to_owned();
                    *counts
                        .lock()
                        .expect("page counts")
                        .entry(target)
                        .or_default() += 1;
                    // The how-many-th request for this path, whatever its query.
                    let nth = {
                        let mut paths = paths.lock().expect("path counts");
                        let n = paths.entry(path.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let mut r = serve(&root, &path);
                    let mut delay = None;
                    for v in variations.iter().filter(|v| {
                        v.path == path && (v.requests.is_empty() || v.requests.contains(&nth))
                    }) {
                        if let Some(s) = v.status.and_then(|s| StatusCode::from_u16(s).ok()) {
                            *r.status_mut() = s;
                        }
                        for (n, val) in &v.headers {
                            if let (Ok(n), Ok(val)) = (
                                HeaderName::from_bytes(n.as_bytes()),
                                HeaderValue::from_str(val),
                            ) {
                                r.headers_mut().insert(n, val);
                            }
                        }
                        delay = v.delay.as_deref().and_then(super::spec::duration).or(delay);
                    }
                    let date = httpdate::fmt_http_date(clock.now());
                    if let Ok(v) = HeaderValue::from_str(&date) {
                        r.headers_mut().insert(header::DATE, v);
                    }
                    async move {
                        if let Some(d) = delay {
                            tokio::time::sleep(d).await;
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
            let mut tasks = tasks.lock().expect("page connections");
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        });
        Pages {
            seen,
            origin,
            connections,
        }
    }

    /// The origin to give the sites under test.
    pub fn origin(&self) -> LocalOrigin {
        self.origin.clone()
    }

    /// Requests seen so far, in total.
    pub fn total(&self) -> u64 {
        self.seen.lock().expect("page counts").values().sum()
    }

    /// Requests seen so far for `target` (path and query as sent).
    pub fn count(&self, target: &str) -> u64 {
        self.seen
            .lock()
            .expect("page counts")
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn serve(root: &Path, path: &str) -> Response<Full<Bytes>> {
    if crate::demo::bad_sample_path(path) {
        return text(StatusCode::BAD_REQUEST, "bad path\n");
    }
    let Some(file) = crate::demo::sample_file(root, path) else {
        return text(StatusCode::NOT_FOUND, "no such sample page\n");
    };
    let Ok(body) = std::fs::read(&file) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "read error\n");
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::demo::sample_type(&file)),
    );
    if let Err(why) = crate::demo::side_fields(&file, &mut r) {
        return text(StatusCode::INTERNAL_SERVER_ERROR, why);
    }
    r
}
