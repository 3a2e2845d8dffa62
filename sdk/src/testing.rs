//! Native test support: fake host capabilities, request/response/element builders, and
//! calls into a script's hooks and HTML callbacks through the export glue.
//!
//! This module exists only on non-`wasm32` targets, so that a script's logic can be unit
//! tested with plain `cargo test`. Inside the proxy, [`crate::log`], [`crate::now_ms`] and
//! [`crate::random_u64`] call the host; in native tests they use the per-thread values set
//! here. Each `#[test]` runs on its own thread, so settings do not leak between tests.
//!
//! ```
//! use tessera_sdk::{random_u64, testing};
//!
//! testing::set_random(vec![7, 8]);
//! assert_eq!(random_u64(), 7);
//! assert_eq!(random_u64(), 8);
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use crate::__private::Described;
use crate::html::ElementRecord;
use crate::{
    CacheDecision, ClientInfo, Content, DeviceClass, EdgeScript, ElementMutation, HeaderEdits,
    HtmlHandler, LogLevel, NodeMutation, Request, RequestAction, ResponseHead, ScriptInfo,
};

/// A rate-limit window: key, length in seconds, index since the epoch.
type Window = (String, u32, u64);

thread_local! {
    static RANDOM: RefCell<VecDeque<u64>> = const { RefCell::new(VecDeque::new()) };
    static FALLBACK_STATE: Cell<u64> = const { Cell::new(0x5eed_7e55_e7a0_0001) };
    static NOW_MS: Cell<Option<u64>> = const { Cell::new(None) };
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
    static CONFIG: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    static COUNTERS: RefCell<Vec<(Window, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Makes [`crate::config`] answer from these pairs on this thread (otherwise `None`).
pub fn set_config(pairs: &[(&str, &str)]) {
    CONFIG.with(|c| {
        *c.borrow_mut() = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
}

/// Makes [`crate::random_u64`] return `seq` in order on this thread, then a deterministic sequence.
pub fn set_random(seq: Vec<u64>) {
    RANDOM.with(|r| *r.borrow_mut() = seq.into());
}

/// Makes [`crate::now_ms`] return `ms` on this thread (otherwise the system clock).
pub fn set_now_ms(ms: u64) {
    NOW_MS.with(|n| n.set(Some(ms)));
}

/// Takes the lines [`crate::log`] wrote on this thread so far (they also go to stderr).
pub fn take_logs() -> Vec<(LogLevel, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Forgets everything set or recorded on this thread: random sequence, clock and logs.
pub fn reset() {
    RANDOM.with(|r| r.borrow_mut().clear());
    FALLBACK_STATE.with(|s| s.set(0x5eed_7e55_e7a0_0001));
    NOW_MS.with(|n| n.set(None));
    LOGS.with(|l| l.borrow_mut().clear());
    CONFIG.with(|c| c.borrow_mut().clear());
    COUNTERS.with(|c| c.borrow_mut().clear());
}

/// Native stand-ins for the host imports, used by [`crate::host`].
pub(crate) mod seam {
    use super::*;

    pub(crate) fn log(level: LogLevel, message: &str) {
        eprintln!("[tessera guest {level:?}] {message}");
        LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
    }

    pub(crate) fn now_ms() -> u64 {
        NOW_MS.with(|n| n.get()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    }

    pub(crate) fn config(name: &str) -> Option<String> {
        CONFIG.with(|c| {
            c.borrow()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// The host's fixed windows, counted on this thread against [`now_ms`].
    pub(crate) fn rate_limit(key: &str, limit: u32, window_secs: u32) -> bool {
        assert!(key.len() <= 256, "rate-limit key longer than 256 bytes");
        assert!(
            (1..=86_400).contains(&window_secs),
            "rate-limit window out of range"
        );
        let window = now_ms() / 1000 / u64::from(window_secs);
        let id = (key.to_owned(), window_secs, window);
        COUNTERS.with(|c| {
            let mut c = c.borrow_mut();
            let n = match c.iter_mut().find(|(k, _)| *k == id) {
                Some((_, n)) => {
                    *n = n.saturating_add(1);
                    *n
                }
                None => {
                    c.push((id, 1));
                    1
                }
            };
            n <= limit
        })
    }

    pub(crate) fn random_u64() -> u64 {
        RANDOM
            .with(|r| r.borrow_mut().pop_front())
            .unwrap_or_else(|| FALLBACK_STATE.with(splitmix64))
    }

    /// SplitMix64: deterministic, good enough to spread test buckets; not a CSPRNG.
    fn splitmix64(state: &Cell<u64>) -> u64 {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Starts a test request for `path_and_query` (e.g. `/p?a=1`): `GET https://example.com`, desktop client.
pub fn request(path_and_query: &str) -> RequestBuilder {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (path_and_query, None),
    };
    RequestBuilder {
        req: Request {
            method: "GET".into(),
            scheme: "https".into(),
            authority: "example.com".into(),
            path: path.into(),
            query,
            headers: Vec::new(),
            client: ClientInfo {
                ip: "192.0.2.1".into(),
                country: None,
                device: DeviceClass::Desktop,
            },
        },
    }
}

/// Builds a [`Request`] for tests; start with [`request`].
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    req: Request,
}

impl RequestBuilder {
    /// Sets the method (stored upper-cased, as the host sends it).
    pub fn method(mut self, method: &str) -> Self {
        self.req.method = method.to_ascii_uppercase();
        self
    }

    /// Sets the scheme (`http` or `https`).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.req.scheme = scheme.into();
        self
    }

    /// Sets the authority (host and optional port), kept as given.
    pub fn authority(mut self, authority: &str) -> Self {
        self.req.authority = authority.into();
        self
    }

    /// Adds a header; the name is lower-cased, as the host sends it.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.req
            .headers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the client's device class.
    pub fn device(mut self, device: DeviceClass) -> Self {
        self.req.client.device = device;
        self
    }

    /// Sets the client's country code.
    pub fn country(mut self, country: &str) -> Self {
        self.req.client.country = Some(country.into());
        self
    }

    /// Sets the client's IP address.
    pub fn ip(mut self, ip: &str) -> Self {
        self.req.client.ip = ip.into();
        self
    }

    /// Finishes the request.
    pub fn build(self) -> Request {
        self.req
    }
}

/// Starts a test response head with `status` and no headers.
pub fn response(status: u16) -> ResponseBuilder {
    ResponseBuilder {
        head: ResponseHead {
            status,
            headers: Vec::new(),
        },
    }
}

/// Builds a [`ResponseHead`] for tests; start with [`response`].
#[derive(Clone, Debug)]
pub struct ResponseBuilder {
    head: ResponseHead,
}

impl ResponseBuilder {
    /// Adds a header; the name is lower-cased, as the host sends it.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head
            .headers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Finishes the response head.
    pub fn build(self) -> ResponseHead {
        self.head
    }
}

/// What the host learns when it loads `S`: which hooks it will call, and `keep_state`; `S` needs `#[tessera_sdk::script]`.
///
/// ```
/// use tessera_sdk::{testing, EdgeScript, HookSet, Request};
///
/// struct KeyOnly;
///
/// #[tessera_sdk::script]
/// impl EdgeScript for KeyOnly {
///     fn cache_key(_req: &Request, default_key: &str) -> String {
///         default_key.to_uppercase()
///     }
/// }
///
/// let info = testing::describe::<KeyOnly>();
/// assert_eq!(info.hooks, HookSet::CACHE_KEY);
/// assert!(!info.hooks.contains(HookSet::ON_RESPONSE), "the host never calls on_response");
/// assert!(!info.keep_state);
/// ```
pub fn describe<S: Described>() -> ScriptInfo {
    crate::__private::describe::<S>()
}

/// Calls `S::on_request` through the export glue; the host calls it only if [`describe`] lists it.
pub fn call_on_request<S: EdgeScript>(req: &Request) -> RequestAction {
    crate::__private::on_request::<S>(req.into())
}

/// Calls `S::cache_key` through the export glue; the host calls it only if [`describe`] lists it.
///
/// A script that declared `key_reads(..)` sees only those parts of `req`, as in the proxy.
pub fn call_cache_key<S: Described>(req: &Request, default_key: &str) -> String {
    let wire = match S::info().key_reads {
        Some(reads) => (&req.as_read_by(&reads)).into(),
        None => req.into(),
    };
    crate::__private::cache_key::<S>(wire, default_key.to_owned())
}

/// Calls `S::cache_policy` through the export glue; the host calls it only if [`describe`] lists it.
pub fn call_cache_policy<S: EdgeScript>(
    req: &Request,
    resp: &ResponseHead,
    proposed: &CacheDecision,
) -> CacheDecision {
    crate::__private::cache_policy::<S>(req.into(), resp.into(), proposed.clone())
}

/// Calls `S::on_response` through the export glue; the host calls it only if [`describe`] lists it.
pub fn call_on_response<S: EdgeScript>(req: &Request, resp: &ResponseHead) -> HeaderEdits {
    crate::__private::on_response::<S>(req.into(), resp.into())
}

/// Calls `S::html_handlers` through the export glue; the host calls it only if [`describe`] lists [`HookSet::HTML`](crate::HookSet::HTML).
///
/// The host calls it for every HTML response, then the callbacks below on the same
/// instance; a test may call them in the same order on its thread, so a `thread_local!`
/// set here is seen by the `call_on_*` that follow.
pub fn call_html_handlers<S: EdgeScript>(req: &Request, resp: &ResponseHead) -> Vec<HtmlHandler> {
    crate::__private::html_handlers::<S>(req.into(), resp.into())
}

/// Calls `S::on_element` for handler number `handler` on start tag `el` (see [`element`]):
/// the changes it recorded, as the host receives them.
///
/// ```
/// use tessera_sdk::{testing, ContentType, EdgeScript, Element, ElementMutation};
///
/// struct Strip;
///
/// #[tessera_sdk::script]
/// impl EdgeScript for Strip {
///     fn on_element(_handler: u32, el: &mut Element) {
///         if el.get_attribute("data-private").is_some() {
///             el.remove();
///         }
///     }
/// }
///
/// let el = testing::element("div").attr("data-private", "").build();
/// assert_eq!(testing::call_on_element::<Strip>(0, &el), [ElementMutation::Remove]);
/// assert!(testing::call_on_element::<Strip>(0, &testing::element("div").build()).is_empty());
/// ```
pub fn call_on_element<S: EdgeScript>(handler: u32, el: &ElementRecord) -> Vec<ElementMutation> {
    crate::__private::on_element::<S>(handler, el.clone())
}

/// Calls `S::on_element_end` for handler number `handler` at end tag `tag`: the changes it recorded.
pub fn call_on_element_end<S: EdgeScript>(handler: u32, tag: &str) -> Vec<NodeMutation> {
    crate::__private::on_element_end::<S>(handler, tag.to_owned())
}

/// Calls `S::on_text` for handler number `handler` with `text` (as written in the source)
/// and whether it ends its text node: the changes it recorded.
pub fn call_on_text<S: EdgeScript>(handler: u32, text: &str, last: bool) -> Vec<NodeMutation> {
    crate::__private::on_text::<S>(handler, text.to_owned(), last)
}

/// Calls `S::on_comment` for handler number `handler` with a comment's `text` (without `<!--` `-->`): the changes it recorded.
pub fn call_on_comment<S: EdgeScript>(handler: u32, text: &str) -> Vec<NodeMutation> {
    crate::__private::on_comment::<S>(handler, text.to_owned())
}

/// Calls `S::on_document_end`: the content it appended.
pub fn call_on_document_end<S: EdgeScript>() -> Vec<Content> {
    crate::__private::on_document_end::<S>()
}

/// Starts a test start tag `tag` (lower-cased, as the host sends it) with no attributes.
pub fn element(tag: &str) -> ElementBuilder {
    ElementBuilder {
        el: ElementRecord {
            tag: tag.to_ascii_lowercase(),
            attributes: Vec::new(),
        },
    }
}

/// Builds an [`ElementRecord`] for [`call_on_element`]; start with [`element`].
#[derive(Clone, Debug)]
pub struct ElementBuilder {
    el: ElementRecord,
}

impl ElementBuilder {
    /// Adds attribute `name` (lower-cased, as the host sends it) with `value`, as written in
    /// the source; `""` for an attribute without a value (`<p hidden>`).
    pub fn attr(mut self, name: &str, value: &str) -> Self {
        self.el
            .attributes
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Finishes the start tag.
    pub fn build(self) -> ElementRecord {
        self.el
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{log, now_ms, random_u64};

    #[test]
    fn random_replays_the_set_sequence_then_falls_back_deterministically() {
        set_random(vec![1, 2]);
        assert_eq!((random_u64(), random_u64()), (1, 2));
        let a = random_u64();
        reset();
        assert_eq!(random_u64(), a, "fallback restarts from the same seed");
    }

    #[test]
    fn clock_can_be_pinned() {
        set_now_ms(1_700_000_000_000);
        assert_eq!(now_ms(), 1_700_000_000_000);
        reset();
        assert!(now_ms() > 1_600_000_000_000);
    }

    #[test]
    fn logs_are_recorded() {
        log(LogLevel::Warn, "odd");
        assert_eq!(take_logs(), [(LogLevel::Warn, "odd".to_string())]);
        assert!(take_logs().is_empty());
    }

    #[test]
    fn request_builder_splits_path_and_query() {
        let req = request("/a/b?x=1")
            .method("post")
            .authority("Shop.Example:8443")
            .header("User-Agent", "t")
            .device(DeviceClass::Mobile)
            .country("NL")
            .ip("2001:db8::1")
            .scheme("http")
            .build();
        assert_eq!(
            (req.path.as_str(), req.query.as_deref()),
            ("/a/b", Some("x=1"))
        );
        assert_eq!(req.method, "POST");
        assert_eq!(req.headers[0].0, "user-agent");
        assert_eq!(req.client.device, DeviceClass::Mobile);
        assert_eq!(request("/").build().query, None);
    }

    #[test]
    fn element_builder_lower_cases_names_and_keeps_values() {
        let el = element("DIV")
            .attr("Data-X", "A &amp; B")
            .attr("hidden", "")
            .build();
        assert_eq!(el.tag, "div");
        assert_eq!(
            el.attributes,
            [
                ("data-x".to_string(), "A &amp; B".to_string()),
                ("hidden".to_string(), String::new())
            ]
        );
    }
}
