//! One request's scripts: a chain of sessions sharing a budget, instances made on demand.
//!
//! Instances are taken from the pool when a hook needs one and given back by [`Chain::park`]
//! when the request is about to wait on something outside the scripts (the origin, another
//! request's fetch). The next phase then gets a fresh instance, unless a script of the chain
//! declared `keep-state`: its request keeps its instances from first hook to last.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::bindings::{html_types, types};
use super::convert;
use super::html::{self, Content, ElementMutation, ElementView, Handler, NodeMutation};
use super::meter::Meter;
use super::pool::{InstancePool, Slots};
use super::sanitize::{self, Direction, Synthetic};
use super::script::{classify, GuestError, Hook, Instance, Script};
use crate::cache::Decision;
use crate::clock::Clock;
use crate::request::ClientRequest;

/// Records one call's script time in the metrics and on the status board.
fn observe(script: &Script, hook: Hook, took: std::time::Duration) {
    // Each hook's series is taken from the family once: a call records its time without a
    // label allocation, lock and hash.
    static SERIES: std::sync::OnceLock<
        [prometheus_client::metrics::histogram::Histogram; Hook::ALL.len()],
    > = std::sync::OnceLock::new();
    let series = SERIES.get_or_init(|| {
        Hook::ALL.map(|h| {
            crate::observe::metrics()
                .guest_seconds
                .get_or_create(&crate::observe::HookLabel {
                    hook: h.as_str().to_owned(),
                })
                .clone()
        })
    });
    series[hook as usize].observe(took.as_secs_f64());
    crate::observe::board().guest(script.id(), took);
}

/// A hook that failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    /// The hook.
    pub hook: Hook,
    /// What went wrong.
    pub error: GuestError,
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.hook.as_str(), self.error)
    }
}

impl std::error::Error for HookFailure {}

impl HookFailure {
    /// The `Cache-Status` detail for this failure, e.g. `script-error; cache-key; trap`.
    pub fn detail(&self) -> String {
        format!(
            "script-error; {}; {}",
            self.hook.as_str(),
            self.error.kind()
        )
    }
}

/// What `on-request` decided.
#[derive(Debug)]
pub enum OnRequest {
    /// Go on (the request's headers carry the scripts' edits).
    Continue,
    /// Answer with this response at once.
    Respond(Synthetic),
    /// Go on past the cache, straight to the origin.
    Pass,
}

/// The scripts of one site, as one request uses them.
pub struct Chain {
    scripts: Arc<[Arc<Script>]>,
    pool: Arc<InstancePool>,
    request_id: Arc<str>,
    clock: Clock,
    meter: Arc<Meter>,
    live: Vec<Option<Instance>>,
    slots: Option<Slots>,
    keep_state: bool,
    /// The WIT view of the request and the request version it was built from.
    view: Option<(u64, types::Request)>,
}

impl Chain {
    /// A chain for one request; nothing is instantiated until a hook needs it.
    pub fn new(
        scripts: Arc<[Arc<Script>]>,
        pool: Arc<InstancePool>,
        request_id: Arc<str>,
        clock: Clock,
    ) -> Chain {
        let budget = scripts.first().map(|s| s.limits().cpu).unwrap_or_default();
        let keep_state = scripts.iter().any(|s| s.keeps_state());
        Chain {
            live: (0..scripts.len()).map(|_| None).collect(),
            scripts,
            pool,
            request_id,
            clock,
            meter: Arc::new(Meter::new(budget)),
            slots: None,
            keep_state,
            view: None,
        }
    }

    /// Whether any script of the chain implements `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.scripts.iter().any(|s| s.implements(hook))
    }

    /// Gives the instances back before a wait, unless a script keeps state.
    pub fn park(&mut self) {
        if !self.keep_state {
            self.release();
            self.slots = None;
        }
    }

    /// Hands each live instance back to its script (kept for reuse, or dropped).
    fn release(&mut self) {
        for (script, live) in self.scripts.iter().zip(self.live.iter_mut()) {
            if let Some(instance) = live.take() {
                script.release(instance);
            }
        }
    }

    /// `on-request` of each script in order; each sees the previous one's edits. One that
    /// answers ends the chain; one that passes lets the rest run (a later one may still
    /// answer), and the request then goes past the cache. When a script fails, the
    /// earlier ones' edits are undone: a request let past the failure (`fallback`) goes on
    /// as it arrived, never with an edit meant for a request an earlier `pass` kept out of
    /// the cache (that `pass` is lost with the chain).
    pub async fn on_request(&mut self, req: &mut ClientRequest) -> Result<OnRequest, HookFailure> {
        let mut arrived = None;
        let verdict = self.on_request_chain(req, &mut arrived).await;
        if let (Err(_), Some((headers, version))) = (&verdict, arrived) {
            req.headers = headers;
            req.version = version;
            // A kept view may have been made from the edited headers under a version the
            // restored request could reach again.
            self.view = None;
        }
        verdict
    }

    /// The chain of [`Chain::on_request`]; `arrived` gets the request's headers and version
    /// as they were before the first edit.
    async fn on_request_chain(
        &mut self,
        req: &mut ClientRequest,
        arrived: &mut Option<(http::HeaderMap, u64)>,
    ) -> Result<OnRequest, HookFailure> {
        let mut pass = false;
        for i in self.indices(Hook::OnRequest) {
            let view = self.view(req);
            let answer = self
                .call(i, Hook::OnRequest, async |b, s| {
                    b.on_request(s, &view).await
                })
                .await;
            self.view = Some((req.version, view));
            let (edits, passes) = match answer? {
                types::RequestAction::Respond(r) => {
                    let s =
                        sanitize::synthetic(r).map_err(|v| self.refused(i, Hook::OnRequest, v))?;
                    return Ok(OnRequest::Respond(s));
                }
                types::RequestAction::Continue(edits) => (edits, false),
                types::RequestAction::Pass(edits) => (edits, true),
            };
            pass |= passes;
            let edits = sanitize::edits(edits, Direction::Request)
                .map_err(|v| self.refused(i, Hook::OnRequest, v))?;
            if !edits.is_empty() {
                arrived.get_or_insert_with(|| (req.headers.clone(), req.version));
                edits.apply(&mut req.headers);
                req.version += 1;
            }
        }
        Ok(if pass {
            OnRequest::Pass
        } else {
            OnRequest::Continue
        })
    }

    /// `cache-key` through the chain: each script refines the previous key. A script that
    /// declared what it reads sees only that, and its answer may come from its memo.
    pub async fn cache_key(
        &mut self,
        req: &ClientRequest,
        default_key: String,
    ) -> Result<String, HookFailure> {
        let mut key = default_key;
        for i in self.indices(Hook::CacheKey) {
            let script = self.scripts[i].clone();
            let reads = script.key_reads();
            // A memo only exists for a script that declared its reads.
            let memo = script
                .memo()
                .zip(reads)
                .map(|(m, r)| (m, r.memo_key(req, &key)));
            if let Some(answer) = memo
                .as_ref()
                .and_then(|(m, k)| k.as_ref().and_then(|k| m.get(k)))
            {
                key = answer.as_ref().into();
                continue;
            }
            let view = match reads {
                Some(r) => r.view(req),
                None => self.view(req),
            };
            let first = self.live[i].is_none();
            let answer = self
                .call(i, Hook::CacheKey, async |b, s| {
                    // `impure` is never reset: on a fresh instance it also covers whatever
                    // ran when it was instantiated (a start function may read the clock).
                    let answer = b.cache_key(s, &view, &key).await?;
                    Ok((answer, s.data().impure))
                })
                .await;
            if reads.is_none() {
                self.view = Some((req.version, view));
            }
            let (answer, impure) = answer?;
            key = sanitize::key(answer).map_err(|v| self.refused(i, Hook::CacheKey, v))?;
            if let Some((memo, memo_key)) = memo {
                // Only a call that nothing could have shaped but what it was given: a fresh
                // instance, no earlier hook on it, no clock, randomness or counters read.
                let fresh = first && self.live[i].as_ref().is_some_and(|l| l.served == 1);
                memo.put(memo_key, &key, fresh && !impure);
            }
        }
        Ok(key)
    }

    /// `cache-policy` through the chain: each script's decision is the next one's proposal.
    pub async fn cache_policy(
        &mut self,
        req: &ClientRequest,
        status: StatusCode,
        headers: &HeaderMap,
        proposed: Decision,
    ) -> Result<Decision, HookFailure> {
        let mut decision = proposed;
        let head = convert::response_head(status, headers);
        for i in self.indices(Hook::CachePolicy) {
            let view = self.view(req);
            let wire = convert::decision(&decision);
            let answer = self
                .call(i, Hook::CachePolicy, async |b, s| {
                    b.cache_policy(s, &view, &head, &wire).await
                })
                .await;
            self.view = Some((req.version, view));
            decision =
                sanitize::decision(answer?).map_err(|v| self.refused(i, Hook::CachePolicy, v))?;
        }
        Ok(decision)
    }

    /// `on-response` of each script in order, applied to the client-facing headers.
    pub async fn on_response(
        &mut self,
        req: &ClientRequest,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), HookFailure> {
        for i in self.indices(Hook::OnResponse) {
            let view = self.view(req);
            let head = convert::response_head(status, headers);
            let answer = self
                .call(i, Hook::OnResponse, async |b, s| {
                    b.on_response(s, &view, &head).await
                })
                .await;
            self.view = Some((req.version, view));
            let edits = sanitize::edits(answer?, Direction::Response)
                .map_err(|v| self.refused(i, Hook::OnResponse, v))?;
            edits.apply(headers);
        }
        Ok(())
    }

    /// `html-handlers` of each script: `(script index, handler)` for every handler asked for.
    pub async fn html_handlers(
        &mut self,
        req: &ClientRequest,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Vec<(usize, Vec<Handler>)>, HookFailure> {
        let head = convert::response_head(status, headers);
        let mut out = Vec::new();
        for i in self.indices(Hook::HtmlHandlers) {
            let view = self.view(req);
            let answer = self
                .call(i, Hook::HtmlHandlers, async |b, s| {
                    b.html_handlers(s, &view, &head).await
                })
                .await;
            self.view = Some((req.version, view));
            let script = self.scripts[i].clone();
            let list = html::handlers(answer?, |css| script.selector(css))
                .map_err(|v| self.refused(i, Hook::HtmlHandlers, v))?;
            if !list.is_empty() {
                out.push((i, list));
            }
        }
        Ok(out)
    }

    /// `on-element` of script `i`, called synchronously from the rewriter.
    pub fn on_element(
        &mut self,
        i: usize,
        handler: u32,
        el: ElementView,
    ) -> Result<Vec<ElementMutation>, HookFailure> {
        let el: html_types::Element = el.into();
        let got = self.call_sync(i, |b, s| b.on_element(s, handler, &el))?;
        html::element_mutations(got).map_err(|v| self.refused(i, Hook::Html, v))
    }

    /// `on-element-end` of script `i`.
    pub fn on_element_end(
        &mut self,
        i: usize,
        handler: u32,
        tag: &str,
    ) -> Result<Vec<NodeMutation>, HookFailure> {
        let got = self.call_sync(i, |b, s| b.on_element_end(s, handler, tag))?;
        html::node_mutations(got).map_err(|v| self.refused(i, Hook::Html, v))
    }

    /// `on-text` of script `i`.
    pub fn on_text(
        &mut self,
        i: usize,
        handler: u32,
        text: &str,
        last: bool,
    ) -> Result<Vec<NodeMutation>, HookFailure> {
        let got = self.call_sync(i, |b, s| b.on_text(s, handler, text, last))?;
        html::node_mutations(got).map_err(|v| self.refused(i, Hook::Html, v))
    }

    /// `on-comment` of script `i`.
    pub fn on_comment(
        &mut self,
        i: usize,
        handler: u32,
        text: &str,
    ) -> Result<Vec<NodeMutation>, HookFailure> {
        let got = self.call_sync(i, |b, s| b.on_comment(s, handler, text))?;
        html::node_mutations(got).map_err(|v| self.refused(i, Hook::Html, v))
    }

    /// `on-document-end` of script `i`.
    pub fn on_document_end(&mut self, i: usize) -> Result<Vec<Content>, HookFailure> {
        let got = self.call_sync(i, |b, s| b.on_document_end(s))?;
        html::contents(got).map_err(|v| self.refused(i, Hook::Html, v))
    }

    /// Calls an `html` callback synchronously on the instance `html-handlers` ran on.
    fn call_sync<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(
            &super::exports::Bound,
            &mut wasmtime::Store<super::engine::State>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, HookFailure> {
        if self.meter.exceeded() {
            let error = GuestError::Timeout(self.meter.budget());
            return Err(self.failed(i, Hook::Html, error));
        }
        let meter = self.meter.clone();
        let Some(live) = self.live[i].as_mut() else {
            let error = GuestError::Instantiate("instance gone after an earlier failure".into());
            return Err(self.failed(i, Hook::Html, error));
        };
        let before = meter.used();
        // A synchronous call cannot be cut off midway, so `clean` stays as it is.
        let result = meter
            .run_sync(|| f(&live.bindings, &mut live.store))
            .map_err(|e| classify(&self.scripts[i], e.into()));
        observe(
            &self.scripts[i],
            Hook::Html,
            meter.used().saturating_sub(before),
        );
        result.map_err(|error| self.failed(i, Hook::Html, error))
    }

    /// Moves the chain out (to the task that streams a rewrite), leaving an empty one. Its
    /// instances are not kept for another request afterwards: a rewrite may end halfway
    /// through a document (the client left, the markup broke), with the script mid-way.
    pub fn take(&mut self) -> Chain {
        for live in self.live.iter_mut().flatten() {
            live.retired = true;
        }
        let empty = Chain {
            scripts: Arc::from(Vec::new()),
            pool: self.pool.clone(),
            request_id: self.request_id.clone(),
            clock: self.clock.clone(),
            meter: self.meter.clone(),
            live: Vec::new(),
            slots: None,
            keep_state: false,
            view: None,
        };
        std::mem::replace(self, empty)
    }

    fn indices(&self, hook: Hook) -> Vec<usize> {
        (0..self.scripts.len())
            .filter(|i| self.scripts[*i].implements(hook))
            .collect()
    }

    /// The WIT view of `req`, rebuilt only when its headers changed.
    fn view(&mut self, req: &ClientRequest) -> types::Request {
        match self.view.take() {
            Some((version, view)) if version == req.version => view,
            _ => convert::request(req),
        }
    }

    /// Calls a hook on script `i`, instantiating it first if needed.
    async fn call<R>(
        &mut self,
        i: usize,
        hook: Hook,
        f: impl AsyncFnOnce(
            &super::exports::Bound,
            &mut wasmtime::Store<super::engine::State>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, HookFailure> {
        // A request whose script time is spent runs no more hooks: checked here, not only at
        // epoch ticks, so the outcome does not depend on when the next tick happens to fall.
        if self.meter.exceeded() {
            let error = GuestError::Timeout(self.meter.budget());
            return Err(self.failed(i, hook, error));
        }
        let result = match self.instance(i).await {
            Err(e) => Err(e),
            Ok(()) => {
                let meter = self.meter.clone();
                let live = self.live[i].as_mut().expect("instance just made");
                let before = meter.used();
                live.clean = false;
                let r = meter
                    .run(f(&live.bindings, &mut live.store))
                    .await
                    .map_err(|e| classify(&self.scripts[i], e.into()));
                live.clean = true;
                observe(&self.scripts[i], hook, meter.used().saturating_sub(before));
                r
            }
        };
        result.map_err(|error| self.failed(i, hook, error))
    }

    async fn instance(&mut self, i: usize) -> Result<(), GuestError> {
        if self.slots.is_none() {
            let n = self.scripts.len() as u32;
            self.slots = Some(self.pool.admit(n).await.map_err(GuestError::Busy)?);
        }
        if self.live[i].is_none() {
            let instance = self.scripts[i]
                .instance(
                    self.request_id.clone(),
                    self.meter.clone(),
                    self.clock.clone(),
                )
                .await?;
            self.live[i] = Some(instance);
        }
        Ok(())
    }

    fn refused(&mut self, i: usize, hook: Hook, v: sanitize::Violation) -> HookFailure {
        self.failed(i, hook, GuestError::Output(v.0))
    }

    /// Records a failure: the instance is dropped (a trapped instance cannot be entered
    /// again); a later hook of this request gets a fresh one.
    fn failed(&mut self, i: usize, hook: Hook, error: GuestError) -> HookFailure {
        self.live[i] = None;
        crate::observe::metrics()
            .guest_errors
            .get_or_create(&crate::observe::GuestErrorLabel {
                site: self.scripts[i].site().to_owned(),
                hook: hook.as_str().to_owned(),
                kind: error.kind().to_owned(),
            })
            .inc();
        self.scripts[i].warn(hook, &self.request_id, &error);
        HookFailure { hook, error }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.release();
    }
}
