//! The `#[tessera_sdk::script]` attribute; use it through `tessera_sdk`, not from here.
//!
//! The attribute goes on a script's `impl EdgeScript for T` block. It re-emits the block
//! unchanged and adds, from the names of the methods the block defines:
//!
//! - `impl tessera_sdk::__private::Described for T`, whose `info()` lists those hooks,
//!   the `keep_state` and `reusable` flags and the `key_reads` declaration (what the host's
//!   one `describe` call returns), and
//! - `tessera_sdk::__export_script!(T)`, the component export glue for the `hooks` and
//!   `html` interfaces (the C-ABI exports are emitted only when compiling for `wasm32`).
//!
//! The generated code names the SDK as `::tessera_sdk`, so a script crate depends on it
//! under that name.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, Error, ImplItem, Item, ItemImpl, Meta, Token};

/// The hook methods of `EdgeScript`, with their `HookSet` flag names; any of the six HTML
/// rewrite methods means `HTML` (the host then calls `html-handlers` and the `html` callbacks).
const HOOKS: [(&str, &str); 10] = [
    ("on_request", "ON_REQUEST"),
    ("cache_key", "CACHE_KEY"),
    ("cache_policy", "CACHE_POLICY"),
    ("on_response", "ON_RESPONSE"),
    ("html_handlers", "HTML"),
    ("on_element", "HTML"),
    ("on_element_end", "HTML"),
    ("on_text", "HTML"),
    ("on_comment", "HTML"),
    ("on_document_end", "HTML"),
];

/// Describes and exports a Tessera edge script: put it on `impl EdgeScript for YourType`.
///
/// The impl block is kept as written. The hook methods it defines are the hooks the host
/// will call; for the others the host does what their default bodies do, without calling
/// the script. There is nothing else to declare: defining a hook method is the declaration.
/// Defining any of the HTML rewrite methods (`html_handlers`, `on_element`,
/// `on_element_end`, `on_text`, `on_comment`, `on_document_end`) makes the host call
/// `html_handlers` for every HTML response, and the callbacks for what it asks for.
///
/// `#[tessera_sdk::script(keep_state)]` also asks the host to keep one instance for a
/// request's whole life, so that `thread_local!` state set by an early hook is still there
/// in later ones even after the request waited on the origin. Prefer carrying values in a
/// request header set by `on_request` (see "State between hooks, and `keep_state`" in the
/// crate docs).
///
/// `#[tessera_sdk::script(reusable)]` declares that the script keeps nothing of one
/// request for the next (or sets what it keeps afresh in every request): only then may a
/// site's `instance_reuse` let one instance serve several requests in turn. Both flags may
/// be given: `script(keep_state, reusable)`.
///
/// `#[tessera_sdk::script(key_reads(authority, path, query, device, headers("x-ab")))]`
/// declares what `cache_key` reads of a request: the host then passes it only that (the
/// other parts arrive empty) and, where the site allows it (`key_memo_kib`), reuses its
/// answer for requests equal in all of it. Parts: `method`, `scheme`, `authority`, `path`,
/// `query`, `client_ip`, `country`, `device`; `headers(..)` lists lower-case field names.
///
/// ```ignore
/// use tessera_sdk::{EdgeScript, Request};
///
/// struct Shop;
///
/// #[tessera_sdk::script]
/// impl EdgeScript for Shop {
///     fn cache_key(req: &Request, default_key: &str) -> String {
///         format!("{default_key}#{}", req.client.device)
///     }
/// }
/// ```
///
/// Use it once per script crate: the component exports exactly one script. It is a compile
/// error to give any argument but `keep_state`, `reusable` and `key_reads(..)`, to put the attribute on anything but an
/// `impl EdgeScript for T` block, to make that impl generic, or to define hooks in it
/// through a macro (the attribute could not see them).
#[proc_macro_attribute]
pub fn script(args: TokenStream, item: TokenStream) -> TokenStream {
    script_or_error(args.into(), item.into()).into()
}

/// The expansion, or the error followed by the item as written, so that ours is the only error.
fn script_or_error(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    expand(args, item.clone()).unwrap_or_else(|err| {
        let mut out = err.into_compile_error();
        out.extend(item);
        out
    })
}

/// The expansion, as a plain function of token streams so that it can be unit tested.
fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let Flags {
        keep_state,
        reusable,
        key_reads,
    } = parse_args(args)?;
    let key_reads = match key_reads {
        None => quote!(::core::option::Option::None),
        Some(KeyReads { parts, headers }) => {
            let parts = parts
                .iter()
                .map(|p| syn::Ident::new(&p.to_uppercase(), proc_macro2::Span::call_site()));
            quote! {
                ::core::option::Option::Some(::tessera_sdk::RequestReads {
                    parts: ::tessera_sdk::RequestParts::empty()
                        #(.union(::tessera_sdk::RequestParts::#parts))*,
                    headers: ::std::vec![#(::std::string::String::from(#headers)),*],
                })
            }
        }
    };
    let imp = script_impl(syn::parse2(item)?)?;
    let hooks = implemented_hooks(&imp)?;
    let self_ty = &imp.self_ty;
    Ok(quote! {
        #imp

        #[doc(hidden)]
        impl ::tessera_sdk::__private::Described for #self_ty {
            fn info() -> ::tessera_sdk::ScriptInfo {
                ::tessera_sdk::ScriptInfo {
                    hooks: ::tessera_sdk::HookSet::empty() #(.union(#hooks))*,
                    keep_state: #keep_state,
                    reusable: #reusable,
                    key_reads: #key_reads,
                }
            }
        }

        ::tessera_sdk::__export_script!(#self_ty);
    })
}

/// The attribute's arguments.
#[derive(Default)]
struct Flags {
    keep_state: bool,
    reusable: bool,
    key_reads: Option<KeyReads>,
}

/// `key_reads(..)`: request parts by name, and header field names.
struct KeyReads {
    parts: Vec<String>,
    headers: Vec<syn::LitStr>,
}

/// The parts `key_reads(..)` may name, as the WIT's `request-parts` flags (upper-cased).
const PARTS: [&str; 8] = [
    "method",
    "scheme",
    "authority",
    "path",
    "query",
    "client_ip",
    "country",
    "device",
];

/// Most header names `key_reads(..)` may list (the host's `MAX_HEADER_READS`).
const MAX_HEADERS: usize = 32;

/// Parses `key_reads(part, .., headers("name", ..))`.
fn parse_key_reads(meta: &syn::meta::ParseNestedMeta) -> syn::Result<KeyReads> {
    let mut reads = KeyReads {
        parts: Vec::new(),
        headers: Vec::new(),
    };
    let content;
    syn::parenthesized!(content in meta.input);
    let each = syn::meta::parser(|inner| {
        if inner.path.is_ident("headers") {
            let content;
            syn::parenthesized!(content in inner.input);
            let names =
                syn::punctuated::Punctuated::<syn::LitStr, Token![,]>::parse_terminated(&content)?;
            if reads.headers.len() + names.len() > MAX_HEADERS {
                return Err(Error::new(
                    names.span(),
                    format!("at most {MAX_HEADERS} header names (the host refuses more)"),
                ));
            }
            for name in names {
                let v = name.value();
                let valid = !v.is_empty()
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b"!#$%&'*+-.^_`|~".contains(&b)
                    });
                if !valid {
                    return Err(Error::new(
                        name.span(),
                        "a header field name in lower case, e.g. \"accept-language\"",
                    ));
                }
                if reads.headers.iter().any(|h| h.value() == v) {
                    return Err(Error::new(name.span(), format!("{v:?} is listed twice")));
                }
                reads.headers.push(name);
            }
            return Ok(());
        }
        let name = inner
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        if !PARTS.contains(&name.as_str()) {
            return Err(inner.error(format!(
                "expected one of {} or `headers(\"name\", ..)`",
                PARTS.join(", ")
            )));
        }
        if reads.parts.contains(&name) {
            return Err(inner.error(format!("`{name}` is listed twice")));
        }
        reads.parts.push(name);
        Ok(())
    });
    // `key_reads()`: the hook reads nothing but the key it is handed.
    syn::parse::Parser::parse2(each, content.parse::<TokenStream2>()?)?;
    Ok(reads)
}

/// Parses the attribute's arguments: `keep_state`, `reusable` and `key_reads(..)`, each at
/// most once.
fn parse_args(args: TokenStream2) -> syn::Result<Flags> {
    let mut flags = Flags::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("key_reads") {
            if flags.key_reads.is_some() {
                return Err(meta.error("`key_reads` is given twice"));
            }
            flags.key_reads = Some(parse_key_reads(&meta)?);
            return Ok(());
        }
        let (name, flag) = if meta.path.is_ident("keep_state") {
            ("keep_state", &mut flags.keep_state)
        } else if meta.path.is_ident("reusable") {
            ("reusable", &mut flags.reusable)
        } else {
            return Err(meta.error("expected `keep_state`, `reusable` or `key_reads(..)`"));
        };
        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            return Err(meta.error(format!("`{name}` takes no value: write `script({name})`")));
        }
        if *flag {
            return Err(meta.error(format!("`{name}` is given twice")));
        }
        *flag = true;
        Ok(())
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(flags)
}

/// Checks that the item is `impl EdgeScript for T` with a concrete `T`.
fn script_impl(item: Item) -> syn::Result<ItemImpl> {
    const USAGE: &str = "#[tessera_sdk::script] goes on an `impl EdgeScript for YourType` block";
    let Item::Impl(imp) = item else {
        return Err(Error::new_spanned(item, USAGE));
    };
    match &imp.trait_ {
        None => {
            return Err(Error::new(
                imp.self_ty.span(),
                format!("{USAGE}, not on an inherent impl"),
            ))
        }
        Some((Some(bang), _, _)) => {
            return Err(Error::new(
                bang.span(),
                format!("{USAGE}, not on a negative impl"),
            ))
        }
        Some((None, path, _)) => {
            let last = path.segments.last().map(|s| &s.ident);
            if last.is_none_or(|ident| ident != "EdgeScript") {
                return Err(Error::new_spanned(
                    path,
                    format!("{USAGE}, not on another trait's"),
                ));
            }
        }
    }
    if !imp.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &imp.generics,
            "a script type must be concrete: the component exports exactly one script, \
             so #[tessera_sdk::script] cannot go on a generic impl",
        ));
    }
    Ok(imp)
}

/// One `HookSet` expression per hook method the block defines, honouring `#[cfg]` on them;
/// a flag set unconditionally is listed once.
fn implemented_hooks(imp: &ItemImpl) -> syn::Result<Vec<TokenStream2>> {
    let mut hooks = Vec::new();
    let mut unconditional = Vec::new();
    for item in &imp.items {
        match item {
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                let Some((_, flag)) = HOOKS.iter().find(|(hook, _)| *hook == name) else {
                    continue; // not a hook: the compiler reports it as no member of the trait
                };
                let cfgs = cfg_predicates(&f.attrs);
                if cfgs.is_empty() {
                    if unconditional.contains(flag) {
                        continue;
                    }
                    unconditional.push(*flag);
                }
                let flag = syn::Ident::new(flag, f.sig.ident.span());
                let flag = quote!(::tessera_sdk::HookSet::#flag);
                hooks.push(if cfgs.is_empty() {
                    flag
                } else {
                    quote! {
                        if cfg!(all(#(#cfgs),*)) { #flag } else { ::tessera_sdk::HookSet::empty() }
                    }
                });
            }
            ImplItem::Macro(m) => {
                return Err(Error::new_spanned(
                    m,
                    "#[tessera_sdk::script] cannot see which hooks a macro defines: \
                     write the hook methods out in the impl block",
                ))
            }
            _ => {}
        }
    }
    Ok(hooks)
}

/// The predicates of the `#[cfg(..)]` attributes among `attrs`.
fn cfg_predicates(attrs: &[Attribute]) -> Vec<TokenStream2> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .filter_map(|a| match &a.meta {
            Meta::List(list) => Some(list.tokens.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: &str, item: &str) -> Result<String, String> {
        expand(args.parse().unwrap(), item.parse().unwrap())
            .map(|ts| ts.to_string())
            .map_err(|e| e.to_string())
    }

    fn flat(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    const KEY_ONLY: &str = "impl EdgeScript for Shop {
        fn cache_key(req: &Request, default_key: &str) -> String { default_key.to_owned() }
    }";

    #[test]
    fn lists_the_hooks_the_block_defines_and_keeps_the_block() {
        let out = flat(&expand_str("", KEY_ONLY).unwrap());
        assert!(
            out.starts_with("implEdgeScriptforShop{fncache_key("),
            "{out}"
        );
        assert!(out.contains("impl::tessera_sdk::__private::DescribedforShop"));
        assert!(out.contains(
            "hooks:::tessera_sdk::HookSet::empty().union(::tessera_sdk::HookSet::CACHE_KEY),\
             keep_state:false,reusable:false,key_reads:::core::option::Option::None"
        ));
        assert!(
            out.ends_with("::tessera_sdk::__export_script!(Shop);"),
            "{out}"
        );
    }

    #[test]
    fn keep_state_and_every_hook() {
        let item = "impl tessera_sdk::EdgeScript for crate::S {
            fn on_request(r: &Request) -> RequestAction { todo!() }
            fn cache_key(r: &Request, k: &str) -> String { todo!() }
            fn cache_policy(r: &Request, s: &ResponseHead, p: CacheDecision) -> CacheDecision { p }
            fn on_response(r: &Request, s: &ResponseHead) -> HeaderEdits { todo!() }
            fn html_handlers(r: &Request, s: &ResponseHead) -> Vec<HtmlHandler> { todo!() }
            fn on_element(h: u32, e: &mut Element) {}
            fn on_element_end(h: u32, e: &mut EndTag) {}
            fn on_text(h: u32, t: &mut TextChunk) {}
            fn on_comment(h: u32, c: &mut Comment) {}
            fn on_document_end(d: &mut DocumentEnd) {}
        }";
        let out = flat(&expand_str("keep_state", item).unwrap());
        for flag in [
            "ON_REQUEST",
            "CACHE_KEY",
            "CACHE_POLICY",
            "ON_RESPONSE",
            "HTML",
        ] {
            let union = format!(".union(::tessera_sdk::HookSet::{flag})");
            assert_eq!(out.matches(&union).count(), 1, "{flag}: {out}");
        }
        assert!(out.contains("keep_state:true"));
        assert!(out.contains("__export_script!(crate::S);"));
    }

    #[test]
    fn any_html_method_alone_means_html() {
        for method in [
            "fn html_handlers(r: &Request, s: &ResponseHead) -> Vec<HtmlHandler> { vec![] }",
            "fn on_element(h: u32, e: &mut Element) {}",
            "fn on_element_end(h: u32, e: &mut EndTag) {}",
            "fn on_text(h: u32, t: &mut TextChunk) {}",
            "fn on_comment(h: u32, c: &mut Comment) {}",
            "fn on_document_end(d: &mut DocumentEnd) {}",
        ] {
            let item = format!("impl EdgeScript for S {{ {method} }}");
            let out = flat(&expand_str("", &item).unwrap());
            assert!(
                out.contains(
                    "hooks:::tessera_sdk::HookSet::empty().union(::tessera_sdk::HookSet::HTML),"
                ),
                "{method}: {out}"
            );
        }
    }

    #[test]
    fn html_methods_under_cfg_each_keep_their_condition() {
        let item = "impl EdgeScript for S {
            fn on_text(h: u32, t: &mut TextChunk) {}
            #[cfg(feature = \"x\")]
            fn on_element(h: u32, e: &mut Element) {}
            fn on_comment(h: u32, c: &mut Comment) {}
        }";
        let out = flat(&expand_str("", item).unwrap());
        assert!(
            out.contains(
                "HookSet::empty().union(::tessera_sdk::HookSet::HTML)\
                 .union(ifcfg!(all(feature=\"x\")){::tessera_sdk::HookSet::HTML}\
                 else{::tessera_sdk::HookSet::empty()}),"
            ),
            "{out}"
        );
    }

    #[test]
    fn empty_block_implements_nothing_and_cfg_is_honoured() {
        let out = flat(&expand_str("", "impl EdgeScript for E {}").unwrap());
        assert!(out.contains("hooks:::tessera_sdk::HookSet::empty(),"));
        let item = "impl EdgeScript for E {
            #[cfg(feature = \"x\")]
            fn on_response(r: &Request, s: &ResponseHead) -> HeaderEdits { todo!() }
        }";
        let out = flat(&expand_str("", item).unwrap());
        assert!(out.contains(
            ".union(ifcfg!(all(feature=\"x\"))\
             {::tessera_sdk::HookSet::ON_RESPONSE}else{::tessera_sdk::HookSet::empty()})"
        ));
    }

    #[test]
    fn unknown_or_malformed_arguments_are_rejected() {
        for args in [
            "keepstate",
            "keep_state = true",
            "keep_state, keep_state",
            "x(y)",
        ] {
            let err = expand_str(args, KEY_ONLY).unwrap_err();
            assert!(err.contains("keep_state"), "{args}: {err}");
        }
        assert_eq!(
            expand_str("state", KEY_ONLY).unwrap_err(),
            "expected `keep_state`, `reusable` or `key_reads(..)`"
        );
        for args in ["reusable = 1", "reusable, keep_state, reusable"] {
            let err = expand_str(args, KEY_ONLY).unwrap_err();
            assert!(err.contains("`reusable`"), "{args}: {err}");
        }
    }

    #[test]
    fn reusable_is_declared_alone_or_beside_keep_state() {
        let out = flat(&expand_str("reusable", KEY_ONLY).unwrap());
        assert!(out.contains("keep_state:false,reusable:true"), "{out}");
        let out = flat(&expand_str("keep_state, reusable", KEY_ONLY).unwrap());
        assert!(out.contains("keep_state:true,reusable:true"), "{out}");
    }

    #[test]
    fn key_reads_lists_parts_and_header_names() {
        let args = r#"reusable, key_reads(path, client_ip, headers("x-ab", "accept-language"))"#;
        let out = flat(&expand_str(args, KEY_ONLY).unwrap());
        assert!(
            out.contains(
                "parts:::tessera_sdk::RequestParts::empty()\
                 .union(::tessera_sdk::RequestParts::PATH)\
                 .union(::tessera_sdk::RequestParts::CLIENT_IP),\
                 headers:::std::vec![::std::string::String::from(\"x-ab\"),\
                 ::std::string::String::from(\"accept-language\")]"
            ),
            "{out}"
        );
        let out = flat(&expand_str("key_reads()", KEY_ONLY).unwrap());
        assert!(
            out.contains("RequestParts::empty(),headers:::std::vec![]"),
            "{out}"
        );
    }

    #[test]
    fn key_reads_refuses_unknown_parts_bad_names_and_repeats() {
        for (args, says) in [
            ("key_reads(body)", "expected one of method"),
            ("key_reads(path, path)", "`path` is listed twice"),
            (r#"key_reads(headers("X-Ab"))"#, "lower case"),
            (r#"key_reads(headers("x ab"))"#, "lower case"),
            (r#"key_reads(headers(""))"#, "lower case"),
            (r#"key_reads(headers("a", "a"))"#, "listed twice"),
            (
                "key_reads(path), key_reads(query)",
                "`key_reads` is given twice",
            ),
            ("key_reads = 1", "expected"),
        ] {
            let err = expand_str(args, KEY_ONLY).unwrap_err();
            assert!(err.contains(says), "{args}: {err}");
        }
        let names: Vec<String> = (0..33).map(|i| format!("\"x-{i}\"")).collect();
        let args = format!("key_reads(headers({}))", names.join(", "));
        let err = expand_str(&args, KEY_ONLY).unwrap_err();
        assert!(err.contains("at most 32 header names"), "{err}");
    }

    #[test]
    fn anything_but_a_concrete_edge_script_impl_is_rejected() {
        for item in [
            "struct Shop;",
            "fn main() {}",
            "impl Shop { fn cache_key() {} }",
            "impl Display for Shop {}",
            "impl !EdgeScript for Shop {}",
        ] {
            let err = expand_str("", item).unwrap_err();
            assert!(
                err.starts_with(
                    "#[tessera_sdk::script] goes on an `impl EdgeScript for YourType` block"
                ),
                "{item}: {err}"
            );
        }
        let err = expand_str("", "impl<T> EdgeScript for Shop<T> {}").unwrap_err();
        assert!(err.contains("must be concrete"), "{err}");
        let err = expand_str("", "impl EdgeScript for Shop { hooks!(); }").unwrap_err();
        assert!(
            err.contains("cannot see which hooks a macro defines"),
            "{err}"
        );
    }

    #[test]
    fn errors_keep_the_item_so_nothing_else_fails() {
        let out = script_or_error("nope".parse().unwrap(), "struct Shop;".parse().unwrap());
        let out = flat(&out.to_string());
        assert!(
            out.contains("compile_error!{\"expected`keep_state`,`reusable`or`key_reads(..)`\"}"),
            "{out}"
        );
        assert!(out.ends_with("structShop;"), "{out}");
    }
}
