//! Test guest for the streaming HTML rewrite: every operation, and failing callbacks, chosen by request path.
//!
//! | path            | `html_handlers` returns                         | callbacks                                   |
//! |-----------------|-------------------------------------------------|---------------------------------------------|
//! | `/page` and any path not listed | the ten handlers of [`PAGE_HANDLERS`] (below) | as below; `on_document_end` appends `<!--rewritten-->` as HTML |
//! | `/none`         | no handlers: no rewrite                         | none                                        |
//! | `/keep`         | `*` with element, end tag, text (chunks) and comments | all called, none changes anything, nothing appended: output = input |
//! | `/bad-selector` | one handler, selector `div[` (invalid CSS), element | none (the host must refuse the selector)  |
//! | `/trap-element` | `div`, element                                  | `on_element` panics, i.e. traps             |
//! | `/loop-element` | `div`, element                                  | `on_element` spins forever (the deadline must stop it) |
//! | `/too-many`     | `div`, element                                  | `on_element` returns [`TOO_MANY`] `set_attribute` changes, over the host's cap of 64 |
//!
//! On `/page` (and unlisted paths) handler indices matter:
//!
//! | # | selector          | asks for     | does                                                              |
//! |---|-------------------|--------------|-------------------------------------------------------------------|
//! | 0 | `[data-set-attr]` | element      | `set_attribute("data-done", "yes")`, `remove_attribute("data-set-attr")` |
//! | 1 | `[data-around]`   | element      | `before("<b>B</b>", Html)`, `after("A&", Text)`, `prepend("P", Text)`, `append("<i>E</i>", Html)` |
//! | 2 | `[data-replace]`  | element      | `replace("R", Text)`                                              |
//! | 3 | `[data-inner]`    | element      | `set_inner_content("<em>I</em>", Html)`                           |
//! | 4 | `[data-remove]`   | element      | `remove()`                                                        |
//! | 5 | `[data-unwrap]`   | element      | `remove_and_keep_content()`                                       |
//! | 6 | `p.whole`         | text, whole  | `replace("[" + text + "]", Html)`: once per text node             |
//! | 7 | `p.chunks`        | text, chunks | `replace(text.to_uppercase(), Html)`: any chunking gives the same output |
//! | 8 | `div.comments`    | comments     | `replace("<!--seen:" + text + "-->", Html)`                       |
//! | 9 | `section.end`     | end tag      | `before("<footer>end</footer>", Html)`                            |
//!
//! Only the HTML rewrite is defined: none of the four classic hooks, so the host never
//! calls them. `html_handlers` keeps the path's [`Mode`] in a `thread_local!` for the
//! callbacks, which the host runs on the same instance; a callback for a handler index the
//! mode does not have changes nothing.

use std::cell::Cell;
use std::hint::black_box;

use tessera_sdk::{
    Comment, ContentType, DocumentEnd, EdgeScript, Element, EndTag, HtmlHandler, Request,
    ResponseHead, TextChunk, TextMode,
};

/// Number of `set_attribute` changes `/too-many` returns from one `on_element` call.
pub const TOO_MANY: usize = 1_000;
/// What `on_document_end` appends on `/page`, as HTML.
pub const DOCUMENT_END: &str = "<!--rewritten-->";
/// The selectors of the `/page` handlers, by index.
pub const PAGE_HANDLERS: [&str; 10] = [
    "[data-set-attr]",
    "[data-around]",
    "[data-replace]",
    "[data-inner]",
    "[data-remove]",
    "[data-unwrap]",
    "p.whole",
    "p.chunks",
    "div.comments",
    "section.end",
];

/// What the request's path asked for; kept by `html_handlers` for the callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `/page` and unlisted paths: every operation.
    #[default]
    Page,
    /// `/none`: no rewrite.
    None,
    /// `/keep`: see everything, change nothing.
    Keep,
    /// `/bad-selector`: an invalid selector.
    BadSelector,
    /// `/trap-element`: `on_element` panics.
    TrapElement,
    /// `/loop-element`: `on_element` never returns.
    LoopElement,
    /// `/too-many`: `on_element` returns too many changes.
    TooMany,
}

impl Mode {
    /// The mode of request path `path`.
    pub fn of(path: &str) -> Self {
        match path {
            "/none" => Mode::None,
            "/keep" => Mode::Keep,
            "/bad-selector" => Mode::BadSelector,
            "/trap-element" => Mode::TrapElement,
            "/loop-element" => Mode::LoopElement,
            "/too-many" => Mode::TooMany,
            _ => Mode::Page,
        }
    }

    /// The handlers this mode asks for.
    pub fn handlers(self) -> Vec<HtmlHandler> {
        match self {
            Mode::Page => PAGE_HANDLERS
                .iter()
                .enumerate()
                .map(|(i, selector)| {
                    let h = HtmlHandler::new(*selector);
                    match i {
                        0..=5 => h.element(),
                        6 => h.text(TextMode::Whole),
                        7 => h.text(TextMode::Chunks),
                        8 => h.comments(),
                        _ => h.end_tag(),
                    }
                })
                .collect(),
            Mode::None => Vec::new(),
            Mode::Keep => vec![HtmlHandler::new("*")
                .element()
                .end_tag()
                .text(TextMode::Chunks)
                .comments()],
            Mode::BadSelector => vec![HtmlHandler::new("div[").element()],
            Mode::TrapElement | Mode::LoopElement | Mode::TooMany => {
                vec![HtmlHandler::new("div").element()]
            }
        }
    }
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Page) };
}

fn mode() -> Mode {
    MODE.with(Cell::get)
}

/// The script: only the HTML rewrite is defined.
pub struct Rewrite;

#[tessera_sdk::script]
impl EdgeScript for Rewrite {
    fn html_handlers(req: &Request, _resp: &ResponseHead) -> Vec<HtmlHandler> {
        let mode = Mode::of(&req.path);
        MODE.with(|m| m.set(mode));
        mode.handlers()
    }

    fn on_element(handler: u32, el: &mut Element) {
        match (mode(), handler) {
            (Mode::Page, 0) => {
                el.set_attribute("data-done", "yes");
                el.remove_attribute("data-set-attr");
            }
            (Mode::Page, 1) => {
                el.before("<b>B</b>", ContentType::Html);
                el.after("A&", ContentType::Text);
                el.prepend("P", ContentType::Text);
                el.append("<i>E</i>", ContentType::Html);
            }
            (Mode::Page, 2) => el.replace("R", ContentType::Text),
            (Mode::Page, 3) => el.set_inner_content("<em>I</em>", ContentType::Html),
            (Mode::Page, 4) => el.remove(),
            (Mode::Page, 5) => el.remove_and_keep_content(),
            (Mode::TrapElement, 0) => panic!("rewrite: trap requested in on_element"),
            (Mode::LoopElement, 0) => spin(),
            (Mode::TooMany, 0) => {
                for i in 0..TOO_MANY {
                    el.set_attribute(&format!("data-n{i}"), "v");
                }
            }
            _ => {}
        }
    }

    fn on_element_end(handler: u32, end: &mut EndTag) {
        if (mode(), handler) == (Mode::Page, 9) {
            end.before("<footer>end</footer>", ContentType::Html);
        }
    }

    fn on_text(handler: u32, text: &mut TextChunk) {
        match (mode(), handler) {
            (Mode::Page, 6) => {
                let bracketed = format!("[{}]", text.as_str());
                text.replace(&bracketed, ContentType::Html);
            }
            (Mode::Page, 7) => {
                let upper = text.as_str().to_uppercase();
                text.replace(&upper, ContentType::Html);
            }
            _ => {}
        }
    }

    fn on_comment(handler: u32, comment: &mut Comment) {
        if (mode(), handler) == (Mode::Page, 8) {
            let seen = format!("<!--seen:{}-->", comment.text());
            comment.replace(&seen, ContentType::Html);
        }
    }

    fn on_document_end(doc: &mut DocumentEnd) {
        if mode() == Mode::Page {
            doc.append(DOCUMENT_END, ContentType::Html);
        }
    }
}

/// Loops forever; `black_box` keeps the optimiser from proving the loop pointless.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_html_handlers, call_on_comment, call_on_document_end, call_on_element,
        call_on_element_end, call_on_text, describe, element, request, response,
    };
    use tessera_sdk::{Content, ElementMutation, HookSet, NodeMutation, ScriptInfo};

    fn start(path: &str) -> Vec<HtmlHandler> {
        let resp = response(200).header("content-type", "text/html").build();
        call_html_handlers::<Rewrite>(&request(path).build(), &resp)
    }

    fn html(s: &str) -> Content {
        Content::new(s, ContentType::Html)
    }

    fn text(s: &str) -> Content {
        Content::new(s, ContentType::Text)
    }

    fn on_div(handler: u32) -> Vec<ElementMutation> {
        call_on_element::<Rewrite>(handler, &element("div").attr("data-x", "1").build())
    }

    #[test]
    fn only_the_html_rewrite_is_defined() {
        assert_eq!(
            describe::<Rewrite>(),
            ScriptInfo {
                hooks: HookSet::HTML,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }

    #[test]
    fn page_handlers_come_in_the_documented_order() {
        for path in ["/page", "/", "/other?x=1"] {
            let handlers = start(path);
            let selectors: Vec<&str> = handlers.iter().map(|h| h.selector.as_str()).collect();
            assert_eq!(selectors, PAGE_HANDLERS, "{path}");
            let asks: Vec<_> = handlers
                .iter()
                .map(|h| (h.element, h.end_tag, h.text, h.comments))
                .collect();
            let el = (true, false, TextMode::None, false);
            assert_eq!(
                asks,
                [
                    el,
                    el,
                    el,
                    el,
                    el,
                    el,
                    (false, false, TextMode::Whole, false),
                    (false, false, TextMode::Chunks, false),
                    (false, false, TextMode::None, true),
                    (false, true, TextMode::None, false),
                ]
            );
        }
    }

    #[test]
    fn page_element_operations() {
        start("/page");
        assert_eq!(
            call_on_element::<Rewrite>(0, &element("span").attr("data-set-attr", "").build()),
            [
                ElementMutation::SetAttribute(("data-done".into(), "yes".into())),
                ElementMutation::RemoveAttribute("data-set-attr".into()),
            ]
        );
        assert_eq!(
            on_div(1),
            [
                ElementMutation::Before(html("<b>B</b>")),
                ElementMutation::After(text("A&")),
                ElementMutation::Prepend(text("P")),
                ElementMutation::Append(html("<i>E</i>")),
            ]
        );
        assert_eq!(on_div(2), [ElementMutation::Replace(text("R"))]);
        assert_eq!(
            on_div(3),
            [ElementMutation::SetInnerContent(html("<em>I</em>"))]
        );
        assert_eq!(on_div(4), [ElementMutation::Remove]);
        assert_eq!(on_div(5), [ElementMutation::RemoveAndKeepContent]);
        for i in 6..12 {
            assert!(on_div(i).is_empty(), "{i}");
        }
    }

    #[test]
    fn page_text_comment_end_and_document_end() {
        start("/page");
        assert_eq!(
            call_on_text::<Rewrite>(6, "a &amp; b", true),
            [NodeMutation::Replace(html("[a &amp; b]"))]
        );
        assert_eq!(
            call_on_text::<Rewrite>(7, "ab", false),
            [NodeMutation::Replace(html("AB"))]
        );
        assert_eq!(
            call_on_text::<Rewrite>(7, "", true),
            [NodeMutation::Replace(html(""))]
        );
        assert!(call_on_text::<Rewrite>(8, "x", true).is_empty());
        assert_eq!(
            call_on_comment::<Rewrite>(8, " note "),
            [NodeMutation::Replace(html("<!--seen: note -->"))]
        );
        assert!(call_on_comment::<Rewrite>(7, "x").is_empty());
        assert_eq!(
            call_on_element_end::<Rewrite>(9, "section"),
            [NodeMutation::Before(html("<footer>end</footer>"))]
        );
        assert!(call_on_element_end::<Rewrite>(0, "span").is_empty());
        assert_eq!(
            call_on_document_end::<Rewrite>(),
            [html("<!--rewritten-->")]
        );
    }

    #[test]
    fn none_asks_for_nothing_and_keep_changes_nothing() {
        assert!(start("/none").is_empty());
        let keep = start("/keep");
        assert_eq!(
            keep,
            [HtmlHandler {
                selector: "*".into(),
                element: true,
                end_tag: true,
                text: TextMode::Chunks,
                comments: true
            }]
        );
        assert!(on_div(0).is_empty());
        assert!(call_on_element_end::<Rewrite>(0, "div").is_empty());
        assert!(call_on_text::<Rewrite>(0, "t", true).is_empty());
        assert!(call_on_comment::<Rewrite>(0, "c").is_empty());
        assert!(call_on_document_end::<Rewrite>().is_empty());
    }

    #[test]
    fn bad_selector() {
        let handlers = start("/bad-selector");
        assert_eq!(handlers.len(), 1);
        assert_eq!(handlers[0].selector, "div[");
        assert!(handlers[0].element);
        assert!(call_on_document_end::<Rewrite>().is_empty());
    }

    #[test]
    fn too_many_changes() {
        assert_eq!(start("/too-many").len(), 1);
        let muts = on_div(0);
        assert_eq!(muts.len(), 1_000);
        assert_eq!(
            muts[999],
            ElementMutation::SetAttribute(("data-n999".into(), "v".into()))
        );
        assert!(on_div(1).is_empty());
    }

    #[test]
    #[should_panic(expected = "rewrite: trap requested in on_element")]
    fn trap_element_panics() {
        assert_eq!(start("/trap-element")[0].selector, "div");
        on_div(0);
    }

    #[test]
    fn loop_element_asks_for_divs() {
        // Not called here: it never returns.
        assert_eq!(start("/loop-element"), [HtmlHandler::new("div").element()]);
        assert_eq!(Mode::of("/loop-element"), Mode::LoopElement);
    }
}
