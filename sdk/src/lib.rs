//! Write Tessera edge scripts in Rust: cache keys, cache policy and header edits.
//!
//! A script is a type implementing [`EdgeScript`], exported with [`export!`] and built to a
//! WebAssembly component. The proxy calls its hooks along each request's path; a hook the
//! script does not override is left to the host's default, and the host stops calling it.
//! Every request gets a fresh instance, so a script holds no state between requests (and a
//! `thread_local!` in a script is per-request state).
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
//!     // `on_response` is not overridden: the host makes no header edits and never calls it.
//! }
//!
//! tessera_sdk::export!(Shop);
//!
//! # use tessera_sdk::testing;
//! # let req = testing::request("/p?utm_source=x&b=2&a=1").header("cookie", "lang=nl").build();
//! # assert_eq!(testing::call_cache_key::<Shop>(&req, "ignored").as_deref(), Some("example.com/p?a=1&b=2#nl"));
//! # assert_eq!(testing::call_on_response::<Shop>(&req, &testing::response(200).build()), None);
//! ```
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
//! [`testing::request`]. [`log`], [`now_ms`] and [`random_u64`] are backed by the
//! [`testing`] seam on native targets, and `testing::call_*` run a hook through the same
//! glue as [`export!`], showing whether the host would get `Some` or `None`.
//!
//! # Failures
//!
//! A panic traps the instance; the host then applies the site's `on_guest_error` policy.
//! Before trapping, the SDK logs the panic message and location at `error` level through
//! the host's log, so a failing script says why.

#![warn(missing_docs)]

// The generated export macro names this crate `tessera_sdk`, also from inside it (tests).
extern crate self as tessera_sdk;

#[allow(missing_docs)]
pub mod bindings;
mod edits;
mod host;
mod query;
mod request;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bindings::tessera::edge::log::Level as LogLevel;
pub use bindings::tessera::edge::types::{
    CacheDecision, ClientInfo, DeviceClass, HeaderEdits, Request, RequestAction, ResponseHead,
    SyntheticResponse,
};
pub use host::{log, now_ms, random_u64};
pub use query::Query;

/// An edge script: one hook per point on a request's path, each with a default.
///
/// Hooks are associated functions, not methods: the host creates a fresh instance for
/// every request, so there is no script object to keep state in. Override only what the
/// script needs; for the others the SDK tells the host "not implemented", the host uses
/// its own behaviour and stops calling that hook.
pub trait EdgeScript {
    /// Called first for every request, before the cache lookup: edit request headers, or
    /// answer at once (redirect, block, set an A/B cookie) with [`RequestAction::respond`].
    ///
    /// Default: continue with no edits.
    fn on_request(req: &Request) -> RequestAction {
        let _ = req;
        __private::default_ran(__private::ON_REQUEST);
        RequestAction::proceed()
    }

    /// Called for every request that may be served from cache, after `on_request`, to name
    /// the cache entry. `default_key` is authority + path + normalised query (tracking
    /// parameters dropped, the rest sorted). Responses still vary by `Vary` within a key.
    ///
    /// Default: `default_key`.
    fn cache_key(req: &Request, default_key: &str) -> String {
        let _ = req;
        __private::default_ran(__private::CACHE_KEY);
        default_key.to_owned()
    }

    /// Called when an origin response arrives, before it is stored. `proposed` is what the
    /// RFC 9111 rules (with RFC 5861 and RFC 9213 extensions) give; return it changed to
    /// set TTLs, stale windows and purge tags, or to refuse storage.
    ///
    /// Default: `proposed`.
    fn cache_policy(req: &Request, resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        let _ = (req, resp);
        __private::default_ran(__private::CACHE_POLICY);
        proposed
    }

    /// Called before delivery of every response, hit or miss, to edit the headers the
    /// client sees (e.g. add `set-cookie`); the cached copy is not changed.
    ///
    /// Default: no edits.
    fn on_response(req: &Request, resp: &ResponseHead) -> HeaderEdits {
        let _ = (req, resp);
        __private::default_ran(__private::ON_RESPONSE);
        HeaderEdits::new()
    }
}

/// Glue between [`EdgeScript`] and the generated `Guest` trait; used by [`export!`] and [`testing`].
#[doc(hidden)]
pub mod __private {
    use std::cell::Cell;

    use crate::{CacheDecision, EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};

    pub const ON_REQUEST: u8 = 1;
    pub const CACHE_KEY: u8 = 2;
    pub const CACHE_POLICY: u8 = 4;
    pub const ON_RESPONSE: u8 = 8;

    thread_local! {
        // One bit per hook whose default implementation ran; per hook so that an override
        // that happens to call another hook's default is still reported as implemented.
        static DEFAULT_RAN: Cell<u8> = const { Cell::new(0) };
    }

    /// Records that the default implementation of `hook` ran.
    pub fn default_ran(hook: u8) {
        DEFAULT_RAN.with(|ran| ran.set(ran.get() | hook));
    }

    /// Runs a hook: `Some(result)` if the script overrides it, `None` if its default ran.
    pub fn run_hook<T>(hook: u8, call: impl FnOnce() -> T) -> Option<T> {
        #[cfg(target_arch = "wasm32")]
        report_panics_to_host();
        DEFAULT_RAN.with(|ran| ran.set(ran.get() & !hook));
        let out = call();
        let defaulted = DEFAULT_RAN.with(|ran| {
            let bits = ran.get();
            ran.set(bits & !hook);
            bits & hook != 0
        });
        (!defaulted).then_some(out)
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

    pub fn on_request<S: EdgeScript>(req: Request) -> Option<RequestAction> {
        run_hook(ON_REQUEST, || S::on_request(&req))
    }

    pub fn cache_key<S: EdgeScript>(req: Request, default_key: String) -> Option<String> {
        run_hook(CACHE_KEY, || S::cache_key(&req, &default_key))
    }

    pub fn cache_policy<S: EdgeScript>(
        req: Request,
        resp: ResponseHead,
        proposed: CacheDecision,
    ) -> Option<CacheDecision> {
        run_hook(CACHE_POLICY, || S::cache_policy(&req, &resp, proposed))
    }

    pub fn on_response<S: EdgeScript>(req: Request, resp: ResponseHead) -> Option<HeaderEdits> {
        run_hook(ON_RESPONSE, || S::on_response(&req, &resp))
    }
}

/// Exports a type implementing [`EdgeScript`] as this component's `tessera:edge/hooks`.
///
/// Use it once per script crate, at module level: `tessera_sdk::export!(MyScript);`.
/// Overridden hooks answer `some(..)`; hooks left to their default answer `none`, so the
/// host uses its own behaviour and stops calling them.
#[macro_export]
macro_rules! export {
    ($script:ty) => {
        const _: () = {
            #[doc(hidden)]
            struct __TesseraExport;

            impl $crate::bindings::exports::tessera::edge::hooks::Guest for __TesseraExport {
                fn on_request(
                    req: $crate::Request,
                ) -> ::core::option::Option<$crate::RequestAction> {
                    $crate::__private::on_request::<$script>(req)
                }

                fn cache_key(
                    req: $crate::Request,
                    default_key: ::std::string::String,
                ) -> ::core::option::Option<::std::string::String> {
                    $crate::__private::cache_key::<$script>(req, default_key)
                }

                fn cache_policy(
                    req: $crate::Request,
                    resp: $crate::ResponseHead,
                    proposed: $crate::CacheDecision,
                ) -> ::core::option::Option<$crate::CacheDecision> {
                    $crate::__private::cache_policy::<$script>(req, resp, proposed)
                }

                fn on_response(
                    req: $crate::Request,
                    resp: $crate::ResponseHead,
                ) -> ::core::option::Option<$crate::HeaderEdits> {
                    $crate::__private::on_response::<$script>(req, resp)
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
        call_cache_key, call_cache_policy, call_on_request, call_on_response, request, response,
    };
    use crate::{CacheDecision, EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};

    struct Empty;
    impl EdgeScript for Empty {}

    struct KeyOnly;
    impl EdgeScript for KeyOnly {
        fn cache_key(req: &Request, default_key: &str) -> String {
            format!("{default_key}#{}", req.client.device)
        }
    }

    /// An override that returns exactly what the default would, and calls another default.
    struct Everything;
    impl EdgeScript for Everything {
        fn on_request(_req: &Request) -> RequestAction {
            RequestAction::proceed()
        }
        fn cache_key(req: &Request, default_key: &str) -> String {
            let _ = <Self as EdgeScript>::on_response(req, &response(200).build());
            default_key.to_owned()
        }
        fn cache_policy(_: &Request, _: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
            proposed
        }
        fn on_response(_: &Request, _: &ResponseHead) -> HeaderEdits {
            HeaderEdits::new()
        }
    }

    // The macro must expand in a crate with a script type; this also checks it compiles.
    crate::export!(KeyOnly);

    #[test]
    fn hooks_left_to_default_report_none() {
        let req = request("/").build();
        let resp = response(200).build();
        let proposed = CacheDecision::cache_for(10);
        assert_eq!(call_on_request::<Empty>(&req), None);
        assert_eq!(call_cache_key::<Empty>(&req, "k"), None);
        assert_eq!(call_cache_policy::<Empty>(&req, &resp, &proposed), None);
        assert_eq!(call_on_response::<Empty>(&req, &resp), None);
    }

    #[test]
    fn overridden_hook_reports_some_and_others_stay_none() {
        let req = request("/").build();
        assert_eq!(
            call_cache_key::<KeyOnly>(&req, "example.com/").as_deref(),
            Some("example.com/#desktop")
        );
        assert_eq!(call_on_request::<KeyOnly>(&req), None);
        assert_eq!(
            call_cache_key::<KeyOnly>(&req, "again").as_deref(),
            Some("again#desktop"),
            "flag is reset between calls"
        );
    }

    #[test]
    fn override_returning_default_value_is_still_some() {
        let req = request("/").build();
        let resp = response(200).build();
        let proposed = CacheDecision::cache_for(10);
        assert_eq!(
            call_on_request::<Everything>(&req),
            Some(RequestAction::proceed())
        );
        assert_eq!(
            call_cache_key::<Everything>(&req, "k").as_deref(),
            Some("k")
        );
        assert_eq!(
            call_cache_policy::<Everything>(&req, &resp, &proposed),
            Some(proposed)
        );
        assert_eq!(
            call_on_response::<Everything>(&req, &resp),
            Some(HeaderEdits::new())
        );
    }

    #[test]
    fn default_after_override_is_none_again() {
        let req = request("/").build();
        assert!(call_cache_key::<KeyOnly>(&req, "k").is_some());
        assert!(call_cache_key::<Empty>(&req, "k").is_none());
        assert!(call_cache_key::<KeyOnly>(&req, "k").is_some());
    }
}
