//! `tessera simulate`: an access log replayed through a site's scripts and a simulated
//! cache, to predict a key script's hit ratio before it is deployed.
//!
//! Each line becomes a request that takes the real path offline (`proxy::replay`): routing,
//! `on_request`, the key, the store with its size bound, RFC 9111 admission and the script's
//! `cache_policy`. The origin is made up from the line (its status and size) and a header
//! set the user chooses, so TTLs come from the script's policy over those headers. Time is a
//! virtual clock set to each line's timestamp, so a day of traffic replays in seconds.

pub mod genlog;
pub mod log;
mod report;
mod tally;

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub use report::{render_text, LogSummary, Report};
use tally::Tally;

use crate::clock::Clock;
use crate::config::Config;
use crate::proxy::{Shared, Synthetic};
use log::{LineError, LogRecord, MAX_LINE_BYTES};

/// The header set of made-up responses when none is given: five minutes, shareable.
pub const DEFAULT_RESPONSE_HEADERS: &[(&str, &str)] = &[("cache-control", "max-age=300")];

/// How often dead objects are swept from a nearly full store, in log time.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// What every simulation of one run shares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cache size, instead of the config's.
    pub cache_bytes: Option<u64>,
    /// Headers of every made-up origin response (`Content-Length` and `Content-Type` are
    /// added per line).
    pub response_headers: HeaderMap,
    /// The host of lines that logged none (Common and Combined Log Format).
    pub host: Option<String>,
    /// How many keys the report lists.
    pub top: usize,
}

impl Default for Options {
    fn default() -> Options {
        let mut response_headers = HeaderMap::new();
        for (n, v) in DEFAULT_RESPONSE_HEADERS {
            response_headers.insert(*n, HeaderValue::from_static(v));
        }
        Options {
            cache_bytes: None,
            response_headers,
            host: None,
            top: 10,
        }
    }
}

/// One configuration's simulated cache, fed the log line by line.
pub struct Simulation {
    shared: Arc<Shared>,
    clock: Clock,
    opts: Options,
    host: String,
    country: Option<HeaderName>,
    swept: SystemTime,
    tally: Tally,
}

impl Simulation {
    /// Builds the config's scripts and an empty store; `label` names it in the report.
    pub async fn new(mut config: Config, opts: &Options, label: String) -> anyhow::Result<Self> {
        if let Some(b) = opts.cache_bytes {
            config.cache.max_bytes = b;
        }
        let host = opts
            .host
            .clone()
            .or_else(|| {
                config
                    .sites
                    .iter()
                    .flat_map(|s| &s.hosts)
                    .find(|h| *h != "*")
                    .cloned()
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let country = config.server.client_country_header.clone();
        let clock = Clock::frozen_at(SystemTime::UNIX_EPOCH);
        let cache_bytes = config.cache.max_bytes;
        let shared = crate::proxy::build_for_replay(config, clock.clone()).await?;
        Ok(Simulation {
            shared,
            clock,
            opts: opts.clone(),
            host,
            country,
            swept: SystemTime::UNIX_EPOCH,
            tally: Tally::new(label, cache_bytes),
        })
    }

    /// Replays one logged request.
    pub async fn feed(&mut self, rec: &LogRecord) {
        self.clock.advance_to(rec.time);
        let now = self.clock.now();
        if now.duration_since(self.swept).unwrap_or_default() >= SWEEP_EVERY {
            self.swept = now;
            let store = &self.shared.store;
            // Dead objects only matter when they crowd live ones out.
            if store.weighted_size() > store.max_bytes() / 10 * 9 {
                store.drop_useless();
            }
        }
        let Some(req) = self.request(rec) else {
            self.tally.unroutable();
            return;
        };
        let content_type = rec
            .content_type
            .as_deref()
            .or_else(|| guess_content_type(&rec.target));
        let origin = Synthetic {
            status: rec.status,
            bytes: rec.bytes,
            headers: &self.opts.response_headers,
            content_type,
        };
        let peer = SocketAddr::new(rec.client.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0);
        match crate::proxy::replay(&self.shared, req, peer, &origin).await {
            Some(done) => self.tally.record(rec, now, &done),
            None => self.tally.unroutable(),
        }
    }

    fn request(&self, rec: &LogRecord) -> Option<http::Request<()>> {
        let host = rec.host.as_deref().unwrap_or(&self.host);
        let uri: http::Uri = format!("http://{host}{}", rec.target).parse().ok()?;
        let method = http::Method::from_bytes(rec.method.as_bytes()).ok()?;
        let mut b = http::Request::builder().method(method).uri(uri);
        let headers = b.headers_mut()?;
        let mut put = |name: HeaderName, v: Option<&str>| {
            if let Some(v) = v.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        };
        put(header::USER_AGENT, rec.user_agent.as_deref());
        put(header::COOKIE, rec.cookie.as_deref());
        if let Some(h) = &self.country {
            put(h.clone(), rec.country.as_deref());
        }
        b.body(()).ok()
    }

    /// The figures so far.
    pub fn report(&self) -> Report {
        self.tally
            .report(self.opts.top, self.shared.store.entry_count())
    }
}

/// A `Content-Type` for a path, from its extension, so type-based policies see one.
pub fn guess_content_type(target: &str) -> Option<&'static str> {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let name = path.rsplit('/').next().unwrap_or("");
    let ext = match name.rsplit_once('.') {
        Some((_, e)) => e.to_ascii_lowercase(),
        None if path.starts_with("/api/") => return Some("application/json"),
        None => return Some("text/html; charset=utf-8"),
    };
    Some(match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "xml" => "application/xml",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// Reads `reader` to its end, feeding every simulation each request in turn;
/// `progress` hears how many bytes were read, now and then.
pub async fn run(
    mut reader: impl BufRead,
    sims: &mut [Simulation],
    mut progress: impl FnMut(u64),
) -> std::io::Result<LogSummary> {
    let mut summary = LogSummary::default();
    let mut line = Vec::with_capacity(512);
    let mut read = 0u64;
    loop {
        let (n, too_long) = next_line(&mut reader, &mut line)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        summary.lines += 1;
        let parsed = if too_long {
            Err(LineError::TooLong)
        } else {
            log::parse_line(&String::from_utf8_lossy(&line))
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(rec)) => {
                summary.saw(rec.time);
                for s in sims.iter_mut() {
                    s.feed(&rec).await;
                }
            }
            Err(e) => summary.skip(e),
        }
        if summary.lines % 4096 == 0 {
            progress(read);
        }
    }
    progress(read);
    Ok(summary)
}

/// Reads one line into `buf` (without its end), keeping at most [`MAX_LINE_BYTES`] + 1 of
/// it: a log without newlines never grows memory. Returns bytes consumed and whether the
/// line was longer than that.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((consumed, too_long));
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        let body = &chunk[..take - usize::from(done)];
        buf.extend_from_slice(&body[..body.len().min(room)]);
        too_long |= body.len() > room;
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_counted_in_bytes() {
        let long = "y".repeat(MAX_LINE_BYTES * 3);
        let text = format!("a\n{long}\nb");
        let mut r = std::io::BufReader::with_capacity(1024, text.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (2, false));
        assert_eq!(buf, b"a");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (long.len() + 1, true));
        assert_eq!(buf.len(), MAX_LINE_BYTES + 1);
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (1, false));
        assert_eq!(buf, b"b");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (0, false));
    }

    #[test]
    fn content_types_are_guessed_from_extensions() {
        assert_eq!(guess_content_type("/"), Some("text/html; charset=utf-8"));
        assert_eq!(guess_content_type("/img/a.JPG?w=1"), Some("image/jpeg"));
        assert_eq!(guess_content_type("/api/stock"), Some("application/json"));
        assert_eq!(guess_content_type("/f.unknown"), None);
    }
}
