//! End-to-end tests: a real origin and the real `tessera` binary (or the library server, on a
//! virtual clock) on ephemeral loopback ports.

mod caching;
mod cli;
mod concurrency;
mod conformance;
mod core;
mod edges;
mod esi;
mod guests;
mod hostile_clients;
mod hostile_scripts;
mod rewrite;
mod sharing;
mod support;
