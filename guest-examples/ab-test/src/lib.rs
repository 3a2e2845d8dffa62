//! Example script: A/B test with a sticky cookie and one cache entry per bucket.
//!
//! A visitor's bucket is the `ab` cookie (`A` or `B`); without a valid one, `on_request`
//! draws one with the host's randomness. The script keeps no state between hooks: the
//! bucket travels in the request itself.
//! - `on_request` always sets request header `x-ab-bucket` to the bucket, replacing any
//!   value the client sent; the origin sees it, and so do the later hooks.
//! - `cache_key` reads that header and keys `<default key>#ab=A` or `#ab=B`, so each
//!   bucket has its own copy.
//! - `on_response` reads it too and tells the client `x-ab-bucket`; when the request had
//!   no valid `ab` cookie, it makes the drawn bucket sticky with
//!   `set-cookie: ab=<bucket>; Path=/; Max-Age=2592000; SameSite=Lax`.
//!
//! The host may run `on_response` in a fresh instance of the script (it releases the
//! instance while the request waits on the origin), so a bucket kept in a `thread_local!`
//! could be lost there; the request header cannot.

use std::fmt;

use tessera_sdk::{random_u64, EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};

/// Name of the cookie that keeps a visitor in their bucket.
pub const COOKIE: &str = "ab";
/// Header carrying the bucket to the origin and to the client.
pub const HEADER: &str = "x-ab-bucket";
/// Lifetime of the bucket cookie: 30 days.
pub const COOKIE_MAX_AGE: u32 = 30 * 24 * 60 * 60;

/// One arm of the experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Control.
    A,
    /// Variant.
    B,
}

impl Bucket {
    /// The cookie and header value: `A` or `B`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::A => "A",
            Bucket::B => "B",
        }
    }

    /// Parses a cookie or header value; anything but exactly `A` or `B` is no bucket.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "A" => Some(Bucket::A),
            "B" => Some(Bucket::B),
            _ => None,
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bucket named by the request's `ab` cookie, if it is exactly `A` or `B`.
pub fn cookie_bucket(req: &Request) -> Option<Bucket> {
    req.cookie(COOKIE).and_then(Bucket::parse)
}

/// Draws a bucket with the host's randomness: even → `A`, odd → `B`.
pub fn draw() -> Bucket {
    if random_u64().is_multiple_of(2) {
        Bucket::A
    } else {
        Bucket::B
    }
}

/// The bucket `on_request` put in the `x-ab-bucket` request header.
///
/// `on_request` always sets it, so later hooks always find it; were it ever missing or
/// invalid, the control bucket `A` is used.
pub fn request_bucket(req: &Request) -> Bucket {
    req.header(HEADER)
        .and_then(Bucket::parse)
        .unwrap_or(Bucket::A)
}

/// The script: `on_request`, `cache_key` and `on_response` are defined.
pub struct AbTest;

#[tessera_sdk::script]
impl EdgeScript for AbTest {
    fn on_request(req: &Request) -> RequestAction {
        let bucket = cookie_bucket(req).unwrap_or_else(draw);
        RequestAction::proceed_with(HeaderEdits::new().set(HEADER, bucket.as_str()))
    }

    fn cache_key(req: &Request, default_key: &str) -> String {
        format!("{default_key}#ab={}", request_bucket(req))
    }

    fn on_response(req: &Request, _resp: &ResponseHead) -> HeaderEdits {
        let bucket = request_bucket(req);
        let edits = HeaderEdits::new().set(HEADER, bucket.as_str());
        if cookie_bucket(req).is_some() {
            edits
        } else {
            edits.append(
                "set-cookie",
                format!("{COOKIE}={bucket}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_cache_key, call_on_request, call_on_response, describe, request, response, set_random,
    };
    use tessera_sdk::{HookSet, ScriptInfo};

    /// What one request sees: the three hooks in host order, later ones on the edited request.
    struct Seen {
        origin_edits: HeaderEdits,
        key: String,
        client_edits: HeaderEdits,
    }

    /// Applies `set` edits to the request the way the host does: replace every value.
    fn apply(req: &Request, edits: &HeaderEdits) -> Request {
        let mut req = req.clone();
        for (name, value) in &edits.set {
            req.headers.retain(|(n, _)| n != name);
            req.headers.push((name.clone(), value.clone()));
        }
        req
    }

    fn serve(req: &Request) -> Seen {
        let RequestAction::Continue(origin_edits) = call_on_request::<AbTest>(req) else {
            panic!("on_request must continue")
        };
        let req = apply(req, &origin_edits);
        let key = call_cache_key::<AbTest>(&req, "example.com/p");
        let client_edits = call_on_response::<AbTest>(&req, &response(200).build());
        Seen {
            origin_edits,
            key,
            client_edits,
        }
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn cookie_bucket_is_used_everywhere_and_no_cookie_is_set() {
        let seen = serve(&request("/p").header("cookie", "session=1; ab=B").build());
        assert_eq!(seen.origin_edits.set, [pair("x-ab-bucket", "B")]);
        assert_eq!(seen.key, "example.com/p#ab=B");
        assert_eq!(seen.client_edits.set, [pair("x-ab-bucket", "B")]);
        assert!(seen.client_edits.append.is_empty());
    }

    #[test]
    fn without_cookie_a_bucket_is_drawn_once_and_made_sticky() {
        set_random(vec![3, 0, 0]); // odd → B; a second draw would give A
        let seen = serve(&request("/p").build());
        assert_eq!(seen.origin_edits.set, [pair("x-ab-bucket", "B")]);
        assert_eq!(seen.key, "example.com/p#ab=B");
        assert_eq!(seen.client_edits.set, [pair("x-ab-bucket", "B")]);
        assert_eq!(
            seen.client_edits.append,
            [pair(
                "set-cookie",
                "ab=B; Path=/; Max-Age=2592000; SameSite=Lax"
            )]
        );
    }

    #[test]
    fn even_draw_gives_bucket_a() {
        set_random(vec![10]);
        assert_eq!(serve(&request("/").build()).key, "example.com/p#ab=A");
    }

    #[test]
    fn invalid_cookie_is_replaced_by_a_drawn_bucket() {
        set_random(vec![0]);
        let seen = serve(&request("/").header("cookie", "ab=C").build());
        assert_eq!(seen.key, "example.com/p#ab=A");
        assert_eq!(
            seen.client_edits.append[0].1,
            "ab=A; Path=/; Max-Age=2592000; SameSite=Lax"
        );
        let seen = serve(&request("/").header("cookie", "ab=a").build());
        assert!(
            !seen.client_edits.append.is_empty(),
            "values are case-sensitive"
        );
    }

    #[test]
    fn a_bucket_header_from_the_client_is_overridden() {
        let seen = serve(
            &request("/")
                .header("x-ab-bucket", "B")
                .header("cookie", "ab=A")
                .build(),
        );
        assert_eq!(seen.origin_edits.set, [pair("x-ab-bucket", "A")]);
        assert_eq!(seen.key, "example.com/p#ab=A");

        set_random(vec![0]);
        let seen = serve(&request("/").header("x-ab-bucket", "B").build());
        assert_eq!(seen.origin_edits.set, [pair("x-ab-bucket", "A")]);
        assert_eq!(seen.key, "example.com/p#ab=A");
        assert_eq!(seen.client_edits.set, [pair("x-ab-bucket", "A")]);
        assert_eq!(seen.client_edits.append.len(), 1, "still made sticky");
    }

    #[test]
    fn later_hooks_need_only_the_edited_request() {
        // As on a fresh instance: no draw happened here, the header carries the bucket.
        set_random(vec![0, 0]); // a draw would give A
        let edited = request("/").header("x-ab-bucket", "B").build();
        assert_eq!(call_cache_key::<AbTest>(&edited, "k"), "k#ab=B");
        let edits = call_on_response::<AbTest>(&edited, &response(200).build());
        assert_eq!(edits.set, [pair("x-ab-bucket", "B")]);
        assert_eq!(
            edits.append,
            [pair(
                "set-cookie",
                "ab=B; Path=/; Max-Age=2592000; SameSite=Lax"
            )]
        );
    }

    #[test]
    fn each_request_draws_afresh() {
        set_random(vec![0, 1]);
        assert_eq!(serve(&request("/").build()).key, "example.com/p#ab=A");
        assert_eq!(serve(&request("/").build()).key, "example.com/p#ab=B");
    }

    #[test]
    fn draws_split_visitors_between_buckets() {
        let keys: std::collections::HashSet<String> =
            (0..32).map(|_| serve(&request("/").build()).key).collect();
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn cache_policy_is_left_to_the_host_and_no_state_is_kept() {
        assert_eq!(
            describe::<AbTest>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST | HookSet::CACHE_KEY | HookSet::ON_RESPONSE,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }
}
