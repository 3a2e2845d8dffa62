//! Guest scripts: engine, component loading, per-request instances and their limits.

mod bindings;
mod capabilities;
mod convert;
mod engine;
mod loader;
mod script;

pub use bindings::types::{
    CacheDecision, ClientInfo, DeviceClass, HeaderEdits, Request, RequestAction, ResponseHead,
    SyntheticResponse,
};
pub use convert::{device_class, header_list, response_head};
pub use engine::{GuestEngine, PoolSize};
pub use loader::{LoadError, WASMTIME_VERSION};
pub use script::{GuestError, Hook, Script, Session};
