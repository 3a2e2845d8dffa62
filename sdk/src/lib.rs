//! Write Tessera edge scripts in Rust: cache keys, cache policy, header edits and HTML rewriting.
//!
//! A script is a type implementing [`EdgeScript`], whose impl block carries the
//! [`#[tessera_sdk::script]`](script) attribute, built to a WebAssembly component. The
//! proxy calls its hooks along each request's path. The attribute reads which hook methods
//! the impl block defines and tells the host once, when it loads the script; the host then
//! calls only those, and for every other hook does what that hook's default body does
//! (see [`EdgeScript`]) without calling the script at all. There is nothing to declare per
//! hook: defining the method is the declaration.
//!
//! # A complete script
//!
//! ```
//! use tessera_sdk::{
//!     CacheDecision, EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead,
//!     SyntheticResponse,
//! };
//!
//! struct Shop;
//!
//! #[tessera_sdk::script]
//! impl EdgeScript for Shop {
//!     fn on_request(req: &Request) -> RequestAction {
//!         if req.path == "/old-home" {
//!             return SyntheticResponse::redirect(301, "/").into();
//!         }
//!         RequestAction::proceed_with(HeaderEdits::new().remove("x-debug"))
//!     }
//!
//!     fn cache_key(req: &Request, _default_key: &str) -> String {
//!         let mut query = req.query();
//!         query.remove_prefix("utm_").remove("fbclid").sort();
//!         let lang = req.cookie("lang").unwrap_or("en");
//!         if query.is_empty() {
//!             format!("{}{}#{lang}", req.authority, req.path)
//!         } else {
//!             format!("{}{}?{query}#{lang}", req.authority, req.path)
//!         }
//!     }
//!
//!     fn cache_policy(req: &Request, resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
//!         if req.path.starts_with("/account") {
//!             return proposed.no_store();
//!         }
//!         match resp.media_type().as_deref() {
//!             Some("application/json") => proposed.with_ttl(300).with_tag("api"),
//!             _ => proposed,
//!         }
//!     }
//!
//!     // `on_response` is not defined: the host makes no header edits and never calls it.
//! }
//!
//! # use tessera_sdk::{testing, HookSet};
//! # let req = testing::request("/p?utm_source=x&b=2&a=1").header("cookie", "lang=nl").build();
//! # assert_eq!(testing::call_cache_key::<Shop>(&req, "ignored"), "example.com/p?a=1&b=2#nl");
//! # let info = testing::describe::<Shop>();
//! # assert_eq!(info.hooks, HookSet::ON_REQUEST | HookSet::CACHE_KEY | HookSet::CACHE_POLICY);
//! # assert!(!info.keep_state);
//! ```
//!
//! Use the attribute once per script crate: the component exports exactly one script.
//!
//! # State between hooks, and `keep_state`
//!
//! Every request gets its own instance of the script, so nothing a script keeps in memory
//! survives from one request to the next. Within a request, the host releases the instance
//! while the request waits on the origin (or on another request already fetching the same
//! entry), and the next phase may run in a fresh instance. So a `thread_local!` set in
//! `on_request` or `cache_key` is **not** guaranteed to be there in `cache_policy` or
//! `on_response`.
//!
//! The preferred way to carry a value forward is a request header: `on_request` sets it
//! with [`RequestAction::proceed_with`], and every later hook sees the edited request (so
//! does the origin). Setting it also overrides whatever the client sent under that name.
//!
//! ```
//! use tessera_sdk::{random_u64, EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};
//!
//! struct Trace;
//!
//! #[tessera_sdk::script]
//! impl EdgeScript for Trace {
//!     fn on_request(_req: &Request) -> RequestAction {
//!         let id = format!("{:016x}", random_u64());
//!         RequestAction::proceed_with(HeaderEdits::new().set("x-trace-id", id))
//!     }
//!
//!     fn on_response(req: &Request, _resp: &ResponseHead) -> HeaderEdits {
//!         match req.header("x-trace-id") {
//!             Some(id) => HeaderEdits::new().set("x-trace-id", id),
//!             None => HeaderEdits::new(),
//!         }
//!     }
//! }
//! # use tessera_sdk::testing;
//! # testing::set_random(vec![255]);
//! # let RequestAction::Continue(edits) = testing::call_on_request::<Trace>(&testing::request("/").build()) else { panic!() };
//! # assert_eq!(edits.set, [("x-trace-id".to_string(), "00000000000000ff".to_string())]);
//! ```
//!
//! The HTML rewrite is the exception: the [`html`] callbacks of a response always run on
//! the instance that ran its [`html_handlers`](EdgeScript::html_handlers), so a
//! `thread_local!` set there is there for them (see [Rewriting HTML](#rewriting-html)).
//!
//! A script that keeps nothing of one request for the next (or sets what it keeps afresh
//! in every request, before reading it) may say so with
//! `#[tessera_sdk::script(reusable)]`: a site that sets `instance_reuse` may then let one
//! instance serve several requests in turn, which saves most of a script's per-request
//! cost. Without it the host gives every request a fresh instance, whatever the site says.
//!
//! A `cache_key` that reads only some of a request may say which, e.g.
//! `#[tessera_sdk::script(key_reads(authority, path, query, device, headers("x-ab")))]`
//! (parts: `method`, `scheme`, `authority`, `path`, `query`, `client_ip`, `country`,
//! `device`; `headers(..)` lists lower-case names). The host then passes `cache_key` only
//! those parts, every other one empty (`""`, `None`, no headers, [`DeviceClass::Desktop`]),
//! and [`testing::call_cache_key`] does the same; where `cache_key` is the script's only
//! hook, a site that sets `key_memo_kib` may then reuse a key for requests equal in all
//! of them, without calling the script.
//!
//! When a script really needs in-memory state across a whole request, write
//! `#[tessera_sdk::script(keep_state)]`: the host then keeps one instance for the request
//! from its first hook to its last, also while it waits on the origin. That instance holds
//! a slot of the host's instance pool all that time, so fewer requests can be in flight
//! at once; prefer the header when it will do.
//!
//! # Rewriting HTML
//!
//! A script can also rewrite HTML pages as they stream to the client, with an API like
//! Cloudflare's HTMLRewriter (the host runs lol_html). [`EdgeScript::html_handlers`] says,
//! per response, which elements the script wants to see, as CSS selectors; the host then
//! calls [`on_element`](EdgeScript::on_element), [`on_element_end`](EdgeScript::on_element_end),
//! [`on_text`](EdgeScript::on_text), [`on_comment`](EdgeScript::on_comment) and
//! [`on_document_end`](EdgeScript::on_document_end) as matching markup goes by, and applies
//! the changes they record. Defining any of these six methods tells the host the script
//! rewrites HTML ([`HookSet::HTML`]). So a page can be cached once for everybody and
//! personalised on the way out:
//!
//! ```
//! use std::cell::RefCell;
//!
//! use tessera_sdk::{ContentType, EdgeScript, Element, HtmlHandler, Request, ResponseHead};
//!
//! thread_local! {
//!     /// The visitor's name, read once per response by `html_handlers`.
//!     static NAME: RefCell<Option<String>> = const { RefCell::new(None) };
//! }
//!
//! struct Greet;
//!
//! #[tessera_sdk::script]
//! impl EdgeScript for Greet {
//!     fn html_handlers(req: &Request, _resp: &ResponseHead) -> Vec<HtmlHandler> {
//!         let Some(name) = req.cookie("name") else {
//!             return Vec::new(); // no rewrite: the cached page as it is
//!         };
//!         NAME.with(|n| *n.borrow_mut() = Some(name.to_owned()));
//!         vec![HtmlHandler::new("#greeting").element()]
//!     }
//!
//!     fn on_element(_handler: u32, el: &mut Element) {
//!         if let Some(name) = NAME.with(|n| n.borrow().clone()) {
//!             // Text, not HTML: the host escapes whatever the cookie holds.
//!             el.set_inner_content(&format!("Hello, {name}"), ContentType::Text);
//!         }
//!     }
//! }
//! # use tessera_sdk::{testing, Content, ElementMutation};
//! # let req = testing::request("/").header("cookie", "name=<b>Ann").build();
//! # let resp = testing::response(200).header("content-type", "text/html").build();
//! # assert_eq!(testing::call_html_handlers::<Greet>(&req, &resp).len(), 1);
//! # let el = testing::element("p").attr("id", "greeting").build();
//! # assert_eq!(
//! #     testing::call_on_element::<Greet>(0, &el),
//! #     [ElementMutation::SetInnerContent(Content::new("Hello, <b>Ann", ContentType::Text))]
//! # );
//! ```
//!
//! Text and attribute values are shown as written in the source (entities not decoded);
//! content inserted as [`ContentType::Text`] is escaped by the host. The host caps what a
//! callback may return, and a callback that fails aborts the response; the [`html`]
//! module has the details.
//!
//! # Building
//!
//! The script crate is a `cdylib` (plus `rlib`, so its unit tests run natively):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! tessera-sdk = "0.1"
//! ```
//!
//! Depend on it under the name `tessera-sdk`: the attribute's generated code refers to
//! `::tessera_sdk`.
//!
//! Build it for `wasm32-unknown-unknown` with `wasm-component-ld` (shipped with rustup's
//! wasm target) as linker; that yields a component importing only the three `tessera:edge`
//! host interfaces, no WASI. Put this in the crate's `.cargo/config.toml`:
//!
//! ```toml
//! [target.wasm32-unknown-unknown]
//! linker = "wasm-component-ld"
//! ```
//!
//! and run `cargo build --release --target wasm32-unknown-unknown`.
//!
//! # Testing
//!
//! Hooks are plain functions: call them in `#[test]`s with requests from
//! [`testing::request`]. [`log`], [`now_ms`], [`random_u64`], [`config`] and
//! [`rate_limit`] are backed by the [`testing`] seam on native targets. `testing::call_*` run a hook or an HTML callback
//! through the same glue as the component's exports (the callbacks return the changes they
//! recorded, [`testing::element`] builds a start tag for `call_on_element`), and
//! [`testing::describe`] returns what the host learns at load: which hooks it will call,
//! whether it keeps state, and what its `cache_key` reads.
//!
//! # Mistakes the attribute catches
//!
//! An unknown argument (the message is ``expected `keep_state`, `reusable` or `key_reads(..)` ``):
//!
//! ```compile_fail
//! # use tessera_sdk::EdgeScript;
//! struct Shop;
//!
//! #[tessera_sdk::script(keepstate)]
//! impl EdgeScript for Shop {}
//! ```
//!
//! Anything but an `impl EdgeScript for YourType` block:
//!
//! ```compile_fail
//! #[tessera_sdk::script]
//! struct Shop;
//! ```
//!
//! And a script type without the attribute cannot be described, so it is never exported
//! by accident with a wrong hook list:
//!
//! ```compile_fail
//! # use tessera_sdk::{testing, EdgeScript};
//! struct Shop;
//! impl EdgeScript for Shop {}
//!
//! let _ = testing::describe::<Shop>();
//! ```
//!
//! # Failures
//!
//! A panic traps the instance; the host then applies the site's `on_guest_error` policy
//! (in an HTML callback once the body has started, it cuts the stream instead; see
//! [`html`]). Before trapping, the SDK logs the panic message and location at `error` level through
//! the host's log, so a failing script says why.

#![warn(missing_docs)]

// The generated code names this crate `tessera_sdk`, also from inside it (tests).
extern crate self as tessera_sdk;

#[allow(missing_docs)]
pub mod bindings;
mod edits;
mod host;
pub mod html;
mod query;
mod request;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bindings::exports::tessera::edge::hooks::{HookSet, ScriptInfo};
pub use bindings::tessera::edge::log::Level as LogLevel;
pub use bindings::tessera::edge::types::{
    CacheDecision, ClientInfo, DeviceClass, HeaderEdits, RequestAction, RequestParts, RequestReads,
    SyntheticResponse,
};
pub use host::{config, log, now_ms, random_u64, rate_limit};
pub use html::{
    Comment, Content, ContentType, DocumentEnd, Element, ElementMutation, EndTag, HtmlHandler,
    NodeMutation, TextChunk, TextMode,
};
pub use query::Query;
pub use request::{Request, ResponseHead};
// Documented in its own crate; rustdoc shows those docs here.
pub use tessera_sdk_macros::script;

/// An edge script: one hook per point on a request's path, and the HTML rewrite's
/// callbacks, each with a default.
///
/// Hooks are associated functions, not methods: the host instantiates the script for every
/// request, so there is no script object to keep state in. Define only the hooks the script
/// needs, in an impl block marked [`#[tessera_sdk::script]`](script); the host never calls
/// the others and does what their default bodies below do. Those bodies are what a test
/// gets when it calls a hook the script does not define.
pub trait EdgeScript {
    /// Called first for every request, before the cache lookup: edit request headers,
    /// answer at once (redirect, block) with [`RequestAction::respond`], or send the request
    /// past the cache to the origin (a signed-in user) with [`RequestAction::pass_with`].
    /// Later hooks see the request with these edits applied.
    ///
    /// Default, and what the host does when the script does not define it: continue with
    /// no edits.
    fn on_request(req: &Request) -> RequestAction {
        let _ = req;
        RequestAction::proceed()
    }

    /// Called for every request that may be served from cache, after `on_request`, to name
    /// the cache entry. `default_key` is authority + path + normalised query (tracking
    /// parameters dropped, the rest sorted). Responses still vary by `Vary` within a key.
    ///
    /// Default, and what the host does when the script does not define it: `default_key`.
    fn cache_key(req: &Request, default_key: &str) -> String {
        let _ = req;
        default_key.to_owned()
    }

    /// Called when an origin response arrives, before it is stored. `proposed` is what the
    /// RFC 9111 rules (with RFC 5861 and RFC 9213 extensions) give; return it changed to
    /// set TTLs, stale windows and purge tags, or to refuse storage.
    ///
    /// Default, and what the host does when the script does not define it: `proposed`.
    fn cache_policy(req: &Request, resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        let _ = (req, resp);
        proposed
    }

    /// Called before delivery of every response, hit or miss, to edit the headers the
    /// client sees (e.g. add `set-cookie`); the cached copy is not changed.
    ///
    /// Default, and what the host does when the script does not define it: no edits.
    fn on_response(req: &Request, resp: &ResponseHead) -> HeaderEdits {
        let _ = (req, resp);
        HeaderEdits::new()
    }

    /// Called once before delivery of every HTML response, hit or miss (a `GET` answered
    /// with a whole 2xx `text/html` document, after ESI assembly, before the head is sent):
    /// the [`HtmlHandler`]s this script wants for the streaming rewrite of its body. The
    /// `html` callbacks below then run on the same instance while the body streams, so
    /// values computed here may be kept in a `thread_local!` for them (see [`html`]). The
    /// cached copy is not changed.
    ///
    /// Default, and what the host does when the script defines none of the `html` hooks:
    /// no handlers, so no rewrite.
    fn html_handlers(req: &Request, resp: &ResponseHead) -> Vec<HtmlHandler> {
        let _ = (req, resp);
        Vec::new()
    }

    /// Called at the start tag of each element matched by handler number `handler` (its
    /// index in the list [`html_handlers`](Self::html_handlers) returned) when that handler
    /// asked for [`element()`](HtmlHandler::element). Read and change `el`; the host applies
    /// the changes to the output.
    ///
    /// Default: no changes.
    fn on_element(handler: u32, el: &mut Element) {
        let _ = (handler, el);
    }

    /// Called at the end tag of each element matched by handler number `handler` when that
    /// handler asked for [`end_tag()`](HtmlHandler::end_tag).
    ///
    /// Default: no changes.
    fn on_element_end(handler: u32, end: &mut EndTag) {
        let _ = (handler, end);
    }

    /// Called for the text inside elements matched by handler number `handler` when that
    /// handler asked for [`text(..)`](HtmlHandler::text): each chunk, or each whole text
    /// node, as the handler's [`TextMode`] says. The text is as written in the source.
    ///
    /// Default: no changes.
    fn on_text(handler: u32, text: &mut TextChunk) {
        let _ = (handler, text);
    }

    /// Called for each comment inside elements matched by handler number `handler` when
    /// that handler asked for [`comments()`](HtmlHandler::comments).
    ///
    /// Default: no changes.
    fn on_comment(handler: u32, comment: &mut Comment) {
        let _ = (handler, comment);
    }

    /// Called once at the end of an HTML response's body, when
    /// [`html_handlers`](Self::html_handlers) returned at least one handler for it: append
    /// content there.
    ///
    /// Default: nothing appended.
    fn on_document_end(doc: &mut DocumentEnd) {
        let _ = doc;
    }
}

/// Glue between `#[script]`, [`EdgeScript`] and the generated `Guest` trait; also used by [`testing`].
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::tessera::edge::types::{
        Request as WireRequest, ResponseHead as WireResponseHead,
    };
    use crate::html::ElementRecord;
    use crate::{
        CacheDecision, Comment, Content, DocumentEnd, EdgeScript, Element, ElementMutation, EndTag,
        HeaderEdits, HtmlHandler, NodeMutation, Request, RequestAction, ResponseHead, ScriptInfo,
        TextChunk,
    };

    /// What `#[tessera_sdk::script]` read from a script's impl block: the host's `describe` answer.
    pub trait Described: EdgeScript {
        /// The hooks the impl block defines, and the attribute's flags and `key_reads`.
        fn info() -> ScriptInfo;
    }

    /// Answers the host's `describe` call for `S`.
    pub fn describe<S: Described>() -> ScriptInfo {
        enter();
        S::info()
    }

    /// Runs `S::on_request` for the host.
    pub fn on_request<S: EdgeScript>(req: WireRequest) -> RequestAction {
        enter();
        S::on_request(&Request::from(req))
    }

    /// Runs `S::cache_key` for the host.
    pub fn cache_key<S: EdgeScript>(req: WireRequest, default_key: String) -> String {
        enter();
        S::cache_key(&Request::from(req), &default_key)
    }

    /// Runs `S::cache_policy` for the host.
    pub fn cache_policy<S: EdgeScript>(
        req: WireRequest,
        resp: WireResponseHead,
        proposed: CacheDecision,
    ) -> CacheDecision {
        enter();
        S::cache_policy(&Request::from(req), &ResponseHead::from(resp), proposed)
    }

    /// Runs `S::on_response` for the host.
    pub fn on_response<S: EdgeScript>(req: WireRequest, resp: WireResponseHead) -> HeaderEdits {
        enter();
        S::on_response(&Request::from(req), &ResponseHead::from(resp))
    }

    /// Runs `S::html_handlers` for the host.
    pub fn html_handlers<S: EdgeScript>(
        req: WireRequest,
        resp: WireResponseHead,
    ) -> Vec<HtmlHandler> {
        enter();
        S::html_handlers(&Request::from(req), &ResponseHead::from(resp))
    }

    /// Runs `S::on_element` for the host: the changes it recorded.
    pub fn on_element<S: EdgeScript>(handler: u32, el: ElementRecord) -> Vec<ElementMutation> {
        enter();
        let mut el = Element::from_record(el);
        S::on_element(handler, &mut el);
        el.into_mutations()
    }

    /// Runs `S::on_element_end` for the host: the changes it recorded.
    pub fn on_element_end<S: EdgeScript>(handler: u32, tag: String) -> Vec<NodeMutation> {
        enter();
        let mut end = EndTag::new(tag);
        S::on_element_end(handler, &mut end);
        end.into_mutations()
    }

    /// Runs `S::on_text` for the host: the changes it recorded.
    pub fn on_text<S: EdgeScript>(handler: u32, text: String, last: bool) -> Vec<NodeMutation> {
        enter();
        let mut chunk = TextChunk::new(text, last);
        S::on_text(handler, &mut chunk);
        chunk.into_mutations()
    }

    /// Runs `S::on_comment` for the host: the changes it recorded.
    pub fn on_comment<S: EdgeScript>(handler: u32, text: String) -> Vec<NodeMutation> {
        enter();
        let mut comment = Comment::new(text);
        S::on_comment(handler, &mut comment);
        comment.into_mutations()
    }

    /// Runs `S::on_document_end` for the host: the content it appended.
    pub fn on_document_end<S: EdgeScript>() -> Vec<Content> {
        enter();
        let mut doc = DocumentEnd::new();
        S::on_document_end(&mut doc);
        doc.into_contents()
    }

    /// Done on entry to every export.
    fn enter() {
        #[cfg(target_arch = "wasm32")]
        report_panics_to_host();
    }

    /// Sends a panic's message and location to the host's log before the instance traps;
    /// `wasm32-unknown-unknown` has no stderr, so it would otherwise be lost.
    #[cfg(target_arch = "wasm32")]
    fn report_panics_to_host() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = info
                    .payload_as_str()
                    .unwrap_or("(non-string panic payload)");
                let line = match info.location() {
                    Some(at) => format!("script panicked at {at}: {message}"),
                    None => format!("script panicked: {message}"),
                };
                crate::log(crate::LogLevel::Error, &line);
            }));
        });
    }
}

/// Exports `$script` as this component's `tessera:edge/hooks` and `tessera:edge/html`; emitted by `#[tessera_sdk::script]`.
///
/// Not for direct use: the attribute also generates the [`__private::Described`] impl
/// this glue needs.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_script {
    ($script:ty) => {
        const _: () = {
            #[doc(hidden)]
            struct __TesseraExport;

            impl $crate::bindings::exports::tessera::edge::hooks::Guest for __TesseraExport {
                fn describe() -> $crate::ScriptInfo {
                    $crate::__private::describe::<$script>()
                }

                fn on_request(req: $crate::__private::WireRequest) -> $crate::RequestAction {
                    $crate::__private::on_request::<$script>(req)
                }

                fn cache_key(
                    req: $crate::__private::WireRequest,
                    default_key: ::std::string::String,
                ) -> ::std::string::String {
                    $crate::__private::cache_key::<$script>(req, default_key)
                }

                fn cache_policy(
                    req: $crate::__private::WireRequest,
                    resp: $crate::__private::WireResponseHead,
                    proposed: $crate::CacheDecision,
                ) -> $crate::CacheDecision {
                    $crate::__private::cache_policy::<$script>(req, resp, proposed)
                }

                fn on_response(
                    req: $crate::__private::WireRequest,
                    resp: $crate::__private::WireResponseHead,
                ) -> $crate::HeaderEdits {
                    $crate::__private::on_response::<$script>(req, resp)
                }

                fn html_handlers(
                    req: $crate::__private::WireRequest,
                    resp: $crate::__private::WireResponseHead,
                ) -> ::std::vec::Vec<$crate::HtmlHandler> {
                    $crate::__private::html_handlers::<$script>(req, resp)
                }
            }

            impl $crate::bindings::exports::tessera::edge::html::Guest for __TesseraExport {
                fn on_element(
                    handler: u32,
                    el: $crate::html::ElementRecord,
                ) -> ::std::vec::Vec<$crate::ElementMutation> {
                    $crate::__private::on_element::<$script>(handler, el)
                }

                fn on_element_end(
                    handler: u32,
                    tag: ::std::string::String,
                ) -> ::std::vec::Vec<$crate::NodeMutation> {
                    $crate::__private::on_element_end::<$script>(handler, tag)
                }

                fn on_text(
                    handler: u32,
                    text: ::std::string::String,
                    last: bool,
                ) -> ::std::vec::Vec<$crate::NodeMutation> {
                    $crate::__private::on_text::<$script>(handler, text, last)
                }

                fn on_comment(
                    handler: u32,
                    text: ::std::string::String,
                ) -> ::std::vec::Vec<$crate::NodeMutation> {
                    $crate::__private::on_comment::<$script>(handler, text)
                }

                fn on_document_end() -> ::std::vec::Vec<$crate::Content> {
                    $crate::__private::on_document_end::<$script>()
                }
            }

            // Native builds (unit tests) skip the C-ABI exports: their `pkg:iface#fn` symbol
            // names are only valid for wasm linkers and break native cdylib linking.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::__export_edge_script!(__TesseraExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use crate::testing::{
        call_cache_key, call_cache_policy, call_html_handlers, call_on_comment,
        call_on_document_end, call_on_element, call_on_element_end, call_on_request,
        call_on_response, call_on_text, describe, element, request, response,
    };
    use crate::{
        CacheDecision, Comment, Content, ContentType, DeviceClass, DocumentEnd, EdgeScript,
        Element, ElementMutation, EndTag, HeaderEdits, HookSet, HtmlHandler, NodeMutation, Request,
        RequestAction, RequestParts, ResponseHead, ScriptInfo, TextChunk, TextMode,
    };

    struct Empty;
    #[crate::script]
    impl EdgeScript for Empty {}

    struct KeyOnly;
    #[crate::script]
    impl EdgeScript for KeyOnly {
        fn cache_key(req: &Request, default_key: &str) -> String {
            format!("{default_key}#{}", req.client.device)
        }
    }

    /// Reads only the path and `x-user`, but tries to put everything in its key.
    struct Limited;
    #[crate::script(key_reads(path, headers("x-user", "x-ab")))]
    impl EdgeScript for Limited {
        fn cache_key(req: &Request, _: &str) -> String {
            format!(
                "{}|{}|{}|{:?}|{:?}|{}|{}",
                req.method,
                req.authority,
                req.path,
                req.query,
                req.headers,
                req.client.ip,
                req.client.device
            )
        }
    }

    /// Every hook defined, each returning exactly what the default would; and keep_state.
    struct Everything;
    #[crate::script(keep_state)]
    impl EdgeScript for Everything {
        fn on_request(_req: &Request) -> RequestAction {
            RequestAction::proceed()
        }
        fn cache_key(_req: &Request, default_key: &str) -> String {
            default_key.to_owned()
        }
        fn cache_policy(_: &Request, _: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
            proposed
        }
        fn on_response(_: &Request, _: &ResponseHead) -> HeaderEdits {
            HeaderEdits::new()
        }
        fn html_handlers(_: &Request, _: &ResponseHead) -> Vec<HtmlHandler> {
            Vec::new()
        }
        fn on_element(_: u32, _: &mut Element) {}
        fn on_element_end(_: u32, _: &mut EndTag) {}
        fn on_text(_: u32, _: &mut TextChunk) {}
        fn on_comment(_: u32, _: &mut Comment) {}
        fn on_document_end(_: &mut DocumentEnd) {}
    }

    /// Only one HTML callback defined: that alone makes the script an HTML rewriter.
    struct TextOnly;
    #[crate::script]
    impl EdgeScript for TextOnly {
        fn on_text(handler: u32, text: &mut TextChunk) {
            let upper = format!("{handler}:{}", text.as_str().to_uppercase());
            text.replace(&upper, ContentType::Html);
        }
    }

    thread_local! {
        static SEEN_PATH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    /// Every HTML hook, using a value `html_handlers` kept for the callbacks.
    struct Rewriter;
    #[crate::script]
    impl EdgeScript for Rewriter {
        fn html_handlers(req: &Request, _: &ResponseHead) -> Vec<HtmlHandler> {
            SEEN_PATH.with(|p| req.path.clone_into(&mut p.borrow_mut()));
            vec![
                HtmlHandler::new("a").element().end_tag(),
                HtmlHandler::new("p").text(TextMode::Whole).comments(),
            ]
        }
        fn on_element(handler: u32, el: &mut Element) {
            let path = SEEN_PATH.with(|p| p.borrow().clone());
            el.set_attribute("data-path", &path);
            el.set_attribute("data-handler", &handler.to_string());
            if el.get_attribute("data-path").is_some() {
                el.remove_attribute("href");
            }
        }
        fn on_element_end(_: u32, end: &mut EndTag) {
            let name = end.name().to_owned();
            end.after(&name, ContentType::Text);
        }
        fn on_comment(_: u32, comment: &mut Comment) {
            if comment.text().contains("secret") {
                comment.remove();
            }
        }
        fn on_document_end(doc: &mut DocumentEnd) {
            doc.append("<!--done-->", ContentType::Html);
        }
    }

    /// A hook compiled out by `#[cfg]` is not described.
    struct Configured;
    #[crate::script]
    impl EdgeScript for Configured {
        #[cfg(any())]
        fn on_request(_req: &Request) -> RequestAction {
            unreachable!()
        }
        #[cfg(test)]
        fn on_response(_: &Request, _: &ResponseHead) -> HeaderEdits {
            HeaderEdits::new().set("x-configured", "1")
        }
    }

    #[test]
    fn describe_lists_exactly_the_defined_hooks() {
        assert_eq!(
            describe::<Empty>(),
            ScriptInfo {
                hooks: HookSet::empty(),
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
        assert_eq!(
            describe::<KeyOnly>(),
            ScriptInfo {
                hooks: HookSet::CACHE_KEY,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
        assert_eq!(
            describe::<Everything>(),
            ScriptInfo {
                hooks: HookSet::all(),
                keep_state: true,
                reusable: false,
                key_reads: None,
            }
        );
        assert_eq!(describe::<Configured>().hooks, HookSet::ON_RESPONSE);
        assert_eq!(describe::<TextOnly>().hooks, HookSet::HTML);
        assert_eq!(describe::<Rewriter>().hooks, HookSet::HTML);
    }

    #[test]
    fn a_key_hook_that_declares_its_reads_sees_nothing_else() {
        let info = describe::<Limited>();
        let reads = info.key_reads.expect("declared");
        assert_eq!(reads.parts, RequestParts::PATH);
        assert_eq!(reads.headers, ["x-user", "x-ab"]);
        // Fields arrive as the host passes them: by declared name, then in arrival order.
        let req = request("/p?q=1")
            .header("x-ab", "1")
            .header("x-user", "ann")
            .header("cookie", "s=1")
            .header("x-ab", "2")
            .header("user-agent", "Mozilla/5.0 (iPhone; Mobile)")
            .device(DeviceClass::Mobile)
            .build();
        assert_eq!(
            call_cache_key::<Limited>(&req, "k"),
            r#"||/p|None|[("x-user", "ann"), ("x-ab", "1"), ("x-ab", "2")]||desktop"#
        );
    }

    #[test]
    fn undefined_html_hooks_change_nothing() {
        let req = request("/").build();
        let resp = response(200).header("content-type", "text/html").build();
        assert!(call_html_handlers::<Empty>(&req, &resp).is_empty());
        assert!(call_on_element::<Empty>(0, &element("div").attr("a", "1").build()).is_empty());
        assert!(call_on_element_end::<Empty>(0, "div").is_empty());
        assert!(call_on_text::<Empty>(0, "t", true).is_empty());
        assert!(call_on_comment::<Empty>(0, "c").is_empty());
        assert!(call_on_document_end::<Empty>().is_empty());
        assert!(call_on_comment::<TextOnly>(0, "c").is_empty());
    }

    #[test]
    fn html_callbacks_return_what_they_recorded() {
        let req = request("/shop").build();
        let resp = response(200).build();
        let handlers = call_html_handlers::<Rewriter>(&req, &resp);
        assert_eq!(
            handlers,
            [
                HtmlHandler {
                    selector: "a".into(),
                    element: true,
                    end_tag: true,
                    text: TextMode::None,
                    comments: false
                },
                HtmlHandler {
                    selector: "p".into(),
                    element: false,
                    end_tag: false,
                    text: TextMode::Whole,
                    comments: true
                },
            ]
        );
        let el = element("a").attr("href", "/x").build();
        let pair = |n: &str, v: &str| ElementMutation::SetAttribute((n.into(), v.into()));
        assert_eq!(
            call_on_element::<Rewriter>(0, &el),
            [
                pair("data-path", "/shop"),
                pair("data-handler", "0"),
                ElementMutation::RemoveAttribute("href".into()),
            ]
        );
        assert_eq!(
            call_on_element_end::<Rewriter>(0, "a"),
            [NodeMutation::After(Content::new("a", ContentType::Text))]
        );
        assert_eq!(
            call_on_comment::<Rewriter>(1, " secret "),
            [NodeMutation::Remove]
        );
        assert!(call_on_comment::<Rewriter>(1, " public ").is_empty());
        assert!(call_on_text::<Rewriter>(1, "t", true).is_empty());
        assert_eq!(
            call_on_document_end::<Rewriter>(),
            [Content::new("<!--done-->", ContentType::Html)]
        );
        assert_eq!(
            call_on_text::<TextOnly>(7, "a&amp;b", false),
            [NodeMutation::Replace(Content::new(
                "7:A&AMP;B",
                ContentType::Html
            ))]
        );
    }

    #[test]
    fn undefined_hooks_answer_what_the_host_would_do() {
        let req = request("/").build();
        let resp = response(200).build();
        let proposed = CacheDecision::cache_for(10);
        assert_eq!(call_on_request::<Empty>(&req), RequestAction::proceed());
        assert_eq!(call_cache_key::<Empty>(&req, "k"), "k");
        assert_eq!(call_cache_policy::<Empty>(&req, &resp, &proposed), proposed);
        assert_eq!(call_on_response::<Empty>(&req, &resp), HeaderEdits::new());
        assert_eq!(call_on_request::<KeyOnly>(&req), RequestAction::proceed());
    }

    #[test]
    fn defined_hooks_answer_with_their_own_value() {
        let req = request("/").build();
        let resp = response(200).build();
        assert_eq!(
            call_cache_key::<KeyOnly>(&req, "example.com/"),
            "example.com/#desktop"
        );
        assert_eq!(
            call_on_response::<Configured>(&req, &resp),
            HeaderEdits::new().set("x-configured", "1")
        );
        let proposed = CacheDecision::cache_for(10).with_tag("t");
        assert_eq!(
            call_cache_policy::<Everything>(&req, &resp, &proposed),
            proposed
        );
    }
}
