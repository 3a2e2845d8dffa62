//! The HTTP cache: keys, storage, freshness (RFC 9111), Vary, coalescing and Cache-Status.

pub mod coalesce;
pub mod conditional;
mod decision;
pub mod directives;
pub mod disk;
mod entry;
pub mod fields;
pub mod freshness;
pub mod index;
pub mod key;
pub mod payload;
#[cfg(test)]
mod props;
pub mod status;
pub mod store;
pub mod tiers;
pub mod vary;

pub use decision::Decision;
pub use fields::Fields;
pub use payload::Payload;
pub use status::{CacheStatus, Fwd};
pub use store::{Entry, Extras, Lookup, Purge, Store, StoreKey};
