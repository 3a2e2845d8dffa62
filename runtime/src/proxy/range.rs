//! Byte ranges served from a complete stored response (RFC 9110 §14).
//!
//! Written here rather than taken from `http-range-header`, which yields `0..=0` for
//! `bytes=0-` on an empty body (a panic when sliced) and refuses suffixes longer than the
//! representation, which §14.1.2 says select all of it.

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};

use crate::cache::conditional::etag_matches;

/// More ranges than this in one request are ignored (the whole representation is sent):
/// many small ranges cost more than they save and are a known amplification trick.
pub const MAX_RANGES: usize = 16;

/// What a client's `Range` asks of a stored representation.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReply {
    /// No usable range: send the whole representation (also for an invalid `Range`, §14.2).
    Full,
    /// Satisfiable ranges, within the representation, ascending and not overlapping.
    Partial(Vec<RangeInclusive<u64>>),
    /// None of the ranges overlaps the representation: 416 (§15.5.17).
    Unsatisfiable,
}

/// Evaluates `Range` and `If-Range` against a stored 200 response of `len` bytes.
pub fn evaluate(req: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeReply {
    let mut values = req.get_all(header::RANGE).iter();
    let (Some(range), None) = (values.next(), values.next()) else {
        return RangeReply::Full;
    };
    let Ok(range) = range.to_str() else {
        return RangeReply::Full;
    };
    if let Some(cond) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if !if_range_holds(cond.trim(), stored) {
            return RangeReply::Full;
        }
    }
    let Some(specs) = parse(range) else {
        return RangeReply::Full;
    };
    let mut ranges: Vec<RangeInclusive<u64>> =
        specs.into_iter().filter_map(|s| s.resolve(len)).collect();
    if ranges.is_empty() {
        return RangeReply::Unsatisfiable;
    }
    // §14.2: overlapping or disordered ranges may be coalesced; doing so also means no
    // response is larger than the representation itself.
    ranges.sort_by_key(|r| *r.start());
    let mut merged: Vec<RangeInclusive<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if *r.start() <= last.end().saturating_add(1) => {
                *last = *last.start()..=(*last.end()).max(*r.end());
            }
            _ => merged.push(r),
        }
    }
    RangeReply::Partial(merged)
}

/// One `range-spec` (§14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-pos "-" [ last-pos ]`
    From(u64, Option<u64>),
    /// `"-" suffix-length`
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects in a representation of `len` bytes, if any (§14.1.2).
    fn resolve(self, len: u64) -> Option<RangeInclusive<u64>> {
        match self {
            Spec::From(first, _) if first >= len => None,
            Spec::From(first, last) => Some(first..=last.map_or(len - 1, |l| l.min(len - 1))),
            Spec::Suffix(0) => None,
            Spec::Suffix(_) if len == 0 => None,
            Spec::Suffix(n) => Some(len.saturating_sub(n)..=len - 1),
        }
    }
}

/// Parses `bytes=…`; `None` for anything invalid, another unit, or too many ranges.
fn parse(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for part in set.split(',') {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = part.split_once('-')?;
        let spec = match (first, last) {
            ("", n) => Spec::Suffix(number(n)?),
            (f, "") => Spec::From(number(f)?, None),
            (f, l) => {
                let (f, l) = (number(f)?, number(l)?);
                // §14.1.1: last-pos below first-pos makes the whole field invalid.
                if l < f {
                    return None;
                }
                Spec::From(f, Some(l))
            }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// 1*DIGIT; values beyond u64 saturate (they are past any representation anyway).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
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
/// `ranges` come from [`evaluate`] for this body, so they lie within it.
pub fn partial(headers: &mut HeaderMap, body: &Bytes, ranges: &[RangeInclusive<u64>]) -> Bytes {
    let len = body.len() as u64;
    let slice = |r: &RangeInclusive<u64>| body.slice(*r.start() as usize..=*r.end() as usize);
    if let [r] = ranges {
        let v = format!("bytes {}-{}/{len}", r.start(), r.end());
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).expect("ascii range"),
        );
        return slice(r);
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
        out.put_slice(&slice(r));
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

    fn eval(range: &str, len: u64) -> RangeReply {
        evaluate(&req(range), &HeaderMap::new(), len)
    }

    #[test]
    fn single_suffix_and_open_ranges_rfc9110_14_1_2() {
        assert_eq!(eval("bytes=0-4", 10), RangeReply::Partial(vec![0..=4]));
        assert_eq!(eval("bytes=-3", 10), RangeReply::Partial(vec![7..=9]));
        assert_eq!(eval("bytes=8-", 10), RangeReply::Partial(vec![8..=9]));
        assert_eq!(eval("bytes=8-100", 10), RangeReply::Partial(vec![8..=9]));
    }

    #[test]
    fn a_suffix_longer_than_the_body_selects_all_of_it_rfc9110_14_1_2() {
        assert_eq!(eval("bytes=-50", 10), RangeReply::Partial(vec![0..=9]));
    }

    #[test]
    fn nothing_in_an_empty_body_is_satisfiable() {
        for r in ["bytes=0-", "bytes=-5", "bytes=0-0", "bytes=0-10"] {
            assert_eq!(eval(r, 0), RangeReply::Unsatisfiable, "{r}");
        }
    }

    #[test]
    fn a_range_beyond_the_end_is_unsatisfiable_rfc9110_15_5_17() {
        assert_eq!(eval("bytes=20-30", 10), RangeReply::Unsatisfiable);
        assert_eq!(eval("bytes=-0", 10), RangeReply::Unsatisfiable);
    }

    #[test]
    fn invalid_ranges_and_other_units_are_ignored_rfc9110_14_2() {
        for r in [
            "bytes=abc",
            "items=0-1",
            "bytes=5-1",
            "bytes=",
            "bytes=1-2-3",
            "bytes=+1-2",
        ] {
            assert_eq!(eval(r, 10), RangeReply::Full, "{r}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(eval(&many, 10), RangeReply::Full);
    }

    #[test]
    fn overlapping_ranges_are_coalesced_so_no_reply_outgrows_the_body() {
        assert_eq!(
            eval("bytes=0-5,2-8,0-,-3", 10),
            RangeReply::Partial(vec![0..=9])
        );
        assert_eq!(
            eval("bytes=6-7, 0-1", 10),
            RangeReply::Partial(vec![0..=1, 6..=7])
        );
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        assert_eq!(
            eval("bytes=0-99999999999999999999999", 10),
            RangeReply::Partial(vec![0..=9])
        );
        assert_eq!(
            eval("bytes=99999999999999999999999-", 10),
            RangeReply::Unsatisfiable
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

    proptest::proptest! {
        #[test]
        fn any_range_header_gives_ranges_inside_the_body(
            value in "[a-zA-Z0-9=,; -]{0,60}",
            len in 0u64..2000,
        ) {
            let Ok(v) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, v);
            if let RangeReply::Partial(ranges) = evaluate(&h, &HeaderMap::new(), len) {
                let mut prev: Option<u64> = None;
                let mut total = 0;
                for r in &ranges {
                    proptest::prop_assert!(r.start() <= r.end() && *r.end() < len);
                    if let Some(p) = prev {
                        proptest::prop_assert!(*r.start() > p + 1, "sorted, disjoint");
                    }
                    prev = Some(*r.end());
                    total += r.end() - r.start() + 1;
                }
                proptest::prop_assert!(total <= len, "never more than the body");
                let body = Bytes::from(vec![b'x'; len as usize]);
                let _ = partial(&mut HeaderMap::new(), &body, &ranges);
            }
        }

        #[test]
        fn numeric_ranges_select_what_rfc9110_says(first in 0u64..300, last in 0u64..300, len in 0u64..200) {
            let got = eval(&format!("bytes={first}-{last}"), len);
            let want = if last < first {
                RangeReply::Full
            } else if first >= len {
                RangeReply::Unsatisfiable
            } else {
                RangeReply::Partial(vec![first..=last.min(len - 1)])
            };
            proptest::prop_assert_eq!(got, want);
        }
    }
}
