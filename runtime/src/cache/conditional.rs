//! Clients' conditional requests against stored responses, and 304 freshening (RFC 9110 §13, RFC 9111 §3.2, §4.3).

use std::time::SystemTime;

use http::header::{HeaderMap, HeaderName, CONNECTION, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG};
use http::header::{CACHE_CONTROL, CONTENT_LOCATION, EXPIRES, VARY};
use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::header::{PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE};
use http::Method;

/// Result of evaluating a client's preconditions against a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition stops the request: serve the stored response.
    Proceed,
    /// Answer 304 Not Modified (RFC 9110 §15.4.5).
    NotModified,
    /// Answer 412 Precondition Failed (RFC 9110 §15.5.13).
    Failed,
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match (weak comparison), If-Modified-Since, in the order of RFC 9110 §13.2.2, for GET/HEAD served from cache.
///
/// Call it only for a stored 2xx response: preconditions are ignored when the response
/// without them would be anything else (RFC 9110 §13.2.1).
pub fn evaluate(method: &Method, req: &HeaderMap, stored: &HeaderMap) -> Precondition {
    if *method != Method::GET && *method != Method::HEAD {
        return Precondition::Proceed;
    }
    let stored_etag = stored.get(ETAG).and_then(|v| v.to_str().ok());
    let last_modified = date_of(stored, &LAST_MODIFIED);

    // Step 1: If-Match, strong comparison (RFC 9110 §13.1.1).
    if req.contains_key(IF_MATCH) {
        if !list_matches(req, &IF_MATCH, stored_etag, false) {
            return Precondition::Failed;
        }
    // Step 2: If-Unmodified-Since, only without If-Match (RFC 9110 §13.1.4).
    } else if let (Some(since), Some(lm)) = (date_of(req, &IF_UNMODIFIED_SINCE), last_modified) {
        if lm > since {
            return Precondition::Failed;
        }
    }

    // Step 3: If-None-Match, weak comparison (RFC 9110 §13.1.2).
    if req.contains_key(IF_NONE_MATCH) {
        if list_matches(req, &IF_NONE_MATCH, stored_etag, true) {
            return Precondition::NotModified;
        }
        return Precondition::Proceed;
    }

    // Step 4: If-Modified-Since, only without If-None-Match (RFC 9110 §13.1.3). A cache compares
    // with Last-Modified, or else Date (RFC 9111 §4.3.2).
    if let Some(since) = date_of(req, &IF_MODIFIED_SINCE) {
        if let Some(reference) = last_modified.or_else(|| date_of(stored, &DATE)) {
            if reference <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Headers a 304 from cache carries (RFC 9110 §15.4.5): Content-Location, Date, ETag, Vary, Cache-Control, Expires, and Last-Modified when there is no ETag.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut names = vec![CONTENT_LOCATION, DATE, ETAG, VARY, CACHE_CONTROL, EXPIRES];
    // RFC 9110 §15.4.5: other metadata only when it guides cache updates, e.g. Last-Modified
    // for a response without an ETag.
    if !stored.contains_key(ETAG) {
        names.push(LAST_MODIFIED);
    }
    for name in names {
        for v in stored.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Strong and weak entity-tag comparison (RFC 9110 §8.8.3.2).
pub fn etag_matches(a: &str, b: &str, weak: bool) -> bool {
    let (a_weak, a_tag) = split_etag(a);
    let (b_weak, b_tag) = split_etag(b);
    a_tag == b_tag && (weak || (!a_weak && !b_weak))
}

/// Freshens a stored response with a 304's fields (RFC 9111 §3.2, §4.3.4).
///
/// Every field in the 304 replaces the stored one, except those excepted from storage
/// (§3.1: Connection and the fields it names, other hop-by-hop fields, proxy authentication
/// fields), Content-Length (§3.2), and Content-Range, which describes a message, not the stored
/// representation. The caller then strips [`super::freshness::fields_to_strip`] again, since
/// a 304 may carry new qualified `private`/`no-cache` directives.
pub fn update_stored_headers(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let connection_listed: Vec<HeaderName> = not_modified
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in not_modified.keys() {
        if is_excepted(name) || connection_listed.contains(name) {
            continue;
        }
        stored.remove(name);
        for v in not_modified.get_all(name) {
            stored.append(name.clone(), v.clone());
        }
    }
}

/// True when a 304 identifies this stored response for update (RFC 9111 §4.3.4).
///
/// A strong ETag in the 304 must equal the stored one; a weak one must weakly match; a
/// Last-Modified alone must equal the stored one. A 304 without validators updates the response
/// the cache validated: the cache holds one response per variant and sent only its validators.
pub fn selects_for_update(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let new_etag = not_modified.get(ETAG).and_then(|v| v.to_str().ok());
    let old_etag = stored.get(ETAG).and_then(|v| v.to_str().ok());
    if let Some(new) = new_etag {
        let weak = split_etag(new).0;
        return old_etag.is_some_and(|old| etag_matches(new, old, weak));
    }
    match date_of(not_modified, &LAST_MODIFIED) {
        Some(new) => date_of(stored, &LAST_MODIFIED) == Some(new),
        None => true,
    }
}

/// RFC 9111 §3.1 and RFC 9110 §7.6.1: fields never stored or updated, plus Content-Length (§3.2).
fn is_excepted(name: &HeaderName) -> bool {
    const KEEP_ALIVE: &str = "keep-alive";
    const PROXY_CONNECTION: &str = "proxy-connection";
    const PROXY_AUTHENTICATION_INFO: &str = "proxy-authentication-info";
    *name == CONNECTION
        || *name == TE
        || *name == TRANSFER_ENCODING
        || *name == UPGRADE
        || *name == PROXY_AUTHENTICATE
        || *name == PROXY_AUTHORIZATION
        || *name == CONTENT_LENGTH
        || *name == CONTENT_RANGE
        || name.as_str() == KEEP_ALIVE
        || name.as_str() == PROXY_CONNECTION
        || name.as_str() == PROXY_AUTHENTICATION_INFO
}

/// Splits `W/"x"` into (weak, opaque-tag); a malformed tag is compared as written.
fn split_etag(tag: &str) -> (bool, &str) {
    let tag = tag.trim();
    match tag.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    }
}

/// True when an If-Match/If-None-Match list holds `*` (and a stored response exists) or a matching tag.
fn list_matches(req: &HeaderMap, name: &HeaderName, stored_etag: Option<&str>, weak: bool) -> bool {
    for v in req.get_all(name) {
        let Ok(v) = v.to_str() else { continue };
        for tag in split_etag_list(v) {
            // RFC 9110 §13.1.1, §13.1.2: "*" matches any current representation.
            if tag == "*" {
                return true;
            }
            if stored_etag.is_some_and(|s| etag_matches(tag, s, weak)) {
                return true;
            }
        }
    }
    false
}

/// Splits `#entity-tag` on commas outside the quotes (etagc admits commas, RFC 9110 §8.8.3).
fn split_etag_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes) = (0, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|t| !t.is_empty());
    out
}

/// An HTTP-date field; a list of dates or any invalid value is ignored (RFC 9110 §13.1.3, §13.1.4).
fn date_of(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(v.to_str().ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const D0: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const D1: &str = "Mon, 07 Nov 1994 08:49:37 GMT";
    const D2: &str = "Tue, 08 Nov 1994 08:49:37 GMT";

    fn stored() -> HeaderMap {
        headers(&[("etag", "\"v1\""), ("last-modified", D1), ("date", D2)])
    }

    fn eval(req: &[(&str, &str)]) -> Precondition {
        evaluate(&Method::GET, &headers(req), &stored())
    }

    #[test]
    fn weak_and_strong_comparison_table_rfc9110_8_8_3_2() {
        // The example table of RFC 9110 §8.8.3.2.
        assert!(!etag_matches("W/\"1\"", "W/\"1\"", false));
        assert!(etag_matches("W/\"1\"", "W/\"1\"", true));
        assert!(!etag_matches("W/\"1\"", "W/\"2\"", false));
        assert!(!etag_matches("W/\"1\"", "W/\"2\"", true));
        assert!(!etag_matches("W/\"1\"", "\"1\"", false));
        assert!(etag_matches("W/\"1\"", "\"1\"", true));
        assert!(etag_matches("\"1\"", "\"1\"", false));
        assert!(etag_matches("\"1\"", "\"1\"", true));
    }

    #[test]
    fn if_none_match_uses_weak_comparison_rfc9110_13_1_2() {
        assert_eq!(
            eval(&[("if-none-match", "W/\"v1\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"v0\", \"v1\"")]),
            Precondition::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "\"v0\"")]), Precondition::Proceed);
        assert_eq!(eval(&[("if-none-match", "*")]), Precondition::NotModified);
    }

    #[test]
    fn etag_lists_may_hold_commas_inside_quotes_rfc9110_8_8_3() {
        let s = headers(&[("etag", "\"a,b\"")]);
        let r = headers(&[("if-none-match", "\"x\", \"a,b\"")]);
        assert_eq!(evaluate(&Method::GET, &r, &s), Precondition::NotModified);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since_rfc9110_13_2_2() {
        assert_eq!(
            eval(&[("if-none-match", "\"v0\""), ("if-modified-since", D2)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_modified_since_compares_last_modified_rfc9110_13_1_3() {
        assert_eq!(
            eval(&[("if-modified-since", D1)]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-modified-since", D2)]),
            Precondition::NotModified
        );
        assert_eq!(eval(&[("if-modified-since", D0)]), Precondition::Proceed);
    }

    #[test]
    fn if_modified_since_falls_back_to_date_rfc9111_4_3_2() {
        let s = headers(&[("date", D1)]);
        let r = headers(&[("if-modified-since", D1)]);
        assert_eq!(evaluate(&Method::GET, &r, &s), Precondition::NotModified);
        let r = headers(&[("if-modified-since", D0)]);
        assert_eq!(evaluate(&Method::GET, &r, &s), Precondition::Proceed);
    }

    #[test]
    fn invalid_or_listed_dates_are_ignored_rfc9110_13_1_3() {
        assert_eq!(
            eval(&[("if-modified-since", "yesterday")]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[("if-modified-since", D2), ("if-modified-since", D2)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_uses_strong_comparison_and_fails_with_412_rfc9110_13_1_1() {
        assert_eq!(eval(&[("if-match", "\"v1\"")]), Precondition::Proceed);
        assert_eq!(eval(&[("if-match", "W/\"v1\"")]), Precondition::Failed);
        assert_eq!(eval(&[("if-match", "\"v2\"")]), Precondition::Failed);
        assert_eq!(eval(&[("if-match", "*")]), Precondition::Proceed);
        let s = headers(&[("etag", "W/\"v1\"")]);
        let r = headers(&[("if-match", "W/\"v1\"")]);
        assert_eq!(evaluate(&Method::GET, &r, &s), Precondition::Failed);
    }

    #[test]
    fn if_unmodified_since_fails_when_modified_later_rfc9110_13_1_4() {
        assert_eq!(eval(&[("if-unmodified-since", D0)]), Precondition::Failed);
        assert_eq!(eval(&[("if-unmodified-since", D1)]), Precondition::Proceed);
        // Ignored when If-Match is present.
        assert_eq!(
            eval(&[("if-match", "\"v1\""), ("if-unmodified-since", D0)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_is_evaluated_before_if_none_match_rfc9110_13_2_2() {
        assert_eq!(
            eval(&[("if-match", "\"nope\""), ("if-none-match", "\"v1\"")]),
            Precondition::Failed
        );
    }

    #[test]
    fn preconditions_apply_only_to_get_and_head_from_cache() {
        let r = headers(&[("if-none-match", "\"v1\"")]);
        assert_eq!(
            evaluate(&Method::HEAD, &r, &stored()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&Method::POST, &r, &stored()),
            Precondition::Proceed
        );
    }

    #[test]
    fn not_modified_carries_the_listed_fields_rfc9110_15_4_5() {
        let s = headers(&[
            ("etag", "\"v1\""),
            ("date", D2),
            ("cache-control", "max-age=60"),
            ("vary", "accept-encoding"),
            ("content-type", "text/html"),
            ("content-length", "42"),
            ("last-modified", D1),
        ]);
        let h = not_modified_headers(&s);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "date", "etag", "vary"]);
        let h = not_modified_headers(&headers(&[("last-modified", D1), ("content-type", "x/y")]));
        assert_eq!(h.get(LAST_MODIFIED).unwrap(), D1);
        assert!(h.get("content-type").is_none());
    }

    #[test]
    fn freshening_replaces_fields_but_not_content_length_rfc9111_3_2() {
        let mut s = headers(&[
            ("cache-control", "max-age=60"),
            ("content-length", "42"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("x-keep", "k"),
        ]);
        let n = headers(&[
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
            ("x-a", "3"),
            ("x-new", "n"),
        ]);
        update_stored_headers(&mut s, &n);
        assert_eq!(s.get(CACHE_CONTROL).unwrap(), "max-age=600");
        assert_eq!(s.get(CONTENT_LENGTH).unwrap(), "42");
        assert_eq!(s.get_all("x-a").iter().collect::<Vec<_>>(), ["3"]);
        assert_eq!(s.get("x-keep").unwrap(), "k");
        assert_eq!(s.get("x-new").unwrap(), "n");
    }

    #[test]
    fn freshening_skips_hop_by_hop_and_proxy_fields_rfc9111_3_1() {
        let mut s = HeaderMap::new();
        let n = headers(&[
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authentication-info", "a"),
            ("upgrade", "h2c"),
            ("content-range", "bytes 0-1/2"),
            ("etag", "\"v2\""),
        ]);
        update_stored_headers(&mut s, &n);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["etag"]);
    }

    #[test]
    fn update_selection_follows_validators_rfc9111_4_3_4() {
        let s = stored();
        assert!(selects_for_update(&s, &headers(&[("etag", "\"v1\"")])));
        assert!(!selects_for_update(&s, &headers(&[("etag", "\"v2\"")])));
        assert!(selects_for_update(&s, &headers(&[("etag", "W/\"v1\"")])));
        assert!(selects_for_update(&s, &headers(&[("last-modified", D1)])));
        assert!(!selects_for_update(&s, &headers(&[("last-modified", D0)])));
        assert!(selects_for_update(&s, &headers(&[("date", D2)])));
        let weak_stored = headers(&[("etag", "W/\"v1\"")]);
        assert!(!selects_for_update(
            &weak_stored,
            &headers(&[("etag", "\"v1\"")])
        ));
    }
}
