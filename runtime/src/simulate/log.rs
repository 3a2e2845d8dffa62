//! Access-log lines read back as requests: Common and Combined Log Format, and JSON lines.
//!
//! Logs come from anywhere (a CDN export, nginx with a custom `log_format`, an ELB), so the
//! reader is lenient about which fields are present and strict about what each one holds:
//! a line it cannot read is skipped with a reason, never guessed at.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Longest line read; longer ones are skipped (a log is hostile input like any other).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One request as a log line recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When the request was made.
    pub time: SystemTime,
    /// The client's address, when logged.
    pub client: Option<IpAddr>,
    /// Method, upper case.
    pub method: String,
    /// The host asked for, when logged (Combined Log Format has none).
    pub host: Option<String>,
    /// Path and query, origin-form (`/p?q=1`).
    pub target: String,
    /// Status the client got.
    pub status: u16,
    /// Body bytes sent (0 when logged as `-`).
    pub bytes: u64,
    /// `User-Agent`, when logged.
    pub user_agent: Option<String>,
    /// `Cookie`, when logged.
    pub cookie: Option<String>,
    /// `Content-Type` of the response, when logged.
    pub content_type: Option<String>,
    /// The client's country code, when logged.
    pub country: Option<String>,
}

/// Why a line was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// Neither Common/Combined Log Format nor a JSON object.
    #[error("not Common/Combined Log Format or a JSON object: {0}")]
    Format(&'static str),
    /// A JSON line without a field the simulation needs.
    #[error("JSON line without `{0}`")]
    Missing(&'static str),
    /// A field that does not hold what it should.
    #[error("bad `{0}`")]
    Bad(&'static str),
}

/// Reads one line; blank lines and `#` comments are `Ok(None)`.
pub fn parse_line(line: &str) -> Result<Option<LogRecord>, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong);
    }
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.starts_with('{') {
        parse_json(line).map(Some)
    } else {
        parse_clf(line).map(Some)
    }
}

/// `host ident user [time] "request" status bytes ["referer" "user-agent" ...]`.
fn parse_clf(line: &str) -> Result<LogRecord, LineError> {
    let mut rest = line;
    let client = word(&mut rest).ok_or(LineError::Format("no client field"))?;
    word(&mut rest).ok_or(LineError::Format("no ident field"))?;
    word(&mut rest).ok_or(LineError::Format("no user field"))?;
    let rest_t = rest
        .trim_start()
        .strip_prefix('[')
        .ok_or(LineError::Format("no [time]"))?;
    let (stamp, after) = rest_t
        .split_once(']')
        .ok_or(LineError::Format("no closing ]"))?;
    rest = after;
    let time = clf_time(stamp).ok_or(LineError::Bad("time"))?;
    let request = quoted(&mut rest).ok_or(LineError::Format("no \"request\""))?;
    let status = word(&mut rest)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or(LineError::Bad("status"))?;
    let bytes = match word(&mut rest).ok_or(LineError::Format("no bytes field"))? {
        "-" => 0,
        b => b.parse().map_err(|_| LineError::Bad("bytes"))?,
    };
    let _referer = quoted(&mut rest);
    let user_agent = quoted(&mut rest).filter(|u| u != "-");
    let (method, host, target) = request_line(&request)?;
    Ok(LogRecord {
        time,
        client: client.parse().ok(),
        method,
        host,
        target,
        status,
        bytes,
        user_agent,
        cookie: None,
        content_type: None,
        country: None,
    })
}

/// The next space-separated word.
fn word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let s = rest.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    *rest = &s[end..];
    Some(&s[..end])
}

/// The next double-quoted field, with Apache's `\"` and `\\` and nginx's `\x22` undone.
fn quoted(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start().strip_prefix('"')?;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            // A quote byte is always a character boundary.
            b'"' => {
                *rest = &s[i + 1..];
                return Some(unescape(&s[..i]));
            }
            _ => i += 1,
        }
    }
    None
}

fn unescape(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    let mut out = Vec::with_capacity(raw.len());
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'x' && i + 3 < b.len() {
                if let Ok(v) = u8::from_str_radix(&raw[i + 2..i + 4], 16) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `10/Oct/2000:13:55:36 -0700`.
fn clf_time(s: &str) -> Option<SystemTime> {
    let fmt = format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(s, &fmt).ok().map(SystemTime::from)
}

/// `GET /p?q HTTP/1.1` (or an absolute-form target) → method, host, origin-form target.
fn request_line(line: &str) -> Result<(String, Option<String>, String), LineError> {
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().ok_or(LineError::Bad("request"))?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(LineError::Bad("request"));
    }
    let (host, target) = split_target(target)?;
    Ok((method.to_ascii_uppercase(), host, target))
}

/// An absolute URL gives its host; an origin-form target is kept as is.
fn split_target(target: &str) -> Result<(Option<String>, String), LineError> {
    if target.starts_with('/') {
        return Ok((None, target.to_owned()));
    }
    let uri: http::Uri = target.parse().map_err(|_| LineError::Bad("request"))?;
    let host = uri.authority().map(|a| a.as_str().to_owned());
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    if host.is_none() {
        return Err(LineError::Bad("request"));
    }
    Ok((host, pq.to_owned()))
}

/// The first of `names` that the object has.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| obj.get(*n))
        .filter(|v| !v.is_null())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "-" => Some(0.0),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A JSON object per line, with the field names of nginx, Envoy, ELB and CDN exports.
fn parse_json(line: &str) -> Result<LogRecord, LineError> {
    let v: Value = serde_json::from_str(line).map_err(|_| LineError::Format("invalid JSON"))?;
    let obj = v
        .as_object()
        .ok_or(LineError::Format("not a JSON object"))?;
    let time = field(
        obj,
        &[
            "time",
            "timestamp",
            "@timestamp",
            "time_iso8601",
            "time_local",
            "ts",
        ],
    )
    .ok_or(LineError::Missing("time"))?;
    let time = json_time(time).ok_or(LineError::Bad("time"))?;
    let request = field(obj, &["request"]).and_then(text);
    let (mut method, mut host, target) = match &request {
        Some(r) if r.contains(' ') => {
            let (m, h, t) = request_line(r)?;
            (Some(m), h, Some(t))
        }
        _ => (None, None, None),
    };
    if let Some(m) = field(obj, &["method", "request_method", "http_method"]).and_then(text) {
        method = Some(m.to_ascii_uppercase());
    }
    let target = match target {
        Some(t) => t,
        None => {
            let raw = field(obj, &["uri", "request_uri", "url", "path", "target"])
                .and_then(text)
                .ok_or(LineError::Missing("uri"))?;
            let (h, mut t) = split_target(&raw)?;
            if let Some(q) = field(obj, &["query", "args", "query_string"]).and_then(text) {
                if !t.contains('?') {
                    t.push('?');
                    t.push_str(q.trim_start_matches('?'));
                }
            }
            host = host.or(h);
            t
        }
    };
    if let Some(h) = field(obj, &["host", "http_host", "authority", "server_name"]).and_then(text) {
        host = Some(h);
    }
    let method = method.unwrap_or_else(|| "GET".to_owned());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(LineError::Bad("method"));
    }
    let status = field(obj, &["status", "status_code", "response_code"])
        .and_then(number)
        .filter(|s| (100.0..=599.0).contains(s))
        .ok_or(LineError::Bad("status"))? as u16;
    let bytes = match field(
        obj,
        &[
            "bytes",
            "body_bytes_sent",
            "bytes_sent",
            "size",
            "response_size",
        ],
    ) {
        None => 0,
        Some(b) => number(b)
            .filter(|b| *b >= 0.0 && b.is_finite())
            .ok_or(LineError::Bad("bytes"))? as u64,
    };
    let get = |names: &[&str]| field(obj, names).and_then(text);
    Ok(LogRecord {
        time,
        client: get(&["remote_addr", "client_ip", "client", "ip"]).and_then(|c| c.parse().ok()),
        method,
        host,
        target,
        status,
        bytes,
        user_agent: get(&["user_agent", "http_user_agent", "ua", "userAgent", "agent"]),
        cookie: get(&["cookie", "http_cookie"]),
        content_type: get(&["content_type", "sent_http_content_type"]),
        country: get(&["country", "geoip_country_code"]),
    })
}

/// RFC 3339, Common Log Format time, or seconds (milliseconds above 10^12) since the epoch.
fn json_time(v: &Value) -> Option<SystemTime> {
    if let Some(n) = v.as_f64() {
        let secs = if n > 1e12 { n / 1000.0 } else { n };
        return (secs.is_finite() && (0.0..1e11).contains(&secs))
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    let s = v.as_str()?;
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
        .or_else(|| clf_time(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn combined_log_format_is_read_with_its_agent() {
        let r = parse_line(
            r#"203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /p?a=1 HTTP/1.1" 200 2326 "http://ref/" "Mozilla/5.0 (\"quoted\")""#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.time, at(971_211_336));
        assert_eq!(r.client, Some("203.0.113.9".parse().unwrap()));
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/p?a=1"));
        assert_eq!((r.status, r.bytes), (200, 2326));
        assert_eq!(r.user_agent.as_deref(), Some("Mozilla/5.0 (\"quoted\")"));
        assert_eq!(r.host, None);
    }

    #[test]
    fn common_log_format_and_dashes_are_read() {
        let r = parse_line(
            r#"::1 - - [01/Nov/2026:00:00:00 +0000] "HEAD http://Shop.example/x HTTP/1.0" 304 -"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, "HEAD");
        assert_eq!(r.host.as_deref(), Some("Shop.example"));
        assert_eq!(r.target, "/x");
        assert_eq!((r.status, r.bytes), (304, 0));
        assert_eq!(r.user_agent, None);
    }

    #[test]
    fn nginx_hex_escapes_are_undone() {
        let r = parse_line(
            r#"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "a\x22b""#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.user_agent.as_deref(), Some("a\"b"));
    }

    #[test]
    fn json_lines_take_the_usual_field_names() {
        let r = parse_line(
            r#"{"time":"2026-11-01T00:00:01Z","remote_addr":"10.0.0.1","request":"GET /a?b=1 HTTP/2.0","host":"shop.example","status":"200","body_bytes_sent":"10","http_user_agent":"curl/8","http_cookie":"sid=1"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.time, at(1_793_491_201));
        assert_eq!(r.host.as_deref(), Some("shop.example"));
        assert_eq!(r.target, "/a?b=1");
        assert_eq!(r.cookie.as_deref(), Some("sid=1"));
        let r = parse_line(r#"{"ts":1793491201500,"method":"get","uri":"/x","args":"y=2","status":404,"bytes":0,"content_type":"text/html"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.time, at(1_793_491_201) + Duration::from_millis(500));
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.status),
            ("GET", "/x?y=2", 404)
        );
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
    }

    #[test]
    fn bad_lines_say_why_and_blank_ones_are_skipped() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# comment"), Ok(None));
        assert!(matches!(parse_line("garbage"), Err(LineError::Format(_))));
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] "GET / HTTP/1.1" 999 1"#),
            Err(LineError::Bad("status"))
        );
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 1"#),
            Err(LineError::Bad("time"))
        );
        assert_eq!(
            parse_line(r#"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] "G\"T / HTTP/1.1" 200 1"#),
            Err(LineError::Bad("request"))
        );
        assert_eq!(
            parse_line(r#"{"status":200}"#),
            Err(LineError::Missing("time"))
        );
        assert_eq!(
            parse_line(r#"{"time":1,"uri":"/","status":200,"bytes":-5}"#),
            Err(LineError::Bad("bytes"))
        );
        assert_eq!(
            parse_line(&"x".repeat(MAX_LINE_BYTES + 1)),
            Err(LineError::TooLong)
        );
        // Truncated quoting never panics.
        for cut in [
            r#"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] "GET"#,
            r#"a b c [x] "\"#,
        ] {
            assert!(parse_line(cut).is_err());
        }
    }
}
