//! A loaded, linked script and the per-request session that instantiates it lazily.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{types, EdgeScript, EdgeScriptPre};
use super::engine::{GuestEngine, State, EPOCH_TICK};
use super::loader::{load_component, root_cause, LoadError};
use crate::config::Limits;

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
}

impl Hook {
    /// The hook's WIT name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::CacheKey => "cache-key",
            Hook::CachePolicy => "cache-policy",
            Hook::OnResponse => "on-response",
        }
    }
}

/// Why a hook produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    /// The request's CPU budget ran out (epoch deadline).
    #[error("exceeded its CPU budget of {0:?}")]
    Timeout(Duration),
    /// The script asked for more memory than its cap.
    #[error("exceeded its memory cap of {0} MiB")]
    OutOfMemory(usize),
    /// The script trapped (panic, unreachable, bad access…).
    #[error("trapped: {0}")]
    Trap(String),
    /// No instance could be made (pool exhausted, start function failed).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// An earlier hook of this request failed; the instance is gone.
    #[error("skipped after an earlier failure in this request")]
    Poisoned,
}

/// A script ready to serve requests: linked once, instantiated per request.
pub struct Script {
    pre: EdgeScriptPre<State>,
    /// Keeps the epoch ticker running for as long as the script can be called.
    _engine: GuestEngine,
    limits: Limits,
    site: Arc<str>,
    /// Hooks the script left to the host's default; learnt from its first `none`.
    defaulted: [AtomicBool; 4],
}

impl Script {
    /// Loads, compiles and links the wasm at `path` for `site`.
    pub fn load(
        engine: &GuestEngine,
        path: &Path,
        compiled_dir: &Path,
        site: &str,
        limits: Limits,
    ) -> Result<Script, LoadError> {
        let fail = |problem: String| LoadError {
            path: path.to_owned(),
            problem,
        };
        let component = load_component(engine, path, compiled_dir)?;
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
                fail(format!("does not fit the tessera:edge world: {msg}"))
            }
        })?;
        let pre = EdgeScriptPre::new(pre).map_err(|e| {
            fail(format!(
                "does not export tessera:edge/hooks@0.1.0: {}",
                root_cause(&e.into())
            ))
        })?;
        Ok(Script {
            pre,
            _engine: engine.clone(),
            limits,
            site: site.into(),
            defaulted: Default::default(),
        })
    }

    /// Instantiates the script once with no request, proving it links and starts.
    pub fn smoke_test(self: &Arc<Script>) -> Result<(), GuestError> {
        let mut s = Session::new(self.clone(), "check".into());
        s.ensure_instance().map(|_| ())
    }

    fn defaulted(&self, hook: Hook) -> bool {
        self.defaulted[hook as usize].load(Ordering::Relaxed)
    }
}

struct Live {
    store: Store<State>,
    bindings: EdgeScript,
}

/// One request's use of a script: the instance is made by the first hook that needs it.
pub struct Session {
    script: Arc<Script>,
    request_id: Arc<str>,
    live: Option<Live>,
    failed: bool,
    budget: Duration,
}

impl Session {
    /// A session for one request; nothing is instantiated yet.
    pub fn new(script: Arc<Script>, request_id: Arc<str>) -> Session {
        let budget = script.limits.cpu;
        Session {
            script,
            request_id,
            live: None,
            failed: false,
            budget,
        }
    }

    /// Calls `on-request`.
    pub fn on_request(
        &mut self,
        req: &types::Request,
    ) -> Result<Option<types::RequestAction>, GuestError> {
        self.call(Hook::OnRequest, |b, s| {
            b.tessera_edge_hooks().call_on_request(s, req)
        })
    }

    /// Calls `cache-key`.
    pub fn cache_key(
        &mut self,
        req: &types::Request,
        default_key: &str,
    ) -> Result<Option<String>, GuestError> {
        self.call(Hook::CacheKey, |b, s| {
            b.tessera_edge_hooks().call_cache_key(s, req, default_key)
        })
    }

    /// Calls `cache-policy`.
    pub fn cache_policy(
        &mut self,
        req: &types::Request,
        resp: &types::ResponseHead,
        proposed: &types::CacheDecision,
    ) -> Result<Option<types::CacheDecision>, GuestError> {
        self.call(Hook::CachePolicy, |b, s| {
            b.tessera_edge_hooks()
                .call_cache_policy(s, req, resp, proposed)
        })
    }

    /// Calls `on-response`.
    pub fn on_response(
        &mut self,
        req: &types::Request,
        resp: &types::ResponseHead,
    ) -> Result<Option<types::HeaderEdits>, GuestError> {
        self.call(Hook::OnResponse, |b, s| {
            b.tessera_edge_hooks().call_on_response(s, req, resp)
        })
    }

    /// Whether the script may still have something to say for `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        !self.script.defaulted(hook)
    }

    fn ensure_instance(&mut self) -> Result<&mut Live, GuestError> {
        if self.live.is_none() {
            let limits = StoreLimitsBuilder::new()
                .memory_size(self.script.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(4)
                .build();
            let state = State {
                limits,
                site: self.script.site.clone(),
                request_id: self.request_id.clone(),
                log_lines: 0,
            };
            let mut store = Store::new(self.script.pre.engine(), state);
            store.limiter(|s| &mut s.limits);
            store.set_epoch_deadline(ticks(self.budget));
            let bindings = self
                .script
                .pre
                .instantiate(&mut store)
                .map_err(|e| self.classify(e.into()))?;
            self.live = Some(Live { store, bindings });
        }
        Ok(self.live.as_mut().expect("instance just made"))
    }

    fn call<R>(
        &mut self,
        hook: Hook,
        f: impl FnOnce(&EdgeScript, &mut Store<State>) -> wasmtime::Result<Option<R>>,
    ) -> Result<Option<R>, GuestError> {
        if self.script.defaulted(hook) {
            return Ok(None);
        }
        if self.failed {
            return Err(GuestError::Poisoned);
        }
        let result = self.ensure_instance().map(|_| ());
        let outcome = match result {
            Err(e) => Err(e),
            Ok(()) => {
                let budget = self.budget;
                let live = self.live.as_mut().expect("instance exists");
                live.store.set_epoch_deadline(ticks(budget));
                let started = Instant::now();
                let r = f(&live.bindings, &mut live.store);
                self.budget = budget.saturating_sub(started.elapsed());
                r.map_err(|e| self.classify(e.into()))
            }
        };
        match outcome {
            Ok(None) => {
                self.script.defaulted[hook as usize].store(true, Ordering::Relaxed);
                Ok(None)
            }
            Ok(some) => Ok(some),
            Err(e) => {
                // A trapped instance cannot be entered again; later hooks fall to the policy.
                self.failed = true;
                self.live = None;
                tracing::warn!(
                    site = &*self.script.site,
                    hook = hook.as_str(),
                    request_id = &*self.request_id,
                    "script {e}"
                );
                Err(e)
            }
        }
    }

    fn classify(&self, e: anyhow::Error) -> GuestError {
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return GuestError::Timeout(self.script.limits.cpu);
        }
        let msg = root_cause(&e);
        if msg.contains("growing memory") || msg.contains("memory growth failure") {
            return GuestError::OutOfMemory(self.script.limits.memory_bytes >> 20);
        }
        if let Some(trap) = e.downcast_ref::<Trap>() {
            return GuestError::Trap(trap.to_string());
        }
        if msg.contains("wasm trap") || msg.contains("wasm backtrace") {
            return GuestError::Trap(first_line(&msg));
        }
        GuestError::Instantiate(first_line(&msg))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}
