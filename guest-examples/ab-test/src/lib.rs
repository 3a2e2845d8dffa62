//! Example script: A/B test with a sticky cookie and one cache entry per bucket.
//!
//! A visitor's bucket is the `ab` cookie (`A` or `B`); without a valid one, the script
//! draws one with the host's randomness. The bucket is
//! - sent to the origin as request header `x-ab-bucket` (by `on_request`),
//! - part of the cache key, `<default key>#ab=A` (by `cache_key`), so each bucket has its own copy,
//! - told to the client as `x-ab-bucket`, and, when freshly drawn, made sticky with
//!   `set-cookie: ab=<bucket>; Path=/; Max-Age=2592000; SameSite=Lax` (by `on_response`).
//!
//! The host creates a fresh instance for every request and reuses it for that request's
//! later hooks, so a drawn bucket kept in a `thread_local!` lives exactly as long as the
//! request: all three hooks agree on it, and it never leaks to another visitor.

use std::cell::Cell;
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

    /// Parses a cookie value; anything but exactly `A` or `B` is no bucket.
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

/// Which bucket a request is in, and whether the client already told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The bucket.
    pub bucket: Bucket,
    /// True when it came from a valid `ab` cookie; false when drawn for this request.
    pub from_cookie: bool,
}

thread_local! {
    // The bucket drawn for a cookie-less request; one instance serves one request.
    static DRAWN: Cell<Option<Bucket>> = const { Cell::new(None) };
}

/// The request's bucket: its valid `ab` cookie, else one drawn once for this request.
pub fn assignment(req: &Request) -> Assignment {
    if let Some(bucket) = req.cookie(COOKIE).and_then(Bucket::parse) {
        return Assignment {
            bucket,
            from_cookie: true,
        };
    }
    let bucket = DRAWN.with(|drawn| match drawn.get() {
        Some(bucket) => bucket,
        None => {
            let bucket = if random_u64().is_multiple_of(2) {
                Bucket::A
            } else {
                Bucket::B
            };
            drawn.set(Some(bucket));
            bucket
        }
    });
    Assignment {
        bucket,
        from_cookie: false,
    }
}

/// The script: `on_request`, `cache_key` and `on_response` are overridden.
pub struct AbTest;

impl EdgeScript for AbTest {
    fn on_request(req: &Request) -> RequestAction {
        let Assignment { bucket, .. } = assignment(req);
        RequestAction::proceed_with(HeaderEdits::new().set(HEADER, bucket.as_str()))
    }

    fn cache_key(req: &Request, default_key: &str) -> String {
        format!("{default_key}#ab={}", assignment(req).bucket)
    }

    fn on_response(req: &Request, _resp: &ResponseHead) -> HeaderEdits {
        let Assignment {
            bucket,
            from_cookie,
        } = assignment(req);
        let edits = HeaderEdits::new().set(HEADER, bucket.as_str());
        if from_cookie {
            edits
        } else {
            edits.append(
                "set-cookie",
                format!("{COOKIE}={bucket}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax"),
            )
        }
    }
}

tessera_sdk::export!(AbTest);

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_cache_key, call_cache_policy, call_on_request, call_on_response, request, response,
        set_random,
    };
    use tessera_sdk::CacheDecision;

    /// What one request sees: the three hooks in host order, on one fresh instance.
    struct Seen {
        origin_edits: HeaderEdits,
        key: String,
        client_edits: HeaderEdits,
    }

    fn serve(req: &Request) -> Seen {
        DRAWN.with(|d| d.set(None)); // a fresh instance
        let Some(RequestAction::Continue(origin_edits)) = call_on_request::<AbTest>(req) else {
            panic!("on_request must continue")
        };
        let key = call_cache_key::<AbTest>(req, "example.com/p").unwrap();
        let client_edits = call_on_response::<AbTest>(req, &response(200).build()).unwrap();
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
        set_random(vec![3]); // odd → B; a second draw would hit the fallback sequence
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
    fn cache_policy_is_left_to_the_host() {
        let req = request("/").build();
        let proposed = CacheDecision::cache_for(1);
        assert_eq!(
            call_cache_policy::<AbTest>(&req, &response(200).build(), &proposed),
            None
        );
    }
}
