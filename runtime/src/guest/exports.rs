//! A script's exports, found and type-checked once per script, called without a check per
//! instance.
//!
//! The bindings `bindgen!` generates look every export up and check its type each time an
//! instance is made: about a tenth of a fresh instance's cost, for eleven functions a
//! request calls one or two of. Here the exports are found and checked against the
//! signatures below once, when the script is loaded; a request looks up only the function
//! it calls, by index, and calls it with that same signature.

use wasmtime::component::{Component, ComponentExportIndex, Func, Instance, TypedFunc};
use wasmtime::{AsContextMut, Store};

use super::bindings::exports::tessera::edge::hooks;
use super::bindings::{html_types, types};
use super::engine::State;

// Each export's parameters and results, once: the load-time check and the calls use these.
type Describe = ((), (hooks::ScriptInfo,));
type OnRequest<'a> = ((&'a types::Request,), (types::RequestAction,));
type CacheKey<'a> = ((&'a types::Request, &'a str), (String,));
type CachePolicy<'a> = (
    (
        &'a types::Request,
        &'a types::ResponseHead,
        &'a types::CacheDecision,
    ),
    (types::CacheDecision,),
);
type OnResponse<'a> = (
    (&'a types::Request, &'a types::ResponseHead),
    (types::HeaderEdits,),
);
type HtmlHandlers<'a> = (
    (&'a types::Request, &'a types::ResponseHead),
    (Vec<html_types::HtmlHandler>,),
);
type OnElement<'a> = (
    (u32, &'a html_types::Element),
    (Vec<html_types::ElementMutation>,),
);
type OnElementEnd<'a> = ((u32, &'a str), (Vec<html_types::NodeMutation>,));
type OnText<'a> = ((u32, &'a str, bool), (Vec<html_types::NodeMutation>,));
type OnComment<'a> = ((u32, &'a str), (Vec<html_types::NodeMutation>,));
type OnDocumentEnd = ((), (Vec<html_types::Content>,));

/// The interfaces the exports live in.
const HOOKS: &str = "tessera:edge/hooks@0.5.0";
const HTML: &str = "tessera:edge/html@0.5.0";

/// Where each export is in a script's component.
#[derive(Debug, Clone, Copy)]
pub struct Exports {
    describe: ComponentExportIndex,
    on_request: ComponentExportIndex,
    cache_key: ComponentExportIndex,
    cache_policy: ComponentExportIndex,
    on_response: ComponentExportIndex,
    html_handlers: ComponentExportIndex,
    on_element: ComponentExportIndex,
    on_element_end: ComponentExportIndex,
    on_text: ComponentExportIndex,
    on_comment: ComponentExportIndex,
    on_document_end: ComponentExportIndex,
}

impl Exports {
    /// Finds every export in `component`; names the first one missing.
    pub fn find(component: &Component) -> Result<Exports, String> {
        let iface = |name: &str| {
            component
                .get_export_index(None, name)
                .ok_or_else(|| format!("no export {name}"))
        };
        let (hooks, html) = (iface(HOOKS)?, iface(HTML)?);
        let func = |within: &ComponentExportIndex, name: &str| {
            component
                .get_export_index(Some(within), name)
                .ok_or_else(|| format!("no export {name}"))
        };
        Ok(Exports {
            describe: func(&hooks, "describe")?,
            on_request: func(&hooks, "on-request")?,
            cache_key: func(&hooks, "cache-key")?,
            cache_policy: func(&hooks, "cache-policy")?,
            on_response: func(&hooks, "on-response")?,
            html_handlers: func(&hooks, "html-handlers")?,
            on_element: func(&html, "on-element")?,
            on_element_end: func(&html, "on-element-end")?,
            on_text: func(&html, "on-text")?,
            on_comment: func(&html, "on-comment")?,
            on_document_end: func(&html, "on-document-end")?,
        })
    }

    /// Checks every export of `instance` (of the component these were found in) against
    /// the signature it is called with: once per script, so that calls need no check.
    pub fn check(&self, store: &mut Store<State>, instance: &Instance) -> Result<(), String> {
        fn one<P, R>(
            store: &mut Store<State>,
            instance: &Instance,
            index: &ComponentExportIndex,
            name: &str,
        ) -> Result<(), String>
        where
            P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
            R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
        {
            instance
                .get_typed_func::<P, R>(store.as_context_mut(), index)
                .map(drop)
                .map_err(|e| format!("export {name}: {e}"))
        }
        macro_rules! check {
            ($field:ident, $sig:ty, $name:literal) => {
                one::<<$sig as Sig>::Params, <$sig as Sig>::Results>(
                    store,
                    instance,
                    &self.$field,
                    $name,
                )?
            };
        }
        check!(describe, Describe, "describe");
        check!(on_request, OnRequest<'static>, "on-request");
        check!(cache_key, CacheKey<'static>, "cache-key");
        check!(cache_policy, CachePolicy<'static>, "cache-policy");
        check!(on_response, OnResponse<'static>, "on-response");
        check!(html_handlers, HtmlHandlers<'static>, "html-handlers");
        check!(on_element, OnElement<'static>, "on-element");
        check!(on_element_end, OnElementEnd<'static>, "on-element-end");
        check!(on_text, OnText<'static>, "on-text");
        check!(on_comment, OnComment<'static>, "on-comment");
        check!(on_document_end, OnDocumentEnd, "on-document-end");
        Ok(())
    }

    /// These exports on one instance of the script.
    pub fn on(self, instance: Instance) -> Bound {
        Bound {
            exports: self,
            instance,
        }
    }
}

/// A script's exports on one of its instances.
pub struct Bound {
    exports: Exports,
    instance: Instance,
}

/// The function at `index` in `instance`.
fn func(
    store: &mut Store<State>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<Func> {
    instance
        .get_func(store.as_context_mut(), index)
        .ok_or_else(|| wasmtime::format_err!("the script lost an export"))
}

/// Makes `$f` a `TypedFunc` of the signature `$sig` (parameters, results).
macro_rules! checked {
    ($f:expr, $sig:ty) => {
        // SAFETY: `Exports::check` checked this export of this component against exactly
        // this signature when the script was loaded, and every instance of one component
        // has the same export types.
        unsafe { TypedFunc::<<$sig as Sig>::Params, <$sig as Sig>::Results>::new_unchecked($f) }
    };
}

/// Parameters and results of a signature alias.
trait Sig {
    type Params;
    type Results;
}

impl<P, R> Sig for (P, R) {
    type Params = P;
    type Results = R;
}

impl Bound {
    /// `describe`.
    pub async fn describe(&self, store: &mut Store<State>) -> wasmtime::Result<hooks::ScriptInfo> {
        let f = func(store, &self.instance, &self.exports.describe)?;
        let f = checked!(f, Describe);
        Ok(f.call_async(store, ()).await?.0)
    }

    /// `on-request`.
    pub async fn on_request(
        &self,
        store: &mut Store<State>,
        req: &types::Request,
    ) -> wasmtime::Result<types::RequestAction> {
        let f = func(store, &self.instance, &self.exports.on_request)?;
        let f = checked!(f, OnRequest<'_>);
        Ok(f.call_async(store, (req,)).await?.0)
    }

    /// `cache-key`.
    pub async fn cache_key(
        &self,
        store: &mut Store<State>,
        req: &types::Request,
        default_key: &str,
    ) -> wasmtime::Result<String> {
        let f = func(store, &self.instance, &self.exports.cache_key)?;
        let f = checked!(f, CacheKey<'_>);
        Ok(f.call_async(store, (req, default_key)).await?.0)
    }

    /// `cache-policy`.
    pub async fn cache_policy(
        &self,
        store: &mut Store<State>,
        req: &types::Request,
        resp: &types::ResponseHead,
        proposed: &types::CacheDecision,
    ) -> wasmtime::Result<types::CacheDecision> {
        let f = func(store, &self.instance, &self.exports.cache_policy)?;
        let f = checked!(f, CachePolicy<'_>);
        Ok(f.call_async(store, (req, resp, proposed)).await?.0)
    }

    /// `on-response`.
    pub async fn on_response(
        &self,
        store: &mut Store<State>,
        req: &types::Request,
        resp: &types::ResponseHead,
    ) -> wasmtime::Result<types::HeaderEdits> {
        let f = func(store, &self.instance, &self.exports.on_response)?;
        let f = checked!(f, OnResponse<'_>);
        Ok(f.call_async(store, (req, resp)).await?.0)
    }

    /// `html-handlers`.
    pub async fn html_handlers(
        &self,
        store: &mut Store<State>,
        req: &types::Request,
        resp: &types::ResponseHead,
    ) -> wasmtime::Result<Vec<html_types::HtmlHandler>> {
        let f = func(store, &self.instance, &self.exports.html_handlers)?;
        let f = checked!(f, HtmlHandlers<'_>);
        Ok(f.call_async(store, (req, resp)).await?.0)
    }

    /// `html.on-element`.
    pub fn on_element(
        &self,
        store: &mut Store<State>,
        handler: u32,
        el: &html_types::Element,
    ) -> wasmtime::Result<Vec<html_types::ElementMutation>> {
        let f = func(store, &self.instance, &self.exports.on_element)?;
        let f = checked!(f, OnElement<'_>);
        Ok(f.call(store, (handler, el))?.0)
    }

    /// `html.on-element-end`.
    pub fn on_element_end(
        &self,
        store: &mut Store<State>,
        handler: u32,
        tag: &str,
    ) -> wasmtime::Result<Vec<html_types::NodeMutation>> {
        let f = func(store, &self.instance, &self.exports.on_element_end)?;
        let f = checked!(f, OnElementEnd<'_>);
        Ok(f.call(store, (handler, tag))?.0)
    }

    /// `html.on-text`.
    pub fn on_text(
        &self,
        store: &mut Store<State>,
        handler: u32,
        text: &str,
        last: bool,
    ) -> wasmtime::Result<Vec<html_types::NodeMutation>> {
        let f = func(store, &self.instance, &self.exports.on_text)?;
        let f = checked!(f, OnText<'_>);
        Ok(f.call(store, (handler, text, last))?.0)
    }

    /// `html.on-comment`.
    pub fn on_comment(
        &self,
        store: &mut Store<State>,
        handler: u32,
        text: &str,
    ) -> wasmtime::Result<Vec<html_types::NodeMutation>> {
        let f = func(store, &self.instance, &self.exports.on_comment)?;
        let f = checked!(f, OnComment<'_>);
        Ok(f.call(store, (handler, text))?.0)
    }

    /// `html.on-document-end`.
    pub fn on_document_end(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<Vec<html_types::Content>> {
        let f = func(store, &self.instance, &self.exports.on_document_end)?;
        let f = checked!(f, OnDocumentEnd);
        Ok(f.call(store, ())?.0)
    }
}
