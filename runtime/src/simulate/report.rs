//! What a simulation found, as data (`--json`) and as text for a person (one column per
//! simulated configuration, side by side).

use std::fmt::Write;
use std::time::SystemTime;

use serde::Serialize;

use super::log::LineError;

/// How many skipped lines are quoted with their reason.
const QUOTED_ERRORS: usize = 5;

/// What was read from the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSummary {
    /// Lines read (blank and comment lines included).
    pub lines: u64,
    /// Lines that became requests.
    pub requests: u64,
    /// Lines that could not be read.
    pub skipped: u64,
    /// The first few of those, with their line number and reason.
    pub errors: Vec<String>,
    /// Time of the earliest request.
    #[serde(serialize_with = "rfc3339_opt")]
    pub first: Option<SystemTime>,
    /// Time of the latest request.
    #[serde(serialize_with = "rfc3339_opt")]
    pub last: Option<SystemTime>,
}

impl LogSummary {
    pub(super) fn saw(&mut self, t: SystemTime) {
        self.requests += 1;
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }

    pub(super) fn skip(&mut self, e: LineError) {
        self.skipped += 1;
        if self.errors.len() < QUOTED_ERRORS {
            self.errors.push(format!("line {}: {e}", self.lines));
        }
    }
}

/// How requests were answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Served {
    /// From cache, fresh.
    pub hit: u64,
    /// From cache, stale (stale-while-revalidate, stale-if-error).
    pub stale: u64,
    /// From the origin through the cache.
    pub miss: u64,
    /// From the origin past the cache (method, failed key).
    pub pass: u64,
    /// By the script's `on_request`.
    pub edge: u64,
    /// Refused by the proxy (failed script).
    pub refused: u64,
    /// No site serves the line's host, or its target is not a URI.
    pub unroutable: u64,
}

impl Served {
    /// Every request.
    pub fn total(&self) -> u64 {
        self.hit + self.stale + self.miss + self.pass + self.edge + self.refused + self.unroutable
    }
}

/// Requests in one stretch of log time.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Its start.
    #[serde(serialize_with = "rfc3339")]
    pub start: SystemTime,
    /// Its width in minutes.
    pub minutes: u64,
    /// Requests in it.
    pub requests: u64,
    /// Requests the origin got in it.
    pub origin_requests: u64,
}

/// One of the most requested keys.
#[derive(Debug, Clone, Serialize)]
pub struct TopKey {
    /// The key.
    pub key: String,
    /// Requests under it.
    pub requests: u64,
    /// Share of them served from cache.
    pub hit_ratio: f64,
}

/// A key component that splits the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// `user-agent`, `cookie`, `query:<name>`, `fragmentation`, `one-hit keys`.
    pub component: String,
    /// What was seen and what to do.
    pub message: String,
}

/// One configuration's predicted behaviour on the log.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which configuration (its scripts).
    pub label: String,
    /// The cache's size bound, in bytes.
    pub cache_bytes: u64,
    /// Requests replayed.
    pub requests: u64,
    /// How they were answered.
    pub served: Served,
    /// Share of requests served from cache, of those that needed content (hits, stale
    /// hits, misses and passes; answers by `on_request` and refusals are left out).
    pub hit_ratio: f64,
    /// The same, weighted by the logged body sizes.
    pub byte_hit_ratio: f64,
    /// Requests the origin got (misses, passes, background refreshes).
    pub origin_requests: u64,
    /// Responses stored.
    pub stored: u64,
    /// Objects in the store at the end.
    pub objects_at_end: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Distinct URLs (host + path + query as logged).
    pub urls: u64,
    /// Keys requested only once.
    pub keys_requested_once: u64,
    /// The most requested keys.
    pub top_keys: Vec<TopKey>,
    /// Requests and origin requests over time.
    pub timeline: Vec<Bucket>,
    /// Components that split the cache.
    pub warnings: Vec<Warning>,
}

fn stamp(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&stamp(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&stamp(*t)),
        None => s.serialize_none(),
    }
}

/// `1234567` → `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

fn mib(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{} GiB", b >> 30)
    } else {
        format!("{:.0} MiB", b as f64 / f64::from(1 << 20))
    }
}

/// The reports side by side, for a person.
pub fn render_text(log: &LogSummary, reports: &[Report]) -> String {
    let mut out = String::new();
    let span = match (log.first, log.last) {
        (Some(f), Some(l)) => format!(" from {} to {}", stamp(f), stamp(l)),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "log: {} requests{span} ({} lines, {} skipped)",
        thousands(log.requests),
        thousands(log.lines),
        thousands(log.skipped)
    );
    for e in &log.errors {
        let _ = writeln!(out, "  skipped {e}");
    }
    out.push('\n');
    let width = reports
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .clamp(14, 72);
    let row = |out: &mut String, name: &str, cells: Vec<String>| {
        let _ = write!(out, "{name:<26}");
        for c in cells {
            let _ = write!(out, "  {c:>width$}");
        }
        out.push('\n');
    };
    let pair = |a: u64, b: u64| format!("{} / {}", thousands(a), thousands(b));
    type Cell<'a> = Box<dyn Fn(&Report) -> String + 'a>;
    let mut rows: Vec<(&str, Cell)> = vec![
        ("", Box::new(|r| r.label.chars().take(72).collect())),
        ("cache size", Box::new(|r| mib(r.cache_bytes))),
        ("hit ratio (requests)", Box::new(|r| percent(r.hit_ratio))),
        ("hit ratio (bytes)", Box::new(|r| percent(r.byte_hit_ratio))),
        (
            "origin requests",
            Box::new(|r| thousands(r.origin_requests)),
        ),
        (
            "  hits / stale hits",
            Box::new(|r| pair(r.served.hit, r.served.stale)),
        ),
        (
            "  misses / passes",
            Box::new(|r| pair(r.served.miss, r.served.pass)),
        ),
        (
            "  by script / refused",
            Box::new(|r| pair(r.served.edge, r.served.refused)),
        ),
    ];
    if reports.iter().any(|r| r.served.unroutable > 0) {
        rows.push((
            "  no site for host",
            Box::new(|r| thousands(r.served.unroutable)),
        ));
    }
    rows.extend([
        (
            "distinct keys",
            Box::new(|r: &Report| thousands(r.keys)) as Cell,
        ),
        ("distinct URLs", Box::new(|r| thousands(r.urls))),
        (
            "keys requested once",
            Box::new(|r| thousands(r.keys_requested_once)),
        ),
        ("responses stored", Box::new(|r| thousands(r.stored))),
        (
            "objects at the end",
            Box::new(|r| thousands(r.objects_at_end)),
        ),
    ]);
    for (name, cell) in &rows {
        row(&mut out, name, reports.iter().map(cell).collect());
    }

    if let Some(first) = reports.first().filter(|r| !r.timeline.is_empty()) {
        let _ = writeln!(
            out,
            "\norigin requests / requests, per {} min",
            first.timeline[0].minutes
        );
        for (i, b) in first.timeline.iter().enumerate() {
            let cells = reports
                .iter()
                .map(|r| {
                    r.timeline
                        .get(i)
                        .map(|b| {
                            format!(
                                "{} / {}",
                                thousands(b.origin_requests),
                                thousands(b.requests)
                            )
                        })
                        .unwrap_or_default()
                })
                .collect();
            row(&mut out, &stamp(b.start), cells);
        }
    }
    for r in reports {
        if !r.top_keys.is_empty() {
            let _ = writeln!(out, "\ntop keys, {}", r.label);
            for k in &r.top_keys {
                let _ = writeln!(
                    out,
                    "  {:>9}  {:>6}  {}",
                    thousands(k.requests),
                    percent(k.hit_ratio),
                    k.key
                );
            }
        }
    }
    for r in reports {
        for w in &r.warnings {
            let _ = writeln!(out, "\nwarning ({}): {}", r.label, w.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
