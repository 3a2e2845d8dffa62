//! Guest scripts: engine, loading, the instance pool, per-request chains and their limits.
//!
//! WIT types stay inside this module: the rest of the host hands in a [`ClientRequest`]
//! and gets back host types ([`HeaderEdits`], [`Synthetic`], [`crate::cache::Decision`]),
//! checked against the caps in [`sanitize`].
//!
//! [`ClientRequest`]: crate::request::ClientRequest

mod bindings;
mod capabilities;
mod convert;
mod engine;
mod env;
mod exports;
pub mod html;
mod loader;
mod memo;
mod meter;
mod pool;
mod reuse;
pub mod sanitize;
mod script;
mod session;

pub use engine::{GuestEngine, PoolSize};
pub use env::{RateLimiter, ScriptEnv};
pub use loader::{CompiledCache, LoadError, WASMTIME_VERSION};
pub use memo::MAX_HEADER_READS;
pub use meter::MAX_HOSTCALLS;
pub use pool::{Busy, InstancePool};
pub use sanitize::{HeaderEdits, Synthetic};
pub use script::{GuestError, Hook, Script};
pub use session::{Chain, HookFailure, OnRequest};
