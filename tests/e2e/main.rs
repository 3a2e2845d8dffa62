//! End-to-end tests: a real origin and the real `tessera` binary on ephemeral loopback ports.

mod caching;
mod cli;
mod conformance;
mod core;
mod guests;
mod support;
