//! ESI assembly, a stage of delivery: every include of a page fetched at once through the
//! cache path, the output stitched in document order and streamed as it becomes ready.
//!
//! Output is held back until the page's first include has resolved, so that a failure
//! there still becomes a 502; after that, bytes stream as soon as the next segment is
//! ready, and a later failure (an include with no `alt`, no `onerror="continue"` and no
//! enclosing `esi:try`) cuts the stream, so the client sees an incomplete response, never a
//! truncated one that looks whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::template::{Include, Node, Template};
use super::vars::{Escape, VarSource};
use super::{active, prepare};
use crate::cache::directives::effective_response_control;
use crate::encoding::{self, Coding};
use crate::origin::{collect_body, BoxError, OutBody};
use crate::proxy::{driver, Answer, Exchange, Generation, Refusal, Shared, SiteRuntime};
use crate::request::ClientRequest;

/// Why an include produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncludeError {
    /// `esi:include` without `src`.
    #[error("include without src")]
    NoSrc,
    /// `src` is not a URL this proxy can resolve.
    #[error("bad src {0:?}")]
    BadSrc(String),
    /// `src` names a host that is neither the page's nor allowed (no SSRF).
    #[error("host {0} is not allowed for fragments")]
    Forbidden(String),
    /// The page includes itself, directly or through other fragments.
    #[error("include loop at {0}")]
    Loop(String),
    /// Nested deeper than `max_depth`.
    #[error("nested deeper than {0}")]
    TooDeep(usize),
    /// More includes than `max_includes` for one page.
    #[error("more than {0} includes")]
    TooMany(usize),
    /// The fragment's status was not 2xx.
    #[error("fragment answered {0}")]
    Status(u16),
    /// The fragment did not arrive in `fragment_timeout`.
    #[error("fragment timed out")]
    Timeout,
    /// The fragment's body could not be read or decoded.
    #[error("fragment body: {0}")]
    Body(String),
}

/// Everything a fragment fetch needs, owned: fetches run as tasks of their own.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    gen: Arc<Generation>,
    site: Arc<SiteRuntime>,
    req: Arc<ClientRequest>,
    id: Arc<str>,
    /// `authority` + path of the page being assembled, for relative `src`.
    authority: String,
    path: String,
    depth: usize,
    /// Pages above this one (and itself), as `authority/path?query`: an include of one of
    /// them is a loop.
    ancestors: Arc<Vec<String>>,
    /// Includes left for the whole page tree.
    budget: Arc<AtomicUsize>,
}

/// A fragment's content.
struct Part(Bytes);

enum Item {
    Bytes(Bytes),
    /// A fetch that finished before it had to wait (a cached fragment).
    Done {
        result: Result<Part, IncludeError>,
        continue_on_error: bool,
    },
    Fetch {
        task: AbortOnDropHandle<Result<Part, IncludeError>>,
        continue_on_error: bool,
    },
    Try {
        attempt: Vec<Item>,
        except: Vec<Node>,
    },
}

/// The delivery stage: assembles the answer if it is an ESI page, else passes it on.
pub async fn stage(x: &Exchange, mut a: Answer) -> Answer {
    let site = &x.site;
    let limit = x.gen.config.cache.max_object_bytes;
    let template = match template_of(site, &mut a, x.req.path(), limit).await {
        Ok(Some(t)) => t,
        Ok(None) => return a,
        Err(e) => {
            tracing::warn!(request_id = &*x.id, "esi page unusable: {e}");
            return crate::proxy::refused(Refusal::IncludeFailed(e.to_string()));
        }
    };
    for w in &template.warnings {
        tracing::debug!(request_id = &*x.id, "esi markup: {w}");
    }
    let (mut parts, _) = a.response.into_parts();
    assembled_headers(&mut parts.headers);
    if x.req.method == Method::HEAD {
        a.response = Response::from_parts(parts, crate::origin::empty());
        return a;
    }
    let page = format!("{}{}", x.req.authority.to_ascii_lowercase(), x.req.uri);
    let ctx = Ctx {
        shared: x.shared.clone(),
        gen: x.gen.clone(),
        site: x.site.clone(),
        req: Arc::new(x.req.clone()),
        id: x.id.clone(),
        authority: x.req.authority.clone(),
        path: x.req.path().to_owned(),
        depth: 0,
        ancestors: Arc::new(vec![page]),
        budget: Arc::new(AtomicUsize::new(site.cfg.esi.max_includes)),
    };
    // Room for a whole page's segments: a page whose parts are all cached is produced in one
    // go, without a task of its own.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, BoxError>>(256);
    let producer = crate::html::run_or_spawn(async move {
        let items = plan(&ctx, &template.nodes);
        let mut sink = Sink::streaming(tx.clone());
        let result = match emit(&ctx, items, &mut sink).await {
            Ok(()) => sink.finish().await,
            Err(e) => Err(e),
        };
        if let Err(Emit::Failed(e)) = result {
            let _ = tx.send(Err(Box::new(e) as BoxError)).await;
        }
    });
    // The head goes out with the first bytes; a failure before them is still a 502.
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            tracing::warn!(request_id = &*x.id, "esi include failed: {e}");
            return crate::proxy::refused(Refusal::IncludeFailed(e.to_string()));
        }
        None => Bytes::new(),
    };
    let guard = producer.err().map(AbortOnDropHandle::new);
    let stream = futures_util::stream::unfold(
        (Some(first), rx, guard),
        |(first, mut rx, guard)| async move {
            if let Some(b) = first {
                return Some((Ok(hyper::body::Frame::data(b)), (None, rx, guard)));
            }
            match rx.recv().await {
                Some(Ok(b)) => Some((Ok(hyper::body::Frame::data(b)), (None, rx, guard))),
                Some(Err(e)) => Some((Err(e), (None, rx, guard))),
                None => None,
            }
        },
    );
    let body: OutBody = http_body_util::StreamBody::new(stream).boxed();
    a.response = Response::from_parts(parts, body);
    a.esi = None;
    a
}

/// Headers of an assembled page. Its parts have lifetimes of their own, known only after
/// the head is sent, and `esi:vars` / `esi:choose` make it per request: clients may keep it
/// but must ask again, and no shared cache downstream may store it.
fn assembled_headers(h: &mut HeaderMap) {
    for name in [
        header::CONTENT_LENGTH,
        header::ETAG,
        header::LAST_MODIFIED,
        header::EXPIRES,
        header::AGE,
        header::ACCEPT_RANGES,
        header::CONTENT_RANGE,
        header::CONTENT_ENCODING,
    ] {
        h.remove(name);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}

/// The template of an answer: the stored one, or (for an ESI response that was not stored)
/// one parsed now from its whole body. `None`: not an ESI page.
async fn template_of(
    site: &SiteRuntime,
    a: &mut Answer,
    path: &str,
    limit: u64,
) -> Result<Option<Arc<Template>>, IncludeError> {
    if let Some(t) = a.esi.take() {
        return Ok(Some(t));
    }
    let status = a.response.status();
    if !status.is_success() || status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let ctl = effective_response_control(a.response.headers(), &site.targets);
    if !active(&site.cfg.esi, ctl.surrogate_content.as_deref(), path) {
        return Ok(None);
    }
    let body = std::mem::replace(a.response.body_mut(), crate::origin::empty());
    let bytes = collect_body(body, limit)
        .await
        .map_err(IncludeError::Body)?;
    let (bytes, template) = prepare(bytes, a.response.headers_mut(), limit)
        .map_err(|e| IncludeError::Body(e.to_string()))?;
    *a.response.body_mut() = crate::origin::full(bytes);
    Ok(Some(Arc::new(template)))
}

fn source(ctx: &Ctx) -> VarSource<'_> {
    VarSource {
        headers: &ctx.req.headers,
        query: ctx.req.query(),
        host: &ctx.req.authority,
    }
}

/// Walks the template for this request: choices made, includes started (all at once).
fn plan(ctx: &Ctx, nodes: &[Node]) -> Vec<Item> {
    let mut items = Vec::new();
    plan_into(ctx, nodes, &mut items);
    items
}

fn plan_into(ctx: &Ctx, nodes: &[Node], out: &mut Vec<Item>) {
    for n in nodes {
        match n {
            Node::Text(b) => out.push(Item::Bytes(b.clone())),
            Node::VarText(i) => out.push(Item::Bytes(Bytes::from(
                i.render(&source(ctx), Escape::Html),
            ))),
            Node::Include(inc) => out.push(start(ctx, inc)),
            Node::Choose { whens, otherwise } => {
                let src = source(ctx);
                match whens.iter().find(|(test, _)| test.eval(&src)) {
                    Some((_, branch)) => plan_into(ctx, branch, out),
                    None => plan_into(ctx, otherwise, out),
                }
            }
            Node::Try { attempt, except } => out.push(Item::Try {
                attempt: plan(ctx, attempt),
                except: except.clone(),
            }),
        }
    }
}

fn start(ctx: &Ctx, inc: &Include) -> Item {
    let src = source(ctx);
    let url = inc.src.as_ref().map(|s| s.render(&src, Escape::Url));
    let alt = inc.alt.as_ref().map(|s| s.render(&src, Escape::Url));
    let ctx = ctx.clone();
    let work = async move {
        let first = match &url {
            Some(u) => fetch(&ctx, u).await,
            None => Err(IncludeError::NoSrc),
        };
        match (first, alt) {
            (Err(_), Some(alt)) => fetch(&ctx, &alt).await,
            (r, _) => r,
        }
    };
    match crate::html::run_or_spawn(work) {
        Ok(result) => Item::Done {
            result,
            continue_on_error: inc.continue_on_error,
        },
        Err(task) => Item::Fetch {
            task: AbortOnDropHandle::new(task),
            continue_on_error: inc.continue_on_error,
        },
    }
}

enum Emit {
    Failed(IncludeError),
    /// The client went away.
    Gone,
}

/// Where output goes: a bounded channel to the client, or a buffer (for `esi:try` and
/// nested pages, whose output must be whole before it is used). Segments are kept as the
/// shared slices they are (literal text of the stored body, fragment bodies): no copies.
struct Sink {
    parts: Vec<Bytes>,
    tx: Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    hold: bool,
}

impl Sink {
    fn streaming(tx: mpsc::Sender<Result<Bytes, BoxError>>) -> Sink {
        Sink {
            parts: Vec::new(),
            tx: Some(tx),
            hold: true,
        }
    }

    fn buffer() -> Sink {
        Sink {
            parts: Vec::new(),
            tx: None,
            hold: true,
        }
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.parts.push(b);
        }
    }

    /// Everything buffered, as one piece.
    fn whole(self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.into_iter().next().expect("one part"),
            _ => {
                let mut b = BytesMut::with_capacity(self.parts.iter().map(Bytes::len).sum());
                self.parts.iter().for_each(|p| b.extend_from_slice(p));
                b.freeze()
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Emit> {
        if self.hold || self.parts.is_empty() {
            return Ok(());
        }
        if let Some(tx) = self.tx.clone() {
            for part in std::mem::take(&mut self.parts) {
                tx.send(Ok(part)).await.map_err(|_| Emit::Gone)?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), Emit> {
        self.hold = false;
        self.flush().await
    }
}

async fn emit(ctx: &Ctx, items: Vec<Item>, sink: &mut Sink) -> Result<(), Emit> {
    for item in items {
        match item {
            Item::Bytes(b) => sink.push(b),
            Item::Done {
                result,
                continue_on_error,
            } => {
                match result {
                    Ok(Part(b)) => sink.push(b),
                    Err(_) if continue_on_error => {}
                    Err(e) => return Err(Emit::Failed(e)),
                }
                sink.hold = false;
            }
            Item::Fetch {
                task,
                continue_on_error,
            } => {
                sink.flush().await?;
                let got = task
                    .await
                    .unwrap_or_else(|e| Err(IncludeError::Body(format!("fetch task: {e}"))));
                match got {
                    Ok(Part(b)) => sink.push(b),
                    Err(_) if continue_on_error => {}
                    Err(e) => return Err(Emit::Failed(e)),
                }
                // The first include has resolved: from now on, bytes go out as they come.
                sink.hold = false;
            }
            Item::Try { attempt, except } => {
                let mut inner = Sink::buffer();
                match Box::pin(emit(ctx, attempt, &mut inner)).await {
                    Ok(()) => sink.parts.extend(inner.parts),
                    Err(Emit::Gone) => return Err(Emit::Gone),
                    Err(Emit::Failed(_)) => {
                        let items = plan(ctx, &except);
                        Box::pin(emit(ctx, items, sink)).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fetches one fragment through the cache path of the site serving it.
async fn fetch(ctx: &Ctx, src: &str) -> Result<Part, IncludeError> {
    let esi = &ctx.site.cfg.esi;
    let (authority, target) = resolve(&ctx.authority, &ctx.path, src)?;
    let host = authority
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let page_host = ctx
        .authority
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if host != page_host && !esi.allow_hosts.contains(&host) {
        return Err(IncludeError::Forbidden(host));
    }
    let Some(site) = ctx.gen.sites.iter().find(|s| s.cfg.matches(&host)).cloned() else {
        return Err(IncludeError::Forbidden(host));
    };
    let key = format!("{}{}", authority.to_ascii_lowercase(), target);
    if ctx.ancestors.contains(&key) {
        return Err(IncludeError::Loop(key));
    }
    if ctx.depth + 1 > esi.max_depth {
        return Err(IncludeError::TooDeep(esi.max_depth));
    }
    let left = ctx.budget.fetch_sub(1, Ordering::Relaxed);
    if left == 0 || left > esi.max_includes {
        ctx.budget.store(0, Ordering::Relaxed);
        return Err(IncludeError::TooMany(esi.max_includes));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| IncludeError::BadSrc(src.to_owned()))?;
    let req = ClientRequest {
        method: Method::GET,
        scheme: ctx.req.scheme,
        authority: authority.clone(),
        uri,
        headers: fragment_headers(&ctx.req.headers, &authority),
        client: ctx.req.client.clone(),
        version: 0,
    };
    let child = Ctx {
        site: site.clone(),
        authority,
        path: req.path().to_owned(),
        depth: ctx.depth + 1,
        ancestors: Arc::new(ctx.ancestors.iter().cloned().chain([key]).collect()),
        ..ctx.clone()
    };
    let timeout = esi.fragment_timeout;
    let limit = ctx.gen.config.cache.max_object_bytes;
    let work = async move {
        let mut a = driver::subrequest(
            child.shared.clone(),
            child.gen.clone(),
            site.clone(),
            req,
            child.id.clone(),
        )
        .await;
        let status = a.response.status();
        if !status.is_success() {
            return Err(IncludeError::Status(status.as_u16()));
        }
        let path = child.path.clone();
        if let Some(t) = template_of(&site, &mut a, &path, limit).await? {
            // A fragment that is itself an ESI page: assembled whole, then inserted.
            let mut sink = Sink::buffer();
            return match Box::pin(emit(&child, plan(&child, &t.nodes), &mut sink)).await {
                Ok(()) => Ok(Part(sink.whole())),
                Err(Emit::Failed(e)) => Err(e),
                Err(Emit::Gone) => Err(IncludeError::Timeout),
            };
        }
        let coding = Coding::of(a.response.headers())
            .ok_or_else(|| IncludeError::Body("unsupported content-encoding".into()))?;
        let body = collect_body(a.response.into_body(), limit)
            .await
            .map_err(IncludeError::Body)?;
        let body = match coding {
            Coding::Identity => body,
            c => Bytes::from(
                encoding::decode(&body, c, limit).map_err(|e| IncludeError::Body(e.to_string()))?,
            ),
        };
        Ok(Part(body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(IncludeError::Timeout))
}

/// A fragment request carries the client's context (cookies, language, agent) but asks for
/// the whole, unconditional, uncompressed representation.
fn fragment_headers(client: &HeaderMap, authority: &str) -> HeaderMap {
    let mut h = client.clone();
    for name in crate::proxy::headers::CONDITIONAL {
        h.remove(name);
    }
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::TRANSFER_ENCODING,
        header::ACCEPT_ENCODING,
        header::EXPECT,
    ] {
        h.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(authority) {
        h.insert(header::HOST, v);
    }
    h
}

/// Resolves `src` against the page (RFC 3986 §5.2, dot segments removed); returns the
/// authority and the path with query.
fn resolve(authority: &str, page_path: &str, src: &str) -> Result<(String, String), IncludeError> {
    let bad = || IncludeError::BadSrc(src.to_owned());
    let src = src.trim();
    if src.is_empty()
        || src
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return Err(bad());
    }
    let (auth, rest) = if let Some(r) = src
        .strip_prefix("http://")
        .or_else(|| src.strip_prefix("https://"))
        .or_else(|| src.strip_prefix("//"))
    {
        let end = r.find(['/', '?']).unwrap_or(r.len());
        let (a, p) = r.split_at(end);
        // Checked as a client's Host is: it becomes the fragment's key and its Host.
        if a.is_empty() || !crate::request::valid_authority(a) {
            return Err(bad());
        }
        (
            a.to_owned(),
            if p.is_empty() {
                "/".to_owned()
            } else {
                p.to_owned()
            },
        )
    } else if src.starts_with('/') {
        (authority.to_owned(), src.to_owned())
    } else if src.contains("://") || src.starts_with('?') {
        return Err(bad());
    } else {
        let dir = &page_path[..page_path.rfind('/').map_or(0, |i| i + 1)];
        (authority.to_owned(), format!("{dir}{src}"))
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest.as_str(), None),
    };
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut target = format!("/{}", out.join("/"));
    if path.ends_with("/.") || path.ends_with("/..") {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    target
        .parse::<http::uri::PathAndQuery>()
        .map_err(|_| bad())?;
    Ok((auth, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_resolve_against_the_page_rfc3986_5_2() {
        let r = |s| resolve("shop.test", "/news/story/1", s);
        assert_eq!(r("/h").unwrap(), ("shop.test".into(), "/h".into()));
        assert_eq!(
            r("teaser?id=2").unwrap(),
            ("shop.test".into(), "/news/story/teaser?id=2".into())
        );
        assert_eq!(r("../../x").unwrap(), ("shop.test".into(), "/x".into()));
        assert_eq!(
            r("../../../../x").unwrap(),
            ("shop.test".into(), "/x".into())
        );
        assert_eq!(
            r("http://frag.test/a").unwrap(),
            ("frag.test".into(), "/a".into())
        );
        assert_eq!(r("//frag.test").unwrap(), ("frag.test".into(), "/".into()));
        for bad in [
            "",
            "a b",
            "http://user@evil/",
            "javascript://x",
            "?q",
            "http:///x",
            "/a\nb",
            "http://frag.test:abc/x",
            "http://frag.test:1:2/x",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }
}
