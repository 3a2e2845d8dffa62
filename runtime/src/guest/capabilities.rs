//! Host side of the script's imports: log, clock, random, config, rate-limit (`wit/host.wit`).
//!
//! Every call counts against the request's host-call budget; past it the call traps, so a
//! script cannot turn the host's log or clock into a denial of service. Clock, randomness
//! and rate-limit counters mark the store impure: an answer that used them is not memoised.

use super::bindings::tessera::edge::{clock, config, html_types, log, random, rate_limit, types};
use super::engine::State;
use super::env::{MAX_KEY_BYTES, MAX_WINDOW_SECS};

/// Log lines one request's scripts may write; more are dropped silently.
const MAX_LOG_LINES: u32 = 100;
/// Longest log line kept, in characters.
const MAX_LOG_CHARS: usize = 2048;

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> anyhow::Result<()> {
        self.meter.hostcall()?;
        if !self.meter.log_line(MAX_LOG_LINES) {
            return Ok(());
        }
        let message: String = message
            .chars()
            .take(MAX_LOG_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let (site, id) = (&*self.site, &*self.request_id);
        match level {
            log::Level::Trace => tracing::trace!(site, request_id = id, "script: {message}"),
            log::Level::Debug => tracing::debug!(site, request_id = id, "script: {message}"),
            log::Level::Info => tracing::info!(site, request_id = id, "script: {message}"),
            log::Level::Warn => tracing::warn!(site, request_id = id, "script: {message}"),
            log::Level::Error => tracing::error!(site, request_id = id, "script: {message}"),
        }
        Ok(())
    }
}

impl clock::Host for State {
    fn now_ms(&mut self) -> anyhow::Result<u64> {
        self.meter.hostcall()?;
        self.impure = true;
        Ok(self.clock.now_ms())
    }
}

impl random::Host for State {
    fn random_u64(&mut self) -> anyhow::Result<u64> {
        self.meter.hostcall()?;
        self.impure = true;
        Ok(rand::random())
    }
}

impl config::Host for State {
    fn get(&mut self, name: String) -> anyhow::Result<Option<String>> {
        self.meter.hostcall()?;
        Ok(self.env.config.get(&name).map(str::to_owned))
    }
}

impl rate_limit::Host for State {
    fn check(&mut self, key: String, limit: u32, window_secs: u32) -> anyhow::Result<bool> {
        self.meter.hostcall()?;
        self.impure = true;
        // A script bug, not a request's fault: trap, so the hook fails (closed).
        anyhow::ensure!(
            key.len() <= MAX_KEY_BYTES,
            "rate-limit key longer than {MAX_KEY_BYTES} bytes"
        );
        anyhow::ensure!(
            (1..=MAX_WINDOW_SECS).contains(&window_secs),
            "rate-limit window of {window_secs} s (1 to {MAX_WINDOW_SECS})"
        );
        let now = self.clock.now_ms();
        Ok(self
            .env
            .limiter
            .check(&self.site, &key, limit, window_secs, now))
    }
}

impl types::Host for State {}

impl html_types::Host for State {}
