//! What a script returns, checked against caps and turned into host types.
//!
//! Every byte a script returns is hostile input. Anything over a cap, any framing or
//! hop-by-hop field, any invalid name or value makes the whole hook count as failed; the
//! request then fails closed (see `proxy::outcome`), it is never partially applied.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use super::bindings::types;
use crate::cache::Decision;
use crate::proxy::headers::HOP_BY_HOP;

/// Longest cache key a script may return, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Most header edits (set + append + remove) in one hook's answer.
pub const MAX_EDITS: usize = 64;
/// Most bytes of names and values in one hook's header edits or synthetic headers.
pub const MAX_EDIT_BYTES: usize = 64 << 10;
/// Largest synthetic response body.
pub const MAX_SYNTHETIC_BODY: usize = 1 << 20;
/// Most tags in one cache decision.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 128;

/// Besides the hop-by-hop fields (RFC 9110 §7.6.1), the fields that frame a message; a
/// script edits none of them in either direction: changing them desynchronises keep-alive
/// connections or smuggles requests (RFC 9112 §6).
const FRAMING: [&str; 2] = ["content-length", "proxy-authenticate"];
/// Request fields the host alone decides: where the request goes and how it is answered.
const REQUEST_ONLY: [&str; 2] = ["host", "expect"];

/// Why a script's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn violation(msg: impl Into<String>) -> Violation {
    Violation(msg.into())
}

/// Which message a set of header edits applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Edits to the request going to the origin.
    Request,
    /// Edits to the response going to the client.
    Response,
}

/// Validated header edits, applied remove → set → append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.append {
            headers.append(n.clone(), v.clone());
        }
    }
}

/// A response a script made up in `on_request`.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// 200 to 599.
    pub status: StatusCode,
    /// Its headers (no framing fields; the host frames the body).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

fn header_name(n: &str, dir: Direction) -> Result<HeaderName, Violation> {
    let name = HeaderName::from_bytes(n.as_bytes())
        .map_err(|_| violation(format!("invalid header name {:?}", clip(n))))?;
    let s = name.as_str();
    if HOP_BY_HOP.contains(&s)
        || FRAMING.contains(&s)
        || (dir == Direction::Request && REQUEST_ONLY.contains(&s))
    {
        return Err(violation(format!("header `{s}` cannot be set by a script")));
    }
    Ok(name)
}

fn header_value(n: &HeaderName, v: &str) -> Result<HeaderValue, Violation> {
    // from_bytes refuses CR, LF and NUL (no header injection) but allows UTF-8 (obs-text).
    HeaderValue::from_bytes(v.as_bytes())
        .map_err(|_| violation(format!("invalid value for header `{n}`")))
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Checks a script's cache key.
pub fn key(k: String) -> Result<String, Violation> {
    if k.is_empty() {
        return Err(violation("empty cache key"));
    }
    if k.len() > MAX_KEY_BYTES {
        return Err(violation(format!(
            "cache key of {} bytes (at most {MAX_KEY_BYTES})",
            k.len()
        )));
    }
    Ok(k)
}

/// Checks header edits for `dir`.
pub fn edits(e: types::HeaderEdits, dir: Direction) -> Result<HeaderEdits, Violation> {
    let count = e.set.len() + e.append.len() + e.remove.len();
    if count > MAX_EDITS {
        return Err(violation(format!(
            "{count} header edits (at most {MAX_EDITS})"
        )));
    }
    let bytes: usize = e
        .set
        .iter()
        .chain(&e.append)
        .map(|(n, v)| n.len() + v.len())
        .chain(e.remove.iter().map(String::len))
        .sum();
    if bytes > MAX_EDIT_BYTES {
        return Err(violation(format!(
            "{bytes} bytes of header edits (at most {MAX_EDIT_BYTES})"
        )));
    }
    let pairs = |list: Vec<(String, String)>| -> Result<Vec<_>, Violation> {
        list.into_iter()
            .map(|(n, v)| {
                let name = header_name(&n, dir)?;
                let value = header_value(&name, &v)?;
                Ok((name, value))
            })
            .collect()
    };
    Ok(HeaderEdits {
        set: pairs(e.set)?,
        append: pairs(e.append)?,
        remove: e
            .remove
            .iter()
            .map(|n| header_name(n, dir))
            .collect::<Result<_, _>>()?,
    })
}

/// Checks a synthetic response.
pub fn synthetic(s: types::SyntheticResponse) -> Result<Synthetic, Violation> {
    if !(200..=599).contains(&s.status) {
        return Err(violation(format!(
            "synthetic status {} (must be 200 to 599)",
            s.status
        )));
    }
    if s.body.len() > MAX_SYNTHETIC_BODY {
        return Err(violation(format!(
            "synthetic body of {} bytes (at most {MAX_SYNTHETIC_BODY})",
            s.body.len()
        )));
    }
    let edits = edits(
        types::HeaderEdits {
            set: Vec::new(),
            append: s.headers,
            remove: Vec::new(),
        },
        Direction::Response,
    )?;
    let mut headers = HeaderMap::new();
    edits.apply(&mut headers);
    Ok(Synthetic {
        status: StatusCode::from_u16(s.status).expect("checked range"),
        headers,
        body: Bytes::from(s.body),
    })
}

/// Checks a cache decision; the wire's u32 seconds become durations.
pub fn decision(d: types::CacheDecision) -> Result<Decision, Violation> {
    if d.tags.len() > MAX_TAGS {
        return Err(violation(format!(
            "{} tags (at most {MAX_TAGS})",
            d.tags.len()
        )));
    }
    for t in &d.tags {
        if t.is_empty()
            || t.len() > MAX_TAG_BYTES
            || !t.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(violation(format!(
                "tag {:?}: 1 to {MAX_TAG_BYTES} visible ASCII characters, no commas",
                clip(t)
            )));
        }
    }
    let secs = |s: u32| {
        std::time::Duration::from_secs(u64::from(
            s.min(crate::cache::directives::DELTA_SECONDS_MAX),
        ))
    };
    Ok(Decision {
        store: d.store,
        ttl: secs(d.ttl),
        swr: secs(d.stale_while_revalidate),
        sie: secs(d.stale_if_error),
        tags: d.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(set: &[(&str, &str)]) -> types::HeaderEdits {
        types::HeaderEdits {
            set: set
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            append: vec![],
            remove: vec![],
        }
    }

    #[test]
    fn framing_and_hop_by_hop_fields_are_refused_both_ways() {
        for f in [
            "content-length",
            "Transfer-Encoding",
            "connection",
            "upgrade",
            "te",
        ] {
            assert!(edits(e(&[(f, "1")]), Direction::Request).is_err(), "{f}");
            assert!(edits(e(&[(f, "1")]), Direction::Response).is_err(), "{f}");
        }
        assert!(edits(e(&[("host", "evil")]), Direction::Request).is_err());
        assert!(edits(e(&[("x-fine", "1")]), Direction::Request).is_ok());
        let removal = types::HeaderEdits {
            set: vec![],
            append: vec![],
            remove: vec!["content-length".into()],
        };
        assert!(edits(removal, Direction::Response).is_err());
    }

    #[test]
    fn header_injection_and_oversized_edits_are_refused() {
        assert!(edits(e(&[("x-a", "a\r\nset-cookie: x=1")]), Direction::Response).is_err());
        assert!(edits(e(&[("bad name", "1")]), Direction::Response).is_err());
        let many: Vec<(String, String)> = (0..MAX_EDITS + 1)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        let too_many = types::HeaderEdits {
            set: many,
            append: vec![],
            remove: vec![],
        };
        assert!(edits(too_many, Direction::Request).is_err());
        let big = "v".repeat(MAX_EDIT_BYTES);
        assert!(edits(e(&[("x-big", &big)]), Direction::Request).is_err());
        // UTF-8 is obs-text to HTTP: allowed, it cannot break framing.
        assert!(edits(e(&[("x-name", "Zoë")]), Direction::Response).is_ok());
    }

    #[test]
    fn synthetic_statuses_outside_200_to_599_are_refused() {
        for status in [0, 100, 101, 199, 600] {
            let s = types::SyntheticResponse {
                status,
                headers: vec![],
                body: vec![],
            };
            assert!(synthetic(s).is_err(), "{status}");
        }
        let ok = types::SyntheticResponse {
            status: 403,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"no".to_vec(),
        };
        assert_eq!(synthetic(ok).unwrap().status, 403);
    }

    #[test]
    fn keys_and_tags_are_capped() {
        assert!(key(String::new()).is_err());
        assert!(key("k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(key("k".repeat(MAX_KEY_BYTES)).is_ok());
        let d = |tags: Vec<String>| types::CacheDecision {
            store: true,
            ttl: u32::MAX,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            tags,
        };
        assert!(decision(d((0..=MAX_TAGS).map(|i| format!("t{i}")).collect())).is_err());
        assert!(decision(d(vec!["has space".into()])).is_err());
        assert!(decision(d(vec!["a,b".into()])).is_err());
        let ok = decision(d(vec!["product-1".into()])).unwrap();
        assert_eq!(
            ok.ttl.as_secs(),
            u64::from(crate::cache::directives::DELTA_SECONDS_MAX)
        );
    }
}
