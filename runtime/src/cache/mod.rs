//! The HTTP cache: keys, storage, freshness (RFC 9111), Vary, coalescing and Cache-Status.

pub mod coalesce;
pub mod conditional;
pub mod directives;
pub mod freshness;
pub mod key;
pub mod status;
pub mod store;
pub mod vary;

pub use status::{CacheStatus, Fwd};
pub use store::{Entry, Lookup, Store};
