//! A loaded, linked script: compiled once, described once, instantiated per request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use super::bindings::{EdgeScript, HookSet};
use super::engine::{GuestEngine, Limiter, State};
use super::exports::{Bound, Exports};
use super::loader::{load_component, root_cause, CompiledCache, LoadError};
use super::memo::{KeyMemo, Reads};
use super::meter::{BudgetExceeded, HostcallsExceeded, Meter};
use super::pool::{Busy, InstancePool};
use super::reuse::Shelf;
use crate::clock::Clock;
use crate::config::Limits;
use crate::observe::LogBudget;

/// The hooks of the `tessera:edge/hooks` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on-request`
    OnRequest,
    /// `cache-key`
    CacheKey,
    /// `cache-policy`
    CachePolicy,
    /// `on-response`
    OnResponse,
    /// `html-handlers`
    HtmlHandlers,
    /// `on-element`, `on-element-end`, `on-text`, `on-comment`, `on-document-end`
    Html,
}

impl Hook {
    /// Every hook, in declaration order (`hook as usize` indexes it).
    pub const ALL: [Hook; 6] = [
        Hook::OnRequest,
        Hook::CacheKey,
        Hook::CachePolicy,
        Hook::OnResponse,
        Hook::HtmlHandlers,
        Hook::Html,
    ];

    /// The hook's WIT name, for logs and `Cache-Status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::CacheKey => "cache-key",
            Hook::CachePolicy => "cache-policy",
            Hook::OnResponse => "on-response",
            Hook::HtmlHandlers => "html-handlers",
            Hook::Html => "html",
        }
    }

    fn flag(self) -> HookSet {
        match self {
            Hook::OnRequest => HookSet::ON_REQUEST,
            Hook::CacheKey => HookSet::CACHE_KEY,
            Hook::CachePolicy => HookSet::CACHE_POLICY,
            Hook::OnResponse => HookSet::ON_RESPONSE,
            Hook::HtmlHandlers | Hook::Html => HookSet::HTML,
        }
    }
}

/// Why a hook produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The request's script time ran out.
    #[error("exceeded its time budget of {0:?}")]
    Timeout(Duration),
    /// The script asked for more memory than its cap.
    #[error("exceeded its memory cap of {0} MiB")]
    OutOfMemory(usize),
    /// Too many calls into the host (log, clock, random).
    #[error("made too many host calls")]
    Hostcalls,
    /// The script trapped (panic, unreachable, bad access, invalid canonical ABI value…).
    #[error("trapped: {0}")]
    Trap(String),
    /// The answer broke a rule or a cap (see `sanitize`).
    #[error("returned an unusable answer: {0}")]
    Output(String),
    /// No instance became free in time.
    #[error("got no instance: {0}")]
    Busy(Busy),
    /// The instance could not be created.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl GuestError {
    /// A short token for `Cache-Status` detail and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestError::Timeout(_) => "timeout",
            GuestError::OutOfMemory(_) => "memory",
            GuestError::Hostcalls => "hostcalls",
            GuestError::Trap(_) => "trap",
            GuestError::Output(_) => "output",
            GuestError::Busy(_) => "busy",
            GuestError::Instantiate(_) => "instantiate",
        }
    }
}

/// A script ready to serve requests: linked once, instantiated per request.
pub struct Script {
    pre: InstancePre<State>,
    /// Its exports, found and checked once.
    exports: Exports,
    /// Keeps the epoch ticker running for as long as the script can be called.
    _engine: GuestEngine,
    limits: Limits,
    site: Arc<str>,
    name: Arc<str>,
    digest: String,
    /// `site/file@version`, short: names this build in metrics and on the status page.
    id: String,
    hooks: HookSet,
    keep_state: bool,
    /// Rate limit for failure warnings: a hostile script must not flood the log.
    warnings: LogBudget,
    /// Selectors this script asked for, compiled once.
    selectors: std::sync::Mutex<std::collections::HashMap<String, lol_html::Selector>>,
    /// The site's script settings and rate-limit counters.
    env: Arc<super::ScriptEnv>,
    /// Instances kept between requests (`instance_reuse`; empty by default).
    shelf: Shelf,
    /// What `cache-key` reads of a request, if the script limits it.
    key_reads: Option<Reads>,
    /// Its `cache-key` answers, where the site allows it (`key_memo_kib`).
    memo: Option<KeyMemo>,
}

impl Script {
    /// Loads, compiles, links and describes the wasm at `path` for `site`, with no
    /// `script_config` and counters of its own.
    pub async fn load(
        engine: &GuestEngine,
        pool: &InstancePool,
        path: &Path,
        compiled: Option<&CompiledCache>,
        site: &str,
        limits: Limits,
    ) -> Result<Script, LoadError> {
        let env = Arc::default();
        Script::load_with(engine, pool, path, compiled, site, limits, env).await
    }

    /// [`Script::load`] with the site's settings and the process's counters.
    pub async fn load_with(
        engine: &GuestEngine,
        pool: &InstancePool,
        path: &Path,
        compiled: Option<&CompiledCache>,
        site: &str,
        limits: Limits,
        env: Arc<super::ScriptEnv>,
    ) -> Result<Script, LoadError> {
        let fail = |problem: String| LoadError {
            path: path.to_owned(),
            problem,
        };
        let (component, digest) = load_component(engine, path, compiled)?;
        let mut linker = Linker::<State>::new(engine.engine());
        EdgeScript::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| {
            fail(format!(
                "cannot link host imports: {}",
                root_cause(&e.into())
            ))
        })?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            let msg = root_cause(&e.into());
            if msg.contains("wasi:") {
                fail(format!("imports WASI ({msg}), which scripts cannot use; build for wasm32-unknown-unknown with linker wasm-component-ld"))
            } else {
                fail(format!("does not fit the tessera:edge@0.5.0 world (rebuild it with this version of tessera-sdk): {msg}"))
            }
        })?;
        let exports = Exports::find(&component).map_err(|e| {
            fail(format!(
                "does not export the tessera:edge@0.5.0 world (rebuild it with this version of tessera-sdk): {e}"
            ))
        })?;
        let name: Arc<str> = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into();
        let mut script = Script {
            pre,
            exports,
            _engine: engine.clone(),
            limits,
            id: format!("{site}/{name}@{}", &digest[..digest.len().min(12)]),
            site: site.into(),
            name,
            digest,
            hooks: HookSet::empty(),
            keep_state: false,
            warnings: LogBudget::new(WARNINGS_PER_SECOND),
            selectors: Default::default(),
            env,
            shelf: Shelf::new(site, 0),
            key_reads: None,
            memo: None,
        };
        // The script says once which hooks it implements; a hook it does not implement is
        // never called, and one it does is called for every request.
        let _slot = pool
            .admit(1)
            .await
            .map_err(|e| fail(format!("cannot describe it: {e}")))?;
        let meter = Arc::new(Meter::new(limits.cpu));
        let mut instance = script
            .instantiate("load".into(), meter.clone(), Clock::system())
            .await
            .map_err(|e| fail(format!("cannot be instantiated: {e}")))?;
        script
            .exports
            .check(&mut instance.store, &instance.raw)
            .map_err(|e| {
                fail(format!(
                    "does not fit the tessera:edge@0.5.0 world (rebuild it with this version of tessera-sdk): {e}"
                ))
            })?;
        let info = meter
            .run(instance.bindings.describe(&mut instance.store))
            .await
            .map_err(|e| {
                fail(format!(
                    "`describe` failed: {}",
                    classify(&script, e.into())
                ))
            })?;
        script.hooks = info.hooks;
        script.keep_state = info.keep_state;
        script.key_reads = info
            .key_reads
            .map(Reads::from_wire)
            .transpose()
            .map_err(|e| fail(format!("`describe` returned {e}")))?;
        script.memo = KeyMemo::for_script(&script, limits.key_memo_bytes);
        // Reuse takes both sides: the site allows it and the script declares that it keeps
        // nothing of one request for the next. A script written for fresh instances could
        // carry one visitor's data into another's answer.
        if limits.reuse > 0 {
            if info.reusable {
                script.shelf = Shelf::new(site, limits.reuse);
            } else {
                tracing::warn!(
                    site,
                    script = &*script.name,
                    "instance_reuse is set but the script does not declare `reusable` \
                     (#[tessera_sdk::script(reusable)]): every request gets a fresh instance"
                );
            }
        }
        Ok(script)
    }

    /// What `cache-key` reads, if the script declared it (it then sees only that).
    pub(super) fn key_reads(&self) -> Option<&Reads> {
        self.key_reads.as_ref()
    }

    /// What `cache-key` reads, in words (`path, query, header x-ab`), if declared.
    pub fn key_reads_text(&self) -> Option<String> {
        self.key_reads.as_ref().map(Reads::to_string)
    }

    /// The memo of `cache-key` answers, if the site keeps one for this script.
    pub(super) fn memo(&self) -> Option<&KeyMemo> {
        self.memo.as_ref()
    }

    /// Whether the script implements `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.hooks.contains(hook.flag())
    }

    /// Whether the script asked to keep one instance for the whole request.
    pub fn keeps_state(&self) -> bool {
        self.keep_state
    }

    /// The SHA-256 of its wasm, hex: which build is running.
    pub fn version(&self) -> &str {
        &self.digest
    }

    /// `site/file@version` (version shortened): which build of which script.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The site the script belongs to.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The file name the script was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of the hooks the script implements, for `check` and logs.
    pub fn hook_names(&self) -> Vec<&'static str> {
        [
            Hook::OnRequest,
            Hook::CacheKey,
            Hook::CachePolicy,
            Hook::OnResponse,
            Hook::HtmlHandlers,
        ]
        .into_iter()
        .filter(|h| self.implements(*h))
        .map(Hook::as_str)
        .collect()
    }

    /// A selector this script asked for, compiled once and then reused.
    pub fn selector(&self, css: &str) -> Result<lol_html::Selector, String> {
        /// Distinct selectors kept per script; beyond, they are compiled per request.
        const KEPT: usize = 256;
        let mut cache = self.selectors.lock().expect("selector cache lock");
        if let Some(s) = cache.get(css) {
            return Ok(s.clone());
        }
        let s: lol_html::Selector = css
            .parse()
            .map_err(|e| format!("invalid selector {css:?}: {e}"))?;
        if cache.len() < KEPT {
            cache.insert(css.to_owned(), s.clone());
        }
        Ok(s)
    }

    /// The site's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A fresh instance whose store counts time against `meter`.
    pub(super) async fn instantiate(
        &self,
        request_id: Arc<str>,
        meter: Arc<Meter>,
        clock: Clock,
    ) -> Result<Instance, GuestError> {
        let limits = Limiter::new(
            StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(8)
                .build(),
        );
        let state = State {
            limits,
            site: self.site.clone(),
            request_id,
            meter: meter.clone(),
            clock,
            env: self.env.clone(),
            impure: false,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Checked at every tick while guest code runs: past the budget the call traps;
        // otherwise an async call yields so other connections get the thread.
        store.epoch_deadline_callback(|ctx| {
            let m = &ctx.data().meter;
            m.to_cpu();
            if m.exceeded() {
                return Err(BudgetExceeded(m.budget()).into());
            }
            Ok(if m.in_sync_call() {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        let raw = meter
            .run(self.pre.instantiate_async(&mut store))
            .await
            .map_err(|e| classify(self, e.into()))?;
        Ok(Instance {
            store,
            bindings: self.exports.on(raw),
            raw,
            served: 1,
            clean: true,
            retired: false,
        })
    }

    /// An instance for a request: one kept from an earlier request when the site reuses
    /// them and one is free, else a fresh one.
    pub(super) async fn instance(
        &self,
        request_id: Arc<str>,
        meter: Arc<Meter>,
        clock: Clock,
    ) -> Result<Instance, GuestError> {
        let Some(mut kept) = self.shelf.take() else {
            return self.instantiate(request_id, meter, clock).await;
        };
        let state = kept.store.data_mut();
        state.request_id = request_id;
        state.meter = meter;
        state.clock = clock;
        kept.store.set_epoch_deadline(1);
        kept.served += 1;
        Ok(kept)
    }

    /// Gives back an instance a request is done with: kept for the next request if the
    /// site reuses instances and this one may serve again, else dropped.
    pub(super) fn release(&self, instance: Instance) {
        self.shelf.put(instance);
    }

    /// Logs a failed hook, at most a few lines per second per script.
    pub(super) fn warn(&self, hook: Hook, request_id: &str, e: &GuestError) {
        if let Some(suppressed) = self.warnings.take() {
            tracing::warn!(
                site = &*self.site,
                script = &*self.name,
                hook = hook.as_str(),
                request_id,
                suppressed,
                "script {e}"
            );
        }
    }
}

/// A live instance and its store.
pub(super) struct Instance {
    pub store: Store<State>,
    /// The script's exports on it.
    pub bindings: Bound,
    /// The instance itself.
    pub raw: wasmtime::component::Instance,
    /// Requests it has served, this one included.
    pub served: u32,
    /// False while a call is under way: an instance whose call was cut off (its request
    /// went away while the guest ran) is never used again.
    pub clean: bool,
    /// Set when it may finish this request but never serve another (it ran an HTML rewrite).
    pub retired: bool,
}

/// Sorts a wasmtime error into what went wrong, in words for the log.
pub(super) fn classify(script: &Script, e: anyhow::Error) -> GuestError {
    if e.downcast_ref::<BudgetExceeded>().is_some() {
        return GuestError::Timeout(script.limits.cpu);
    }
    if e.downcast_ref::<HostcallsExceeded>().is_some() {
        return GuestError::Hostcalls;
    }
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return GuestError::Timeout(script.limits.cpu);
    }
    let msg = root_cause(&e);
    if msg.contains("growing memory") || msg.contains("memory growth failure") {
        return GuestError::OutOfMemory(script.limits.memory_bytes >> 20);
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return GuestError::Trap(trap.to_string());
    }
    GuestError::Trap(first_line(&msg))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// Lines of warning per second a script's failures may write to the log.
const WARNINGS_PER_SECOND: u64 = 5;

#[cfg(test)]
mod tests {
    use super::Hook;

    #[test]
    fn every_hook_is_listed_at_its_own_index() {
        for (i, h) in Hook::ALL.iter().enumerate() {
            assert_eq!(*h as usize, i, "{}", h.as_str());
        }
    }
}
