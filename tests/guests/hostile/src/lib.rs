//! Test guest for the host's defences: oversized, malformed and forbidden output, chosen by request path.
//!
//! | path                   | hook           | output                                                        |
//! |------------------------|----------------|---------------------------------------------------------------|
//! | `/giant-key`           | `cache_key`    | a 1 MiB key                                                   |
//! | `/many-edits`          | `on_request`   | continues with 10,000 `set` edits `x-e<i>: v`                 |
//! | `/framing-req?h=NAME`  | `on_request`   | continues with a `set` edit of header `NAME` (see below)      |
//! | `/framing-resp?h=NAME` | `on_response`  | a `set` edit of response header `NAME` (see below)            |
//! | `/status?s=N`          | `on_request`   | answers status `N` (not a number or over 65535: 0), `odd\n`   |
//! | `/bad-utf8`            | `cache_key`    | a "string" of bytes `ff fe 6b`, not UTF-8                     |
//! | `/big-body`            | `on_request`   | answers 200 with a 16 MiB body                                |
//! | `/many-tags`           | `cache_policy` | `proposed` with store, ttl 60 and 10,000 tags `t<i>`          |
//! | `/log-flood`           | `cache_key`    | logs 100,000 `info` lines, then the default key               |
//! | `/clock-flood`         | `cache_key`    | reads the clock 1,000,000 times, then the default key         |
//! | `/crlf`                | `on_response`  | sets `x-injected: a\r\nset-cookie: pwned=1`                   |
//! | `/synthetic-framing`   | `on_request`   | answers 200 with `content-length: 1`, `transfer-encoding: chunked` and body `hello` |
//! | `/whoami`              | `on_request`   | continues with `x-seen: scheme=<scheme>; country=<country or ->` for the origin |
//! | `/const-key`           | `cache_key`    | the constant key `shared`, whatever the site or URL           |
//!
//! For `/framing-*`, `NAME` is used exactly as given in the query (not lower-cased, not
//! percent-decoded) and the value is `0` for `content-length`, `chunked` for
//! `transfer-encoding`, `evil.example` for `host`, `close` for `connection`, `websocket`
//! for `upgrade` and `x` for anything else (names compared ignoring ASCII case). Without
//! an `h` parameter the hook does nothing unusual.
//!
//! All four hooks are defined, so the host calls each of them for every request. On any
//! path not listed, and in the hooks a path does not name, each answers harmlessly: the
//! request proceeds with no edits, the key is `default_key`, the policy is `proposed`,
//! the response gets no edits.

use std::hint::black_box;

use tessera_sdk::{
    log, now_ms, CacheDecision, EdgeScript, HeaderEdits, LogLevel, Request, RequestAction,
    ResponseHead, SyntheticResponse,
};

/// Length of the `/giant-key` key: 1 MiB.
pub const GIANT_KEY_LEN: usize = 1 << 20;
/// Number of `set` edits `/many-edits` asks for.
pub const MANY_EDITS: usize = 10_000;
/// Size of the `/big-body` body: 16 MiB.
pub const BIG_BODY_LEN: usize = 16 << 20;
/// Number of tags `/many-tags` asks for.
pub const MANY_TAGS: usize = 10_000;
/// Number of log lines `/log-flood` writes.
pub const LOG_LINES: usize = 100_000;
/// Number of clock reads `/clock-flood` makes.
pub const CLOCK_READS: usize = 1_000_000;
/// The `x-injected` value `/crlf` sets: an attempt at response splitting.
pub const CRLF_VALUE: &str = "a\r\nset-cookie: pwned=1";

/// The script: all four hooks are defined.
pub struct Hostile;

#[tessera_sdk::script]
impl EdgeScript for Hostile {
    fn on_request(req: &Request) -> RequestAction {
        match req.path.as_str() {
            "/many-edits" => RequestAction::proceed_with(HeaderEdits {
                set: (0..MANY_EDITS)
                    .map(|i| (format!("x-e{i}"), "v".to_owned()))
                    .collect(),
                append: Vec::new(),
                remove: Vec::new(),
            }),
            // A rate-limit call out of bounds traps: the hook fails.
            "/rate-limit-giant-key" => {
                tessera_sdk::rate_limit(&"k".repeat(300), 1, 60);
                RequestAction::proceed()
            }
            "/rate-limit-no-window" => {
                tessera_sdk::rate_limit("k", 1, 0);
                RequestAction::proceed()
            }
            // `pass` edits are held to the same rules as `continue` ones.
            "/pass-framing" => {
                RequestAction::pass_with(HeaderEdits::new().set("content-length", "0"))
            }
            "/framing-req" => match framing_edit(req) {
                Some(edits) => RequestAction::proceed_with(edits),
                None => RequestAction::proceed(),
            },
            "/status" => {
                let status = req
                    .query()
                    .get("s")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                SyntheticResponse::new(status).body("odd\n").into()
            }
            "/big-body" => SyntheticResponse::new(200)
                .header("content-type", "application/octet-stream")
                .body(vec![b'x'; BIG_BODY_LEN])
                .into(),
            "/whoami" => RequestAction::proceed_with(HeaderEdits::new().set(
                "x-seen",
                format!(
                    "scheme={}; country={}",
                    req.scheme,
                    req.client.country.as_deref().unwrap_or("-")
                ),
            )),
            "/synthetic-framing" => SyntheticResponse::new(200)
                .header("content-length", "1")
                .header("transfer-encoding", "chunked")
                .body("hello")
                .into(),
            _ => RequestAction::proceed(),
        }
    }

    fn cache_key(req: &Request, default_key: &str) -> String {
        match req.path.as_str() {
            "/giant-key" => "k".repeat(GIANT_KEY_LEN),
            "/const-key" => "shared".to_owned(),
            // Deliberately invalid UTF-8 in a `String`, to test that the host's canonical-ABI
            // lifting rejects it; nothing in this guest reads it as text afterwards.
            "/bad-utf8" => unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, b'k']) },
            "/log-flood" => {
                for i in 0..LOG_LINES {
                    log(LogLevel::Info, &format!("hostile: log flood line {i}"));
                }
                default_key.to_owned()
            }
            "/clock-flood" => {
                let mut sum = 0u64;
                for _ in 0..CLOCK_READS {
                    sum = sum.wrapping_add(now_ms());
                }
                black_box(sum);
                default_key.to_owned()
            }
            _ => default_key.to_owned(),
        }
    }

    fn cache_policy(req: &Request, _resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        match req.path.as_str() {
            "/many-tags" => {
                let mut decision = proposed.with_ttl(60);
                decision.store = true;
                decision.tags = (0..MANY_TAGS).map(|i| format!("t{i}")).collect();
                decision
            }
            _ => proposed,
        }
    }

    fn on_response(req: &Request, _resp: &ResponseHead) -> HeaderEdits {
        match req.path.as_str() {
            "/framing-resp" => framing_edit(req).unwrap_or_default(),
            "/crlf" => HeaderEdits::new().set("x-injected", CRLF_VALUE),
            _ => HeaderEdits::new(),
        }
    }
}

/// The value `/framing-*` sets for header `name`.
pub fn framing_value(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "content-length" => "0",
        "transfer-encoding" => "chunked",
        "host" => "evil.example",
        "connection" => "close",
        "upgrade" => "websocket",
        _ => "x",
    }
}

/// One `set` edit of the header named by the `h` query parameter, name kept verbatim.
fn framing_edit(req: &Request) -> Option<HeaderEdits> {
    let query = req.query();
    let name = query.get("h")?;
    Some(HeaderEdits {
        set: vec![(name.to_owned(), framing_value(name).to_owned())],
        append: Vec::new(),
        remove: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_cache_key, call_cache_policy, call_on_request, call_on_response, describe, request,
        response, set_now_ms, take_logs,
    };
    use tessera_sdk::HookSet;

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    fn respond(path: &str) -> SyntheticResponse {
        match call_on_request::<Hostile>(&request(path).build()) {
            RequestAction::Respond(resp) => resp,
            other => panic!("{path}: expected a synthetic response, got {other:?}"),
        }
    }

    fn proceed_edits(path: &str) -> HeaderEdits {
        match call_on_request::<Hostile>(&request(path).build()) {
            RequestAction::Continue(edits) => edits,
            other => panic!("{path}: expected to continue, got {other:?}"),
        }
    }

    #[test]
    fn every_hook_is_called_and_no_state_is_kept() {
        let info = describe::<Hostile>();
        assert_eq!(
            info.hooks,
            HookSet::ON_REQUEST | HookSet::CACHE_KEY | HookSet::CACHE_POLICY | HookSet::ON_RESPONSE
        );
        assert!(!info.hooks.contains(HookSet::HTML), "no html rewrite");
        assert!(!info.keep_state);
    }

    #[test]
    fn unlisted_paths_and_hooks_answer_harmlessly() {
        let proposed = CacheDecision::cache_for(5).with_tag("a");
        for path in [
            "/",
            "/fine",
            "/giant-key",
            "/crlf",
            "/many-tags",
            "/framing-req",
        ] {
            let req = request(path).build();
            let resp = response(200).build();
            if path != "/many-tags" {
                assert_eq!(
                    call_cache_policy::<Hostile>(&req, &resp, &proposed),
                    proposed,
                    "{path}"
                );
            }
            if path != "/crlf" {
                assert_eq!(
                    call_on_response::<Hostile>(&req, &resp),
                    HeaderEdits::new(),
                    "{path}"
                );
            }
            if path != "/giant-key" {
                assert_eq!(call_cache_key::<Hostile>(&req, "k"), "k", "{path}");
            }
            assert_eq!(
                call_on_request::<Hostile>(&req),
                RequestAction::proceed(),
                "{path}"
            );
        }
    }

    #[test]
    fn oversized_output() {
        let key = call_cache_key::<Hostile>(&request("/giant-key").build(), "k");
        assert_eq!(key.len(), 1 << 20);
        let edits = proceed_edits("/many-edits");
        assert_eq!(edits.set.len(), 10_000);
        assert_eq!(edits.set[9_999], pair("x-e9999", "v"));
        assert_eq!(respond("/big-body").body.len(), 16 << 20);
        let d = call_cache_policy::<Hostile>(
            &request("/many-tags").build(),
            &response(200).build(),
            &CacheDecision::cache_for(1).no_store(),
        );
        assert_eq!((d.store, d.ttl, d.tags.len()), (true, 60, 10_000));
        assert_eq!(
            (d.tags[0].as_str(), d.tags[9_999].as_str()),
            ("t0", "t9999")
        );
    }

    #[test]
    fn framing_headers_are_set_verbatim_with_matching_values() {
        for (name, value) in [
            ("content-length", "0"),
            ("Transfer-Encoding", "chunked"),
            ("host", "evil.example"),
            ("connection", "close"),
            ("upgrade", "websocket"),
            ("te", "x"),
        ] {
            let edits = proceed_edits(&format!("/framing-req?h={name}"));
            assert_eq!(edits.set, [pair(name, value)]);
            let req = request(&format!("/framing-resp?h={name}")).build();
            let edits = call_on_response::<Hostile>(&req, &response(200).build());
            assert_eq!(edits.set, [pair(name, value)]);
        }
    }

    #[test]
    fn odd_statuses_and_synthetic_framing() {
        for (query, status) in [
            ("100", 100),
            ("101", 101),
            ("199", 199),
            ("600", 600),
            ("0", 0),
        ] {
            let resp = respond(&format!("/status?s={query}"));
            assert_eq!(
                (resp.status, resp.body.as_slice()),
                (status, b"odd\n".as_slice())
            );
        }
        assert_eq!(respond("/status?s=nope").status, 0);
        let resp = respond("/synthetic-framing");
        assert_eq!(
            resp.headers,
            [
                pair("content-length", "1"),
                pair("transfer-encoding", "chunked")
            ]
        );
        assert_eq!(resp.body, b"hello");
    }

    #[test]
    fn malformed_text() {
        let key = call_cache_key::<Hostile>(&request("/bad-utf8").build(), "k");
        assert_eq!(key.into_bytes(), [0xff, 0xfe, b'k']);
        let edits = call_on_response::<Hostile>(&request("/crlf").build(), &response(200).build());
        assert_eq!(edits.set, [pair("x-injected", "a\r\nset-cookie: pwned=1")]);
    }

    #[test]
    fn floods_end_with_the_default_key() {
        set_now_ms(1);
        let key = call_cache_key::<Hostile>(&request("/clock-flood").build(), "k");
        assert_eq!(key, "k");
        let key = call_cache_key::<Hostile>(&request("/log-flood").build(), "k");
        assert_eq!(key, "k");
        let logs = take_logs();
        assert_eq!(logs.len(), 100_000);
        assert_eq!(
            logs[0],
            (LogLevel::Info, "hostile: log flood line 0".to_owned())
        );
    }
}
