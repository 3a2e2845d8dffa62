//! Byte ranges served from a complete stored response (RFC 9110 §14).

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};

use crate::cache::conditional::etag_matches;

/// What a client's `Range` asks of a stored representation.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReply {
    /// No usable range: send the whole representation (also for an invalid `Range`, §14.2).
    Full,
    /// Satisfiable ranges, in request order.
    Partial(Vec<RangeInclusive<u64>>),
    /// None of the ranges overlaps the representation: 416 (§15.5.17).
    Unsatisfiable,
}

/// Evaluates `Range` and `If-Range` against a stored 200 response of `len` bytes.
pub fn evaluate(req: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeReply {
    let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeReply::Full;
    };
    if !range.trim_start().starts_with("bytes=") {
        return RangeReply::Full;
    }
    if let Some(cond) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if !if_range_holds(cond.trim(), stored) {
            return RangeReply::Full;
        }
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        return RangeReply::Full;
    };
    match parsed.validate(len) {
        Ok(ranges) if !ranges.is_empty() => RangeReply::Partial(ranges),
        _ => RangeReply::Unsatisfiable,
    }
}

/// §13.1.5: an entity-tag must match strongly; a date must equal a strong `Last-Modified`.
fn if_range_holds(cond: &str, stored: &HeaderMap) -> bool {
    if cond.starts_with('"') || cond.starts_with("W/") {
        return stored
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|etag| etag_matches(cond, etag, false));
    }
    let lm = stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok());
    match (
        httpdate::parse_http_date(cond),
        lm.map(httpdate::parse_http_date),
    ) {
        (Ok(a), Some(Ok(b))) => a == b,
        _ => false,
    }
}

/// Builds the 206 body and its headers: a single part, or `multipart/byteranges` (§14.6).
pub fn partial(headers: &mut HeaderMap, body: &Bytes, ranges: &[RangeInclusive<u64>]) -> Bytes {
    let len = body.len() as u64;
    if let [r] = ranges {
        let v = format!("bytes {}-{}/{len}", r.start(), r.end());
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).expect("ascii range"),
        );
        return body.slice(*r.start() as usize..=*r.end() as usize);
    }
    let boundary = format!("tessera-{:016x}", rand::random::<u64>());
    let ctype = headers.get(header::CONTENT_TYPE).cloned();
    let mut out = BytesMut::new();
    for r in ranges {
        out.put_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        if let Some(ct) = &ctype {
            out.put_slice(b"Content-Type: ");
            out.put_slice(ct.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(
            format!(
                "Content-Range: bytes {}-{}/{len}\r\n\r\n",
                r.start(),
                r.end()
            )
            .as_bytes(),
        );
        out.put_slice(&body[*r.start() as usize..=*r.end() as usize]);
    }
    out.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/byteranges; boundary={boundary}");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).expect("ascii boundary"),
    );
    headers.remove(header::CONTENT_RANGE);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, range.parse().unwrap());
        h
    }

    #[test]
    fn single_suffix_and_open_ranges_rfc9110_14_1_2() {
        let stored = HeaderMap::new();
        assert_eq!(
            evaluate(&req("bytes=0-4"), &stored, 10),
            RangeReply::Partial(vec![0..=4])
        );
        assert_eq!(
            evaluate(&req("bytes=-3"), &stored, 10),
            RangeReply::Partial(vec![7..=9])
        );
        assert_eq!(
            evaluate(&req("bytes=8-"), &stored, 10),
            RangeReply::Partial(vec![8..=9])
        );
    }

    #[test]
    fn a_range_beyond_the_end_is_unsatisfiable_rfc9110_15_5_17() {
        assert_eq!(
            evaluate(&req("bytes=20-30"), &HeaderMap::new(), 10),
            RangeReply::Unsatisfiable
        );
    }

    #[test]
    fn invalid_ranges_and_other_units_are_ignored_rfc9110_14_2() {
        assert_eq!(
            evaluate(&req("bytes=abc"), &HeaderMap::new(), 10),
            RangeReply::Full
        );
        assert_eq!(
            evaluate(&req("items=0-1"), &HeaderMap::new(), 10),
            RangeReply::Full
        );
    }

    #[test]
    fn if_range_with_another_etag_gets_the_full_response_rfc9110_13_1_5() {
        let mut stored = HeaderMap::new();
        stored.insert(header::ETAG, "\"a\"".parse().unwrap());
        let mut r = req("bytes=0-1");
        r.insert(header::IF_RANGE, "\"b\"".parse().unwrap());
        assert_eq!(evaluate(&r, &stored, 10), RangeReply::Full);
        r.insert(header::IF_RANGE, "\"a\"".parse().unwrap());
        assert_eq!(evaluate(&r, &stored, 10), RangeReply::Partial(vec![0..=1]));
    }

    #[test]
    fn multiple_ranges_become_multipart_byteranges() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let body = partial(&mut h, &Bytes::from_static(b"0123456789"), &[0..=1, 5..=6]);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("multipart/byteranges; boundary="));
        assert!(
            text.contains("Content-Range: bytes 0-1/10\r\n\r\n01"),
            "{text}"
        );
        assert!(
            text.contains("Content-Range: bytes 5-6/10\r\n\r\n56"),
            "{text}"
        );
    }
}
