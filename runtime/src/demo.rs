//! `tessera demo`: a built-in sample origin serving `samples/site`, and the wiring around it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// Starts the sample origin on `addr`, serving files below `root`; returns the bound address.
pub async fn start_sample_origin(root: PathBuf, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let root = Arc::new(root);
    let hits = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (root, hits) = (root.clone(), hits.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
                    let root = root.clone();
                    async move { Ok::<_, Infallible>(serve_file(&root, req, n)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// Whether a sample origin refuses `path` (400): a `..` or dot segment would reach outside
/// the sample folder or its hidden files.
pub(crate) fn bad_sample_path(path: &str) -> bool {
    path.split('/').any(|s| s == ".." || s.starts_with('.'))
}

/// The content type a sample origin sends for `file`, by its extension.
pub(crate) fn sample_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("css") => "text/css",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The file a sample origin serves for `path` (its `..` and dot segments refused by the
/// caller, [`bad_sample_path`]): `/p` → `p`, `p.html`, `p.json` or `p/index.html`; never a `.headers` side file.
pub(crate) fn sample_file(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    [
        root.join(rel),
        root.join(format!("{rel}.html")),
        root.join(format!("{rel}.json")),
        root.join(rel).join("index.html"),
    ]
    .into_iter()
    .find(|p| p.is_file() && p.extension().is_none_or(|e| e != "headers"))
}

/// Applies a sample page's side file `<file>.headers` to its response: `Name: value` lines
/// (`#` comments), the first line of a name replacing what the response had, later ones
/// adding to it; `Status: 404` sets the status. No side file: nothing changes.
pub(crate) fn side_fields(file: &Path, r: &mut Response<Full<Bytes>>) -> Result<(), &'static str> {
    let side = PathBuf::from(format!("{}.headers", file.display()));
    let Ok(fields) = std::fs::read_to_string(&side) else {
        return Ok(());
    };
    let mut named: Vec<header::HeaderName> = Vec::new();
    for line in fields
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .split_once(':')
            .ok_or("a .headers line is not `Name: value`\n")?;
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("status") {
            *r.status_mut() = value
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or("a bad Status in .headers\n")?;
            continue;
        }
        let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err("a bad field in .headers\n");
        };
        if named.contains(&n) {
            r.headers_mut().append(n, v);
        } else {
            r.headers_mut().insert(n.clone(), v);
            named.push(n);
        }
    }
    Ok(())
}

fn serve_file(root: &Path, req: Request<Incoming>, n: u64) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let resp = |status: StatusCode, ctype: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r.headers_mut()
            .insert("x-origin-request", HeaderValue::from(n));
        r
    };
    if bad_sample_path(path) {
        return resp(
            StatusCode::BAD_REQUEST,
            "text/plain",
            Bytes::from_static(b"bad path\n"),
        );
    }
    let rel = path.trim_start_matches('/');
    let Some(file) = sample_file(root, path) else {
        return resp(
            StatusCode::NOT_FOUND,
            "text/html; charset=utf-8",
            Bytes::from_static(b"<h1>Not found</h1>\n"),
        );
    };
    let Ok(body) = std::fs::read(&file) else {
        return resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from_static(b"read error\n"),
        );
    };
    let ctype = sample_type(&file);
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..16]);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        let mut r = resp(StatusCode::NOT_MODIFIED, ctype, Bytes::new());
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex etag"),
        );
        return r;
    }
    let mut r = resp(StatusCode::OK, ctype, Bytes::from(body));
    r.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    // The cart is per user: the origin says so, and sets a session cookie.
    if rel.starts_with("cart") || rel.starts_with("checkout") {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        r.headers_mut().insert(
            header::SET_COOKIE,
            format!("session={n}; Path=/; HttpOnly")
                .parse::<HeaderValue>()
                .expect("cookie"),
        );
    } else {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        if let Some(keys) = surrogate_keys(rel) {
            r.headers_mut().insert("surrogate-key", keys);
        }
    }
    // A page's side file has the last word (the same files `tessera test` serves).
    if let Err(why) = side_fields(&file, &mut r) {
        return resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from_static(why.as_bytes()),
        );
    }
    r
}

/// Tags for purging, as a CMS would send them: the section (`products`) and the item
/// (`products-123`), from the path.
fn surrogate_keys(rel: &str) -> Option<HeaderValue> {
    let mut segs = rel.split('/').filter(|s| !s.is_empty());
    let section = segs.next()?;
    let item: Vec<&str> = segs.collect();
    let keys = if item.is_empty() {
        section.to_owned()
    } else {
        format!("{section} {section}-{}", item.join("-"))
    };
    HeaderValue::from_str(&keys).ok()
}
