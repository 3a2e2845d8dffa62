//! The site's scripts rewriting HTML as it streams (lol_html), a stage of delivery.
//!
//! The scripts' `html-handlers` (called before the head is sent) say what they want to see;
//! lol_html calls back into them synchronously, on the request's instance, as matching
//! markup streams by. Output is held until the first input chunk has been rewritten, so a
//! script failure there still follows the site's error policy; after that a failure cuts
//! the stream: the client sees an incomplete response, never a truncated one that looks
//! whole. Compressed input is decoded, and the output encoded as the client prefers.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use lol_html::html_content::{Comment, ContentType, Element, EndTag, TextChunk};
use lol_html::{ElementContentHandlers, HtmlRewriter, Settings};
use tokio::sync::mpsc;

use crate::encoding::{Coding, Decoder, Encoder};
use crate::guest::html::{Content, ElementMutation, ElementView, Handler, NodeMutation, TextMode};
use crate::guest::{Chain, HookFailure};
use crate::origin::{BoxError, OutBody};

/// Everything a rewrite needs: the scripts' handlers and the chain that answers callbacks.
pub struct Plan {
    /// `(script index, its handlers)` in chain order.
    pub handlers: Vec<(usize, Vec<Handler>)>,
    /// The request's scripts (the instance `html-handlers` ran on).
    pub chain: Chain,
}

/// What came of the first input: the rewrite is under way, or failed before any output.
pub enum Start {
    /// Rewriting: the response to send.
    Rewritten(http::Response<OutBody>),
    /// A script failed before the first byte went out.
    Failed(HookFailure),
    /// The input could not be read or decoded before the first byte went out.
    Broken(String),
}

/// A handler failed; lol_html stops and the failure is read from the shared state.
#[derive(Debug, thiserror::Error)]
#[error("script failed in an html callback")]
struct Stop;

struct State {
    chain: Chain,
    failure: Option<HookFailure>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a callback; on failure records it and stops lol_html.
fn call<R>(
    s: &Shared,
    f: impl FnOnce(&mut Chain) -> Result<R, HookFailure>,
) -> Result<R, BoxError> {
    let mut st = lock(s);
    match f(&mut st.chain) {
        Ok(r) => Ok(r),
        Err(e) => {
            st.failure.get_or_insert(e);
            Err(Box::new(Stop))
        }
    }
}

fn ct(c: &Content) -> ContentType {
    if c.html {
        ContentType::Html
    } else {
        ContentType::Text
    }
}

fn apply_element(
    el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>,
    muts: Vec<ElementMutation>,
) -> Result<(), BoxError> {
    for m in muts {
        match m {
            ElementMutation::SetAttribute(n, v) => el.set_attribute(&n, &v)?,
            ElementMutation::RemoveAttribute(n) => el.remove_attribute(&n),
            ElementMutation::Before(c) => el.before(&c.text, ct(&c)),
            ElementMutation::After(c) => el.after(&c.text, ct(&c)),
            ElementMutation::Prepend(c) => el.prepend(&c.text, ct(&c)),
            ElementMutation::Append(c) => el.append(&c.text, ct(&c)),
            ElementMutation::Replace(c) => el.replace(&c.text, ct(&c)),
            ElementMutation::SetInnerContent(c) => el.set_inner_content(&c.text, ct(&c)),
            ElementMutation::Remove => el.remove(),
            ElementMutation::RemoveAndKeepContent => el.remove_and_keep_content(),
        }
    }
    Ok(())
}

/// Applies node mutations through three callbacks (lol_html's token types share no trait).
fn apply_node(
    muts: Vec<NodeMutation>,
    mut before: impl FnMut(&str, ContentType),
    mut after: impl FnMut(&str, ContentType),
    mut replace: impl FnMut(&str, ContentType),
    mut remove: impl FnMut(),
) {
    for m in muts {
        match m {
            NodeMutation::Before(c) => before(&c.text, ct(&c)),
            NodeMutation::After(c) => after(&c.text, ct(&c)),
            NodeMutation::Replace(c) => replace(&c.text, ct(&c)),
            NodeMutation::Remove => remove(),
        }
    }
}

fn view(el: &Element<'_, '_, lol_html::send::SendHandlerTypes>) -> ElementView {
    ElementView {
        tag: el.tag_name(),
        attributes: el
            .attributes()
            .iter()
            .map(|a| (a.name(), a.value()))
            .collect(),
    }
}

/// Builds lol_html's settings for the scripts' handlers, all calling back into `state`.
fn settings(
    handlers: &[(usize, Vec<Handler>)],
    state: &Shared,
) -> Settings<'static, 'static, lol_html::send::SendHandlerTypes> {
    let mut settings = Settings::new_send();
    for (script, list) in handlers {
        let script = *script;
        for (idx, h) in list.iter().enumerate() {
            let idx = idx as u32;
            let mut ech = ElementContentHandlers::default();
            if h.element || h.end_tag {
                let (st, element, end_tag) = (state.clone(), h.element, h.end_tag);
                ech = ech.element(
                    move |el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>| {
                        if element {
                            let muts = call(&st, |c| c.on_element(script, idx, view(el)))?;
                            apply_element(el, muts)?;
                        }
                        if end_tag && el.can_have_content() {
                            let st = st.clone();
                            el.on_end_tag(Box::new(move |end: &mut EndTag<'_>| {
                                let muts =
                                    call(&st, |c| c.on_element_end(script, idx, &end.name()))?;
                                let end = std::cell::RefCell::new(end);
                                apply_node(
                                    muts,
                                    |t, ty| end.borrow_mut().before(t, ty),
                                    |t, ty| end.borrow_mut().after(t, ty),
                                    |t, ty| end.borrow_mut().replace(t, ty),
                                    || end.borrow_mut().remove(),
                                );
                                Ok(())
                            }))?;
                        }
                        Ok(())
                    },
                );
            }
            match h.text {
                TextMode::None => {}
                TextMode::Chunks => {
                    let st = state.clone();
                    ech = ech.text(move |t: &mut TextChunk<'_>| {
                        let muts = call(&st, |c| {
                            c.on_text(script, idx, t.as_str(), t.last_in_text_node())
                        })?;
                        text_mutations(t, muts);
                        Ok(())
                    });
                }
                TextMode::Whole => {
                    let st = state.clone();
                    // lol_html cuts text at arbitrary points; the script gets each node once,
                    // whole: earlier chunks are held back (removed) and re-emitted with the last.
                    let mut held = String::new();
                    ech = ech.text(move |t: &mut TextChunk<'_>| {
                        if !t.last_in_text_node() {
                            held.push_str(t.as_str());
                            t.remove();
                            return Ok(());
                        }
                        held.push_str(t.as_str());
                        let whole = std::mem::take(&mut held);
                        if whole.is_empty() {
                            return Ok(());
                        }
                        let muts = call(&st, |c| c.on_text(script, idx, &whole, true))?;
                        let replaces = muts
                            .iter()
                            .any(|m| matches!(m, NodeMutation::Replace(_) | NodeMutation::Remove));
                        if !replaces {
                            // Source text, so inserted as HTML: entities stay as written.
                            t.replace(&whole, ContentType::Html);
                        }
                        text_mutations(t, muts);
                        Ok(())
                    });
                }
            }
            if h.comments {
                let st = state.clone();
                ech = ech.comments(move |cm: &mut Comment<'_>| {
                    let muts = call(&st, |c| c.on_comment(script, idx, &cm.text()))?;
                    let cm = std::cell::RefCell::new(cm);
                    apply_node(
                        muts,
                        |t, ty| cm.borrow_mut().before(t, ty),
                        |t, ty| cm.borrow_mut().after(t, ty),
                        |t, ty| cm.borrow_mut().replace(t, ty),
                        || cm.borrow_mut().remove(),
                    );
                    Ok(())
                });
            }
            settings =
                settings.append_element_content_handler((Cow::Owned(h.selector.clone()), ech));
        }
    }
    let st = state.clone();
    let scripts: Vec<usize> = handlers.iter().map(|(s, _)| *s).collect();
    settings.append_document_content_handler(lol_html::end!(move |end| {
        for s in &scripts {
            for c in call(&st, |ch| ch.on_document_end(*s))? {
                end.append(&c.text, ct(&c));
            }
        }
        Ok(())
    }))
}

fn text_mutations(t: &mut TextChunk<'_>, muts: Vec<NodeMutation>) {
    let t = std::cell::RefCell::new(t);
    apply_node(
        muts,
        |s, ty| t.borrow_mut().before(s, ty),
        |s, ty| t.borrow_mut().after(s, ty),
        |s, ty| t.borrow_mut().replace(s, ty),
        || t.borrow_mut().remove(),
    );
}

/// Rewrites a stream of (possibly encoded) HTML chunks into a stream of output chunks;
/// the first message decides the head (see the module docs).
pub fn rewrite(
    plan: Plan,
    mut input: OutBody,
    input_coding: Coding,
    output_coding: Coding,
    limit: u64,
) -> mpsc::Receiver<Result<Bytes, BoxError>> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(16);
    // An in-memory page is rewritten in the first poll: no task needed then.
    let _ = crate::html::run_or_spawn(async move {
        let state: Shared = Arc::new(Mutex::new(State {
            chain: plan.chain,
            failure: None,
        }));
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let mut rewriter =
            HtmlRewriter::new(settings(&plan.handlers, &state), move |c: &[u8]| {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(c)
            });
        let mut decoder = Decoder::new(input_coding, limit);
        let mut encoder = Encoder::new(output_coding);
        let fail = |e: String| -> BoxError {
            match lock(&state).failure.take() {
                Some(f) => Box::new(f),
                None => e.into(),
            }
        };
        let take = |encoder: &mut Encoder| -> Result<Bytes, BoxError> {
            let chunk = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
            Ok(Bytes::from(encoder.push(chunk)?))
        };
        while let Some(frame) = input.frame().await {
            let step = match frame {
                Err(e) => Err(e),
                Ok(f) => match f.into_data() {
                    Err(_) => continue,
                    Ok(data) => decoder
                        .push_bytes(data)
                        .map_err(|e| -> BoxError { Box::new(e) })
                        .and_then(|plain| rewriter.write(&plain).map_err(|e| fail(e.to_string())))
                        .and_then(|()| take(&mut encoder)),
                },
            };
            match step {
                Ok(b) if b.is_empty() => {}
                Ok(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        let end = decoder
            .finish()
            .map_err(|e| -> BoxError { Box::new(e) })
            .and_then(|plain| rewriter.write(&plain).map_err(|e| fail(e.to_string())))
            .and_then(|()| rewriter.end().map_err(|e| fail(e.to_string())))
            .and_then(|()| take(&mut encoder))
            .and_then(|mut b| {
                let mut v = b.to_vec();
                v.extend(encoder.finish()?);
                b = Bytes::from(v);
                Ok(b)
            });
        let _ = tx.send(end).await;
    });
    rx
}

/// Starts rewriting `response` and waits for its first output, so that a failure there is
/// still a failure of the whole response. The returned response streams the rest.
pub async fn start(
    plan: Plan,
    response: http::Response<OutBody>,
    client: &HeaderMap,
    limit: u64,
) -> Start {
    let (mut parts, body) = response.into_parts();
    let input = Coding::of(&parts.headers).unwrap_or(Coding::Identity);
    // Encoded input is re-encoded the way the client likes best; plain input stays plain.
    let output = if input == Coding::Identity {
        Coding::Identity
    } else {
        Coding::preferred(client)
    };
    let mut rx = rewrite(plan, body, input, output, limit);
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => match e.downcast::<HookFailure>() {
            Ok(f) => return Start::Failed(*f),
            Err(e) => return Start::Broken(e.to_string()),
        },
        None => Bytes::new(),
    };
    let h = &mut parts.headers;
    for name in [
        header::CONTENT_LENGTH,
        header::ETAG,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
        header::CONTENT_ENCODING,
    ] {
        h.remove(name);
    }
    if let Some(t) = output.token() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(t));
    }
    if input != Coding::Identity {
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    // Personalised output: the client may keep it, no shared cache downstream may.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        if let Some(b) = first {
            return Some((Ok(hyper::body::Frame::data(b)), (None, rx)));
        }
        match rx.recv().await {
            Some(Ok(b)) => Some((Ok(hyper::body::Frame::data(b)), (None, rx))),
            Some(Err(e)) => Some((Err(e), (None, rx))),
            None => None,
        }
    });
    Start::Rewritten(http::Response::from_parts(
        parts,
        http_body_util::StreamBody::new(stream).boxed(),
    ))
}
