//! Host side of the script's imports: log, clock and random (`wit/host.wit`).

use super::bindings::tessera::edge::{clock, log, random, types};
use super::engine::State;

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        // Bound what one request can write to the log: a script is not a firehose.
        if self.log_lines >= MAX_LOG_LINES {
            return;
        }
        self.log_lines += 1;
        let message: String = message.chars().take(MAX_LOG_CHARS).collect();
        let (site, id) = (&*self.site, &*self.request_id);
        match level {
            log::Level::Trace => tracing::trace!(site, request_id = id, "script: {message}"),
            log::Level::Debug => tracing::debug!(site, request_id = id, "script: {message}"),
            log::Level::Info => tracing::info!(site, request_id = id, "script: {message}"),
            log::Level::Warn => tracing::warn!(site, request_id = id, "script: {message}"),
            log::Level::Error => tracing::error!(site, request_id = id, "script: {message}"),
        }
    }
}

const MAX_LOG_LINES: u32 = 100;
const MAX_LOG_CHARS: usize = 2048;

impl clock::Host for State {
    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

impl random::Host for State {
    fn random_u64(&mut self) -> u64 {
        rand::random()
    }
}

impl types::Host for State {}
