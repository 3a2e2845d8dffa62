//! Example script: personalise an HTML page cached once for everybody, on the way out.
//!
//! The origin serves one page for all visitors, so it is cached once under one key. The
//! script rewrites it while it streams to each client, from three cookies; the cached copy
//! is never changed, and nothing about the visitor goes into the cache key.
//!
//! # The page contract
//!
//! The page marks what may change with `data-` attributes and carries, as cached, what an
//! anonymous visitor with an empty cart should see:
//!
//! | markup                                     | what the script does                                   |
//! |--------------------------------------------|--------------------------------------------------------|
//! | `<span data-greeting>Welcome!</span>`      | with a `user` cookie: content becomes `Hello, <name>`; without: left as cached |
//! | `<div data-segment="pro free">…</div>`     | kept (the `data-segment` attribute removed) when the visitor's segment is in the space-separated list; removed with its content otherwise |
//! | `<span data-cart-count hidden>0</span>`    | content becomes the cart count (`99+` above 99); with 0 it gets `hidden="hidden"`, otherwise a `hidden` attribute is removed |
//!
//! The cookies:
//!
//! - `user`: the display name, percent-encoded (`Ann%20Smith`). It is decoded (invalid
//!   escapes stay as they are, invalid UTF-8 becomes U+FFFD), control characters are
//!   dropped, surrounding whitespace trimmed, and at most [`MAX_NAME_CHARS`] characters
//!   kept; a name that ends up empty counts as none. It is inserted as text, so the host
//!   escapes it: a cookie of `<script>…` shows as those characters, never as markup.
//! - `segment`: e.g. `pro` or `free`, compared ignoring ASCII case; missing, empty or
//!   containing whitespace: [`DEFAULT_SEGMENT`]. An element with an empty `data-segment`
//!   list is shown to nobody.
//! - `cart`: the number of items, ASCII digits only; anything else, or no cookie: 0.
//!
//! Only `text/html` responses are rewritten. `html_handlers` reads the cookies once per
//! response and keeps them, with the list of rules it asked for, in a `thread_local!`: the
//! host runs the callbacks on the same instance, and the next request gets a fresh one. It
//! asks for the greeting only when there is a name, so the handler indices differ between
//! requests; [`Rule`] names what each index means for this response. Nothing is appended
//! at the end of the document.

use std::cell::RefCell;

use tessera_sdk::{ContentType, EdgeScript, Element, HtmlHandler, Request, ResponseHead};

/// Cookie holding the visitor's display name, percent-encoded.
pub const USER_COOKIE: &str = "user";
/// Cookie holding the visitor's segment.
pub const SEGMENT_COOKIE: &str = "segment";
/// Cookie holding the number of items in the cart.
pub const CART_COOKIE: &str = "cart";
/// Longest name shown, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// The segment of visitors without a valid `segment` cookie.
pub const DEFAULT_SEGMENT: &str = "anonymous";
/// Largest cart count shown as a number; above it, `99+`.
pub const MAX_CART_SHOWN: u64 = 99;

/// One thing the page contract asks for, with the selector of its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `[data-greeting]`: greet the visitor by name.
    Greeting,
    /// `[data-segment]`: keep or drop content targeted at segments.
    Segment,
    /// `[data-cart-count]`: show the cart count.
    Cart,
}

impl Rule {
    /// The CSS selector of this rule's handler.
    pub fn selector(self) -> &'static str {
        match self {
            Rule::Greeting => "[data-greeting]",
            Rule::Segment => "[data-segment]",
            Rule::Cart => "[data-cart-count]",
        }
    }
}

/// What the cookies say about the visitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visitor {
    /// Display name, decoded and cut to [`MAX_NAME_CHARS`]; `None` without a usable `user` cookie.
    pub name: Option<String>,
    /// Segment, e.g. `pro`; [`DEFAULT_SEGMENT`] without a valid `segment` cookie.
    pub segment: String,
    /// Items in the cart.
    pub cart: u64,
}

impl Visitor {
    /// Reads the three cookies of `req`.
    pub fn from_request(req: &Request) -> Self {
        Self {
            name: req.cookie(USER_COOKIE).and_then(display_name),
            segment: req
                .cookie(SEGMENT_COOKIE)
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                .unwrap_or(DEFAULT_SEGMENT)
                .to_owned(),
            cart: req.cookie(CART_COOKIE).map_or(0, cart_count),
        }
    }

    /// True when `targets` (a `data-segment` value: segments separated by whitespace)
    /// names this visitor's segment, ignoring ASCII case.
    pub fn is_targeted(&self, targets: &str) -> bool {
        targets
            .split_ascii_whitespace()
            .any(|t| t.eq_ignore_ascii_case(&self.segment))
    }
}

/// The display name in a `user` cookie value: percent-decoded, control characters
/// dropped, trimmed, at most [`MAX_NAME_CHARS`] characters; `None` if nothing is left.
pub fn display_name(raw: &str) -> Option<String> {
    let decoded = percent_decode(raw);
    let name: String = decoded
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is, and bytes
/// that are not UTF-8 become U+FFFD. `+` stays `+` (cookies are not form data).
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The cart count in a `cart` cookie value: ASCII digits (surrounding whitespace allowed),
/// saturating on overflow; anything else is 0.
pub fn cart_count(raw: &str) -> u64 {
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// How a cart count is shown: the number, or `99+` above [`MAX_CART_SHOWN`].
pub fn cart_label(count: u64) -> String {
    if count > MAX_CART_SHOWN {
        format!("{MAX_CART_SHOWN}+")
    } else {
        count.to_string()
    }
}

/// What `html_handlers` worked out for this response, for the callbacks.
struct Plan {
    visitor: Visitor,
    /// The rule of each handler asked for, by handler index.
    rules: Vec<Rule>,
}

thread_local! {
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
}

/// The script: only the HTML rewrite is defined.
pub struct Personalize;

#[tessera_sdk::script]
impl EdgeScript for Personalize {
    fn html_handlers(req: &Request, resp: &ResponseHead) -> Vec<HtmlHandler> {
        if resp.media_type().as_deref() != Some("text/html") {
            PLAN.with_borrow_mut(|plan| *plan = None);
            return Vec::new();
        }
        let visitor = Visitor::from_request(req);
        let mut rules = Vec::with_capacity(3);
        if visitor.name.is_some() {
            rules.push(Rule::Greeting);
        }
        rules.extend([Rule::Segment, Rule::Cart]);
        let handlers = rules
            .iter()
            .map(|rule| HtmlHandler::new(rule.selector()).element())
            .collect();
        PLAN.with_borrow_mut(|plan| *plan = Some(Plan { visitor, rules }));
        handlers
    }

    fn on_element(handler: u32, el: &mut Element) {
        PLAN.with_borrow(|plan| {
            let Some(plan) = plan else { return };
            let Some(rule) = plan.rules.get(handler as usize) else {
                return;
            };
            apply(*rule, &plan.visitor, el);
        });
    }
}

/// Applies `rule` for `visitor` to an element its selector matched.
fn apply(rule: Rule, visitor: &Visitor, el: &mut Element) {
    match rule {
        Rule::Greeting => {
            if let Some(name) = &visitor.name {
                // Text, so the host escapes whatever the cookie held.
                el.set_inner_content(&format!("Hello, {name}"), ContentType::Text);
            }
        }
        Rule::Segment => {
            let targets = el.get_attribute("data-segment").unwrap_or_default();
            if visitor.is_targeted(targets) {
                el.remove_attribute("data-segment");
            } else {
                el.remove();
            }
        }
        Rule::Cart => {
            el.set_inner_content(&cart_label(visitor.cart), ContentType::Text);
            if visitor.cart == 0 {
                el.set_attribute("hidden", "hidden");
            } else if el.has_attribute("hidden") {
                el.remove_attribute("hidden");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_html_handlers, call_on_document_end, call_on_element, describe, element, request,
        response,
    };
    use tessera_sdk::{Content, ElementMutation, HookSet, ScriptInfo, TextMode};

    fn html() -> ResponseHead {
        response(200)
            .header("content-type", "text/html; charset=utf-8")
            .build()
    }

    fn with_cookie(cookie: &str) -> Request {
        request("/").header("cookie", cookie).build()
    }

    /// Runs `html_handlers` for `req` (as the host does first), then returns the index of
    /// the handler with `selector`, if it was asked for.
    fn handler(req: &Request, selector: &str) -> Option<u32> {
        let handlers = call_html_handlers::<Personalize>(req, &html());
        for h in &handlers {
            assert!(h.element && !h.end_tag && !h.comments && h.text == TextMode::None);
        }
        handlers
            .iter()
            .position(|h| h.selector == selector)
            .map(|i| i as u32)
    }

    fn text(s: &str) -> Content {
        Content::new(s, ContentType::Text)
    }

    /// What the greeting rule does to `<span data-greeting>` for a request with `cookie`.
    fn greet(cookie: &str) -> Vec<ElementMutation> {
        let req = with_cookie(cookie);
        let i = handler(&req, "[data-greeting]").expect("greeting asked for");
        call_on_element::<Personalize>(i, &element("span").attr("data-greeting", "").build())
    }

    /// What the segment rule does to an element with `data-segment=targets`.
    fn segment(cookie: &str, targets: &str) -> Vec<ElementMutation> {
        let req = with_cookie(cookie);
        let i = handler(&req, "[data-segment]").unwrap();
        let el = element("div")
            .attr("class", "offer")
            .attr("data-segment", targets)
            .build();
        call_on_element::<Personalize>(i, &el)
    }

    /// What the cart rule does to `<span data-cart-count hidden>`.
    fn cart(cookie: &str) -> Vec<ElementMutation> {
        let req = with_cookie(cookie);
        let i = handler(&req, "[data-cart-count]").unwrap();
        let el = element("span")
            .attr("data-cart-count", "")
            .attr("hidden", "")
            .build();
        call_on_element::<Personalize>(i, &el)
    }

    #[test]
    fn only_the_html_rewrite_is_defined() {
        assert_eq!(
            describe::<Personalize>(),
            ScriptInfo {
                hooks: HookSet::HTML,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }

    #[test]
    fn only_html_responses_are_rewritten() {
        let req = with_cookie("user=Ann");
        for ct in ["application/json", "text/plain", "text/html-sandboxed"] {
            let resp = response(200).header("content-type", ct).build();
            assert!(
                call_html_handlers::<Personalize>(&req, &resp).is_empty(),
                "{ct}"
            );
        }
        assert!(call_html_handlers::<Personalize>(&req, &response(200).build()).is_empty());
        let resp = response(200).header("Content-Type", "TEXT/HTML").build();
        let selectors: Vec<String> = call_html_handlers::<Personalize>(&req, &resp)
            .into_iter()
            .map(|h| h.selector)
            .collect();
        assert_eq!(
            selectors,
            ["[data-greeting]", "[data-segment]", "[data-cart-count]"]
        );
    }

    #[test]
    fn greeting_uses_the_decoded_name_as_text() {
        assert_eq!(
            greet("user=Ann%20Sm%C3%AFth"),
            [ElementMutation::SetInnerContent(text("Hello, Ann Smïth"))]
        );
        assert_eq!(
            greet("session=1; user=\"Bo\""),
            [ElementMutation::SetInnerContent(text("Hello, Bo"))]
        );
    }

    #[test]
    fn a_hostile_name_goes_in_as_text_for_the_host_to_escape() {
        let muts = greet("user=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
        let [ElementMutation::SetInnerContent(content)] = muts.as_slice() else {
            panic!("{muts:?}")
        };
        assert_eq!(content.text, "Hello, <script>alert(1)</script>");
        assert_eq!(content.content_type(), ContentType::Text);
        assert!(!content.html);
        let muts = greet("user=<img src=x onerror=alert(1)>");
        assert_eq!(
            muts,
            [ElementMutation::SetInnerContent(text(
                "Hello, <img src=x onerror=alert(1)>"
            ))]
        );
    }

    #[test]
    fn names_are_cut_to_forty_characters() {
        let long = "é".repeat(60);
        assert_eq!(
            greet(&format!("user={long}")),
            [ElementMutation::SetInnerContent(text(&format!(
                "Hello, {}",
                "é".repeat(40)
            )))]
        );
    }

    #[test]
    fn without_a_usable_name_the_greeting_is_left_as_cached() {
        for cookie in ["", "other=1", "user=", "user=%20%0A", "User=Ann"] {
            let req = request("/").header("cookie", cookie).build();
            assert_eq!(handler(&req, "[data-greeting]"), None, "{cookie:?}");
        }
        assert_eq!(handler(&request("/").build(), "[data-greeting]"), None);
        assert_eq!(Visitor::from_request(&request("/").build()).name, None);
    }

    #[test]
    fn display_name_decoding() {
        assert_eq!(display_name("a%2"), Some("a%2".into()), "bad escape kept");
        assert_eq!(display_name("100%zz"), Some("100%zz".into()));
        assert_eq!(display_name("a+b"), Some("a+b".into()));
        assert_eq!(display_name("%FF"), Some("\u{fffd}".into()));
        assert_eq!(display_name("  Ann%09Lee\r\n "), Some("AnnLee".into()));
        assert_eq!(display_name("%00"), None);
        let name = display_name(&format!("{}%20x", "a".repeat(39))).unwrap();
        assert_eq!(name, "a".repeat(39), "no trailing space after the cut");
    }

    #[test]
    fn segment_content_is_kept_for_its_segments_and_removed_for_others() {
        let kept = [ElementMutation::RemoveAttribute("data-segment".into())];
        let removed = [ElementMutation::Remove];
        assert_eq!(segment("segment=pro", "pro free"), kept);
        assert_eq!(segment("segment=free", "pro  free"), kept);
        assert_eq!(segment("segment=Pro", "pro"), kept);
        assert_eq!(segment("segment=pro", "free"), removed);
        assert_eq!(segment("segment=pro", "professional"), removed);
        assert_eq!(segment("segment=pro", ""), removed);
    }

    #[test]
    fn without_a_valid_segment_the_visitor_is_anonymous() {
        for cookie in ["", "segment=", "segment=pro free", "Segment=pro"] {
            assert_eq!(
                segment(cookie, "anonymous"),
                [ElementMutation::RemoveAttribute("data-segment".into())],
                "{cookie:?}"
            );
            assert_eq!(
                segment(cookie, "pro free"),
                [ElementMutation::Remove],
                "{cookie:?}"
            );
        }
    }

    #[test]
    fn cart_count_is_shown_and_an_empty_cart_hidden() {
        let hidden = ElementMutation::SetAttribute(("hidden".into(), "hidden".into()));
        let shown = ElementMutation::RemoveAttribute("hidden".into());
        let count = |s: &str| ElementMutation::SetInnerContent(text(s));
        assert_eq!(cart("cart=3"), [count("3"), shown.clone()]);
        assert_eq!(cart("cart=99"), [count("99"), shown.clone()]);
        assert_eq!(cart("cart=100"), [count("99+"), shown.clone()]);
        assert_eq!(
            cart("cart=99999999999999999999999"),
            [count("99+"), shown.clone()]
        );
        for cookie in [
            "", "cart=0", "cart=000", "cart=abc", "cart=-1", "cart=+2", "cart=1.5", "cart=",
        ] {
            assert_eq!(cart(cookie), [count("0"), hidden.clone()], "{cookie:?}");
        }
    }

    #[test]
    fn a_visible_cart_without_hidden_only_gets_its_count() {
        let req = with_cookie("cart=2");
        let i = handler(&req, "[data-cart-count]").unwrap();
        let el = element("b").attr("data-cart-count", "").build();
        assert_eq!(
            call_on_element::<Personalize>(i, &el),
            [ElementMutation::SetInnerContent(text("2"))]
        );
    }

    #[test]
    fn rules_follow_the_handler_indices_of_this_response() {
        // With a name, index 0 is the greeting; without, index 0 is the segment rule.
        let el = element("div")
            .attr("data-greeting", "")
            .attr("data-segment", "pro")
            .build();
        call_html_handlers::<Personalize>(&with_cookie("user=Ann; segment=free"), &html());
        assert_eq!(
            call_on_element::<Personalize>(0, &el),
            [ElementMutation::SetInnerContent(text("Hello, Ann"))]
        );
        assert_eq!(
            call_on_element::<Personalize>(1, &el),
            [ElementMutation::Remove]
        );
        call_html_handlers::<Personalize>(&with_cookie("segment=free"), &html());
        assert_eq!(
            call_on_element::<Personalize>(0, &el),
            [ElementMutation::Remove]
        );
        assert!(call_on_element::<Personalize>(9, &el).is_empty());
        // A non-HTML response forgets the plan: callbacks change nothing.
        call_html_handlers::<Personalize>(&with_cookie("user=Ann"), &response(200).build());
        assert!(call_on_element::<Personalize>(0, &el).is_empty());
    }

    #[test]
    fn nothing_is_appended_at_the_end() {
        call_html_handlers::<Personalize>(&with_cookie("user=Ann"), &html());
        assert!(call_on_document_end::<Personalize>().is_empty());
    }
}
