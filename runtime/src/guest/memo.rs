//! Memoised cache keys: a `cache-key` answer reused for requests equal in all it read.
//!
//! A script may declare what its `cache-key` reads of a request (`key-reads` in
//! `script-info`). The host then passes that hook only those parts, the rest empty, so what
//! the hook sees of a request is those parts and the key it was handed. Where the site also allows it (`[site.limits] key_memo_kib`), the host keeps
//! answers in a memo keyed by exactly those bytes, and a request equal in all of them gets
//! the same key without an instance being made.
//!
//! The memo keeps an answer only when nothing else could have shaped it, and serves one
//! only where skipping the call changes nothing else: the script implements no hook but
//! `cache_key` (another hook shares its instance, and could leave globals for it or read
//! what it leaves), the call ran on a fresh instance (never handed to an earlier request),
//! nothing on that instance read the clock, randomness or a rate-limit counter, and the
//! key passed the host's checks. A script's log lines are not repeated on memo hits. The
//! memo belongs to one load of the script: a reload starts empty.

use std::sync::Arc;

use http::HeaderName;
use prometheus_client::metrics::counter::Counter;

use super::bindings::types::{self, RequestParts};
use super::convert;
use super::script::{Hook, Script};
use crate::request::ClientRequest;

/// Most header names a script may list in `key-reads`.
pub const MAX_HEADER_READS: usize = 32;

/// Longest memo key kept, in bytes: requests with bigger read fields still work, unmemoised.
const MAX_MEMO_KEY: usize = 8 << 10;

/// Bytes an entry costs beyond its key and answer (the table's slot, the `Arc`), for the bound.
const ENTRY_OVERHEAD: usize = 64;

/// An entry's weight against the memo's byte bound.
#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Box<[u8]>, Arc<str>> for Weigh {
    fn weight(&self, key: &Box<[u8]>, answer: &Arc<str>) -> u64 {
        (key.len() + answer.len() + ENTRY_OVERHEAD) as u64
    }
}

/// At most 64 characters of a name from a script, for an error message.
fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

/// What a script's `cache-key` reads of a request, checked once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    parts: RequestParts,
    headers: Vec<HeaderName>,
}

impl Reads {
    /// Checks a script's declaration: at most [`MAX_HEADER_READS`] distinct, valid, lower
    /// case header names.
    pub fn from_wire(w: types::RequestReads) -> Result<Reads, String> {
        if w.headers.len() > MAX_HEADER_READS {
            return Err(format!(
                "key-reads lists {} header names (at most {MAX_HEADER_READS})",
                w.headers.len()
            ));
        }
        let mut headers: Vec<HeaderName> = Vec::with_capacity(w.headers.len());
        for name in w.headers {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|h| h.as_str() == name)
                .ok_or_else(|| {
                    format!(
                        "key-reads: {:?} is not a lower-case header field name",
                        short(&name)
                    )
                })?;
            if headers.contains(&parsed) {
                return Err(format!("key-reads: {:?} is listed twice", short(&name)));
            }
            headers.push(parsed);
        }
        Ok(Reads {
            parts: w.parts,
            headers,
        })
    }

    /// The request as a hook that reads only this sees it: every other part empty.
    pub fn view(&self, r: &ClientRequest) -> types::Request {
        let p = self.parts;
        let take = |part, s: &str| {
            if p.contains(part) {
                s.to_owned()
            } else {
                String::new()
            }
        };
        let mut headers = http::HeaderMap::new();
        for name in &self.headers {
            for v in r.headers.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        types::Request {
            method: take(RequestParts::METHOD, r.method.as_str()),
            scheme: take(RequestParts::SCHEME, r.scheme),
            authority: take(RequestParts::AUTHORITY, &r.authority),
            path: take(RequestParts::PATH, r.path()),
            query: r
                .query()
                .filter(|_| p.contains(RequestParts::QUERY))
                .map(str::to_owned),
            headers: convert::fields(&headers),
            client: types::ClientInfo {
                ip: if p.contains(RequestParts::CLIENT_IP) {
                    r.client.ip.to_string()
                } else {
                    String::new()
                },
                country: r
                    .client
                    .country
                    .clone()
                    .filter(|_| p.contains(RequestParts::COUNTRY)),
                device: if p.contains(RequestParts::DEVICE) {
                    convert::device(r.client.device)
                } else {
                    types::DeviceClass::Desktop
                },
            },
        }
    }

    /// The memo key of `r` handed `key`: every byte the hook can see, each part framed by
    /// its length (or marked absent), so two requests share it only if the hook saw the same.
    /// None when it would be longer than is worth keeping.
    pub fn memo_key(&self, r: &ClientRequest, key: &str) -> Option<Box<[u8]>> {
        let mut out = Vec::with_capacity(key.len() + 64);
        let p = self.parts;
        let ip = p
            .contains(RequestParts::CLIENT_IP)
            .then(|| r.client.ip.to_string());
        frame(&mut out, Some(key.as_bytes()));
        let parts: [(RequestParts, Option<&[u8]>); 8] = [
            (RequestParts::METHOD, Some(r.method.as_str().as_bytes())),
            (RequestParts::SCHEME, Some(r.scheme.as_bytes())),
            (RequestParts::AUTHORITY, Some(r.authority.as_bytes())),
            (RequestParts::PATH, Some(r.path().as_bytes())),
            (RequestParts::QUERY, r.query().map(str::as_bytes)),
            (RequestParts::CLIENT_IP, ip.as_deref().map(str::as_bytes)),
            (
                RequestParts::COUNTRY,
                r.client.country.as_deref().map(str::as_bytes),
            ),
            (
                RequestParts::DEVICE,
                Some(&[convert::device(r.client.device) as u8]),
            ),
        ];
        for (part, bytes) in parts {
            if p.contains(part) {
                frame(&mut out, bytes);
            }
        }
        for name in &self.headers {
            let values = r.headers.get_all(name);
            frame(
                &mut out,
                Some(&(values.iter().count() as u32).to_le_bytes()),
            );
            for v in values {
                frame(&mut out, Some(v.as_bytes()));
            }
            if out.len() > MAX_MEMO_KEY {
                return None;
            }
        }
        (out.len() <= MAX_MEMO_KEY).then(|| out.into_boxed_slice())
    }
}

/// Appends `bytes` to a memo key, framed by its length, or a mark that it is absent.
fn frame(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.push(0),
    }
}

impl std::fmt::Display for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (RequestParts::METHOD, "method"),
            (RequestParts::SCHEME, "scheme"),
            (RequestParts::AUTHORITY, "authority"),
            (RequestParts::PATH, "path"),
            (RequestParts::QUERY, "query"),
            (RequestParts::CLIENT_IP, "client_ip"),
            (RequestParts::COUNTRY, "country"),
            (RequestParts::DEVICE, "device"),
        ];
        let parts = names
            .iter()
            .filter(|(p, _)| self.parts.contains(*p))
            .map(|(_, n)| n.to_string());
        let headers = self.headers.iter().map(|h| format!("header {h}"));
        let all: Vec<String> = parts.chain(headers).collect();
        if all.is_empty() {
            f.write_str("nothing but the key")
        } else {
            f.write_str(&all.join(", "))
        }
    }
}

/// Why a script implementing `hooks` cannot have its keys memoised, if it cannot.
///
/// Only a script whose one hook is `cache_key`: another hook runs on the same instance as
/// `cache_key` (before it, or after it on a cache hit, or all request long with
/// `keep_state`), so it could leave globals for `cache_key` to read, or read what
/// `cache_key` leaves; a memo hit, which calls nothing, would change what it sees.
fn refusal(hooks: &[Hook], declared: bool) -> Option<&'static str> {
    if !hooks.contains(&Hook::CacheKey) {
        Some("the script has no cache_key")
    } else if hooks.len() > 1 {
        Some("the script implements other hooks than cache_key, which share its instance")
    } else if !declared {
        Some(
            "the script does not declare what cache_key reads \
             (#[tessera_sdk::script(key_reads(...))])",
        )
    } else {
        None
    }
}

/// One script load's memo of `cache-key` answers, bounded in bytes.
///
/// quick_cache rather than moka (the response store's): on a workload where most requests
/// are unlike any before, every miss inserts, and a moka insert cost ≈ 3.5 µs in
/// `bench/guest.rs`, a third of the script call it saves.
pub(super) struct KeyMemo {
    answers: quick_cache::sync::Cache<Box<[u8]>, Arc<str>, Weigh>,
    hits: Counter,
    stored: Counter,
    unstored: Counter,
}

impl KeyMemo {
    /// The memo the site allows `script` (`bytes`, 0 for none), or None with a warning
    /// saying why it cannot help this script.
    pub fn for_script(script: &Script, bytes: usize) -> Option<KeyMemo> {
        if bytes == 0 {
            return None;
        }
        let implements: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| script.implements(*h))
            .collect();
        let Some(why) = refusal(&implements, script.key_reads().is_some()) else {
            return Some(KeyMemo::new(script.site(), bytes));
        };
        tracing::warn!(
            site = script.site(),
            script = script.name(),
            "key_memo_kib is set but {why}: cache keys are not memoised"
        );
        None
    }

    /// A memo for a script of `site` holding at most `bytes` of keys and answers.
    pub fn new(site: &str, bytes: usize) -> KeyMemo {
        let count = |result: &str| {
            crate::observe::metrics()
                .key_memo
                .get_or_create(&crate::observe::KeyMemoResult {
                    site: site.to_owned(),
                    result: result.to_owned(),
                })
                .clone()
        };
        // The table is sized for entries of about 256 bytes; it grows if they are smaller.
        let items = (bytes / 256).max(16);
        KeyMemo {
            answers: quick_cache::sync::Cache::with_weighter(items, bytes as u64, Weigh),
            hits: count("hit"),
            stored: count("stored"),
            unstored: count("unstored"),
        }
    }

    /// The answer kept for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Arc<str>> {
        let hit = self.answers.get(key);
        if hit.is_some() {
            self.hits.inc();
        }
        hit
    }

    /// Keeps `answer` for `key` if the call that made it was `pure` (see the module doc) and
    /// the key was not too long to keep (None); counts what became of it.
    pub fn put(&self, key: Option<Box<[u8]>>, answer: &str, pure: bool) {
        let Some(key) = key.filter(|_| pure) else {
            self.unstored.inc();
            return;
        };
        // The table turns away an entry heavier than one of its shards can hold.
        let probe = key.clone();
        self.answers.insert(key, answer.into());
        if self.answers.contains_key(&probe) {
            self.stored.inc();
        } else {
            self.unstored.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(parts: RequestParts, headers: &[&str]) -> Result<Reads, String> {
        Reads::from_wire(types::RequestReads {
            parts,
            headers: headers.iter().map(|h| h.to_string()).collect(),
        })
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> ClientRequest {
        let mut r = ClientRequest {
            method: http::Method::GET,
            scheme: "https",
            authority: "example.com".into(),
            uri: uri.parse().unwrap(),
            headers: http::HeaderMap::new(),
            client: crate::request::Client {
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                country: None,
                device: crate::request::DeviceClass::Desktop,
            },
            version: 0,
        };
        for (n, v) in headers {
            r.headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    #[test]
    fn declarations_with_bad_or_too_many_names_are_refused() {
        assert!(reads(RequestParts::PATH, &["x-user", "accept-language"]).is_ok());
        for bad in ["X-User", "x user", "", "ü"] {
            let e = reads(RequestParts::empty(), &[bad]).unwrap_err();
            assert!(
                e.contains("not a lower-case header field name"),
                "{bad}: {e}"
            );
        }
        let e = reads(RequestParts::empty(), &["x-a", "x-a"]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let many: Vec<String> = (0..=MAX_HEADER_READS).map(|i| format!("x-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(reads(RequestParts::empty(), &many)
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn the_view_holds_only_what_was_declared() {
        let r = req(
            "/p?a=1",
            &[("x-user", "ann"), ("cookie", "s=1"), ("x-user", "bob")],
        );
        let v = reads(RequestParts::PATH, &["x-user"]).unwrap().view(&r);
        assert_eq!(v.path, "/p");
        // By declared name, then arrival order: what the SDK's test view gives too.
        let two = reads(RequestParts::empty(), &["x-b", "x-a"]).unwrap();
        let w = two.view(&req("/", &[("x-a", "1"), ("x-b", "2"), ("x-a", "3")]));
        assert_eq!(w.headers.text, "x-b2x-a1x-a3");
        assert_eq!((v.method.as_str(), v.authority.as_str()), ("", ""));
        assert_eq!(v.query, None);
        assert_eq!(v.headers.text, "x-userannx-userbob");
        assert_eq!(v.client.ip, "");
    }

    #[test]
    fn memo_keys_differ_exactly_when_what_was_read_differs() {
        let r = reads(RequestParts::PATH | RequestParts::QUERY, &["x-user"]).unwrap();
        let key = |uri, h: &[(&str, &str)], k| r.memo_key(&req(uri, h), k).unwrap();
        let base = key("/p?a=1", &[("x-user", "ann")], "k");
        // Unread parts and fields do not matter.
        assert_eq!(
            base,
            key("/p?a=1", &[("x-user", "ann"), ("cookie", "c")], "k")
        );
        // Anything read does, as does the key handed in.
        assert_ne!(base, key("/q?a=1", &[("x-user", "ann")], "k"));
        assert_ne!(base, key("/p?a=2", &[("x-user", "ann")], "k"));
        assert_ne!(base, key("/p", &[("x-user", "ann")], "k"));
        assert_ne!(base, key("/p?", &[("x-user", "ann")], "k"));
        assert_ne!(base, key("/p?a=1", &[("x-user", "bob")], "k"));
        assert_ne!(base, key("/p?a=1", &[], "k"));
        assert_ne!(
            base,
            key("/p?a=1", &[("x-user", "ann"), ("x-user", "ann")], "k")
        );
        assert_ne!(base, key("/p?a=1", &[("x-user", "ann")], "k2"));
        // Framing: moving bytes from one field to the next is a different request.
        let two = reads(RequestParts::empty(), &["x-a", "x-b"]).unwrap();
        let a = two.memo_key(&req("/", &[("x-a", "ab"), ("x-b", "c")]), "k");
        let b = two.memo_key(&req("/", &[("x-a", "a"), ("x-b", "bc")]), "k");
        assert_ne!(a, b);
    }

    #[test]
    fn the_memo_stays_within_its_bytes_and_keeps_only_pure_answers() {
        let memo = KeyMemo::new("memo-unit-test", 64 << 10);
        for i in 0..10_000u32 {
            let key = format!("{i:0>200}").into_bytes().into_boxed_slice();
            memo.put(Some(key), "answer", true);
        }
        assert!(
            memo.answers.weight() <= 64 << 10,
            "{}",
            memo.answers.weight()
        );
        assert!(memo.answers.len() < 10_000);
        memo.put(Some(b"impure".to_vec().into_boxed_slice()), "x", false);
        assert!(memo.get(b"impure").is_none());
    }

    #[test]
    fn only_a_script_whose_one_hook_is_cache_key_is_memoised() {
        assert_eq!(refusal(&[Hook::CacheKey], true), None);
        for others in [
            Hook::OnRequest,
            Hook::CachePolicy,
            Hook::OnResponse,
            Hook::Html,
        ] {
            let why = refusal(&[Hook::CacheKey, others], true).unwrap();
            assert!(why.contains("other hooks"), "{others:?}: {why}");
        }
        assert!(refusal(&[Hook::CacheKey], false)
            .unwrap()
            .contains("does not declare"));
        assert!(refusal(&[Hook::OnResponse], true)
            .unwrap()
            .contains("no cache_key"));
    }

    #[test]
    fn reads_are_listed_in_words() {
        let r = reads(RequestParts::PATH | RequestParts::DEVICE, &["x-ab"]).unwrap();
        assert_eq!(r.to_string(), "path, device, header x-ab");
        let none = reads(RequestParts::empty(), &[]).unwrap();
        assert_eq!(none.to_string(), "nothing but the key");
    }

    #[test]
    fn oversized_memo_keys_are_not_kept() {
        let r = reads(RequestParts::empty(), &["x-big"]).unwrap();
        let big = "v".repeat(MAX_MEMO_KEY);
        assert!(r.memo_key(&req("/", &[("x-big", &big)]), "k").is_none());
    }
}
