//! End-to-end tests: a real origin and the real `tessera` binary (or the library server, on a
//! virtual clock) on ephemeral loopback ports.

mod admin;
mod caching;
mod cli;
mod compress;
mod concurrency;
mod conformance;
mod core;
mod disk;
mod edges;
mod esi;
mod examples;
mod fleet;
mod guests;
mod hostile_clients;
mod hostile_scripts;
mod http2;
mod key_command;
mod memo;
mod purge;
mod reload;
mod reuse;
mod rewrite;
mod scaffold;
mod sharing;
mod simulate;
mod streaming;
mod support;
mod test_command;
mod tiers;
mod tls_listener;
mod tls_origin;
mod upgrade;
mod watch_build;
