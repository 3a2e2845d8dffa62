//! Host side of the script's imports: log, clock and random (`wit/host.wit`).
//!
//! Every call counts against the request's host-call budget; past it the call traps, so a
//! script cannot turn the host's log or clock into a denial of service.

use super::bindings::tessera::edge::{clock, html_types, log, random, types};
use super::engine::State;

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
        Ok(self.clock.now_ms())
    }
}

impl random::Host for State {
    fn random_u64(&mut self) -> anyhow::Result<u64> {
        self.meter.hostcall()?;
        Ok(rand::random())
    }
}

impl types::Host for State {}

impl html_types::Host for State {}
