//! Streaming HTML rewrite: an HTMLRewriter-like API over the host's lol_html.
//!
//! For every HTML response (after ESI assembly, before delivery) the host asks the script
//! what it wants to see with [`EdgeScript::html_handlers`](crate::EdgeScript::html_handlers):
//! a list of [`HtmlHandler`]s, each a CSS selector and the kinds of callbacks wanted for the
//! markup it matches. An empty list (the default) means no rewrite for this response. While
//! the page streams through, the host calls the script back synchronously, in document
//! order, with `handler` = the index of the matching handler in that list:
//!
//! | handler asks for              | callback                                                       |
//! |-------------------------------|----------------------------------------------------------------|
//! | [`element()`](HtmlHandler::element) | [`on_element`](crate::EdgeScript::on_element) with an [`Element`] (start tag) |
//! | [`end_tag()`](HtmlHandler::end_tag) | [`on_element_end`](crate::EdgeScript::on_element_end) with an [`EndTag`] |
//! | [`text(mode)`](HtmlHandler::text)   | [`on_text`](crate::EdgeScript::on_text) with a [`TextChunk`] |
//! | [`comments()`](HtmlHandler::comments) | [`on_comment`](crate::EdgeScript::on_comment) with a [`Comment`] |
//! | (any handler at all)          | [`on_document_end`](crate::EdgeScript::on_document_end) once, with a [`DocumentEnd`] |
//!
//! The callbacks record what the script wants changed; when the callback returns, the SDK
//! hands the list of changes to the host, which applies them to the stream. So a change
//! takes effect in the output, not in what the host shows the script next, with one
//! exception: attributes set or removed on an [`Element`] are reflected in its own
//! [`get_attribute`](Element::get_attribute), [`has_attribute`](Element::has_attribute) and
//! [`attributes`](Element::attributes) for the rest of that callback.
//!
//! # Text is source text
//!
//! Tag names are lower case. Attribute names are as the host reports them (lower case);
//! attribute values and text are **as written in the source**: entities are not decoded
//! (`a &amp; b` arrives as `a &amp; b`, not `a & b`), and [`TextChunk`]s of one text node
//! may split anywhere, also inside an entity, unless the handler asks for
//! [`TextMode::Whole`].
//!
//! Inserted content is either text or HTML ([`ContentType`]): with [`ContentType::Text`]
//! the host escapes `<`, `>` and `&`, so anything from the request (cookies, query) can go
//! into an element's content safely; [`ContentType::Html`] is inserted as raw markup. An attribute value
//! given to [`Element::set_attribute`] is written into the markup as given, except that `"`
//! becomes `&quot;`: write `&` as `&amp;` yourself where it matters.
//!
//! # One instance per response
//!
//! The callbacks of a response run on the same instance of the script as the
//! `html_handlers` call that started them. So `html_handlers` may compute per-request
//! values (from cookies, the path, the response head) and keep them in a `thread_local!`
//! for the callbacks to read; the next request gets a fresh instance. (Values kept by the
//! other hooks are another matter: see "State between hooks" in the crate docs.)
//!
//! # Limits and failures
//!
//! The host caps what one callback may return: at most 64 changes, and at most 64 KiB of
//! inserted content, names and values together. (It also caps `html_handlers`: at most 32
//! handlers, selectors of at most 256 bytes.) A callback that exceeds a cap, panics (traps),
//! or runs out of the request's time budget aborts the response. Before the first byte of
//! the body went out, that is a script failure like any other and the site's
//! `on_guest_error` policy applies; after it, the stream is cut, so the client sees an
//! incomplete response, never a truncated page that looks complete. An invalid selector,
//! or an attribute name that lol_html refuses (empty, or with whitespace, `/`, `>` or
//! `=`), fails the response the same way.
//!
//! # Example
//!
//! ```
//! use tessera_sdk::{ContentType, EdgeScript, Element, HtmlHandler, Request, ResponseHead};
//!
//! struct Banner;
//!
//! #[tessera_sdk::script]
//! impl EdgeScript for Banner {
//!     fn html_handlers(_req: &Request, resp: &ResponseHead) -> Vec<HtmlHandler> {
//!         if resp.media_type().as_deref() != Some("text/html") {
//!             return Vec::new();
//!         }
//!         vec![HtmlHandler::new("a[href^='http:']").element()]
//!     }
//!
//!     fn on_element(_handler: u32, el: &mut Element) {
//!         let href = el.get_attribute("href").unwrap_or_default().replacen("http:", "https:", 1);
//!         el.set_attribute("href", &href);
//!         el.after(" (secure)", ContentType::Text);
//!     }
//! }
//!
//! # use tessera_sdk::{testing, Content, ElementMutation, HookSet};
//! # assert_eq!(testing::describe::<Banner>().hooks, HookSet::HTML);
//! let a = testing::element("a").attr("href", "http://example.org/").build();
//! assert_eq!(
//!     testing::call_on_element::<Banner>(0, &a),
//!     [
//!         ElementMutation::SetAttribute(("href".into(), "https://example.org/".into())),
//!         ElementMutation::After(Content::new(" (secure)", ContentType::Text)),
//!     ]
//! );
//! ```

use crate::bindings::tessera::edge::html_types as wit;

pub use wit::{Content, ElementMutation, HtmlHandler, NodeMutation, TextMode};

/// An element's start tag as the host sends it (the WIT `element` record): lower-case tag
/// name, attributes in source order. Scripts get it wrapped in an [`Element`]; tests build
/// one with [`testing::element`](crate::testing::element).
pub use wit::Element as ElementRecord;

/// How inserted content is treated: escaped as text, or inserted as raw HTML.
///
/// Like lol_html's `ContentType` and Cloudflare HTMLRewriter's `{ html: bool }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Text: the host escapes `<`, `>` and `&`, so the reader sees it as given, never markup.
    /// Use this for anything that comes from the request.
    Text,
    /// Raw HTML, inserted into the markup as given.
    Html,
}

impl Content {
    /// `text` to be inserted as `ty`.
    pub fn new(text: impl Into<String>, ty: ContentType) -> Self {
        Self {
            text: text.into(),
            html: ty == ContentType::Html,
        }
    }

    /// Whether this content is text (escaped by the host) or raw HTML.
    pub fn content_type(&self) -> ContentType {
        if self.html {
            ContentType::Html
        } else {
            ContentType::Text
        }
    }
}

impl HtmlHandler {
    /// A handler for the elements `selector` matches that asks for nothing yet; chain
    /// [`element`](Self::element), [`end_tag`](Self::end_tag), [`text`](Self::text) and
    /// [`comments`](Self::comments).
    ///
    /// `selector` is CSS in the subset lol_html supports: type, class, id, attribute
    /// (`[a]`, `[a=v]`, `[a~=v]`, `[a^=v]`, `[a$=v]`, `[a*=v]`, `[a|=v]`), universal,
    /// descendant and child combinators, `:nth-child`/`:first-child` and friends, and
    /// `:not(..)` of these. The host compiles it; an invalid selector fails the response.
    pub fn new(selector: impl Into<String>) -> Self {
        Self {
            selector: selector.into(),
            element: false,
            end_tag: false,
            text: TextMode::None,
            comments: false,
        }
    }

    /// Calls [`EdgeScript::on_element`](crate::EdgeScript::on_element) at each matching element's start tag.
    pub fn element(mut self) -> Self {
        self.element = true;
        self
    }

    /// Calls [`EdgeScript::on_element_end`](crate::EdgeScript::on_element_end) at each
    /// matching element's end tag (never for void elements such as `<br>`, which have none).
    pub fn end_tag(mut self) -> Self {
        self.end_tag = true;
        self
    }

    /// Calls [`EdgeScript::on_text`](crate::EdgeScript::on_text) for the text inside
    /// matching elements: [`TextMode::Chunks`] as the parser produces it (split at
    /// arbitrary points), [`TextMode::Whole`] once per text node (the host buffers it).
    pub fn text(mut self, mode: TextMode) -> Self {
        self.text = mode;
        self
    }

    /// Calls [`EdgeScript::on_comment`](crate::EdgeScript::on_comment) for comments inside matching elements.
    pub fn comments(mut self) -> Self {
        self.comments = true;
        self
    }
}

/// A matching element's start tag, in [`EdgeScript::on_element`](crate::EdgeScript::on_element).
///
/// Reads show the tag as it is in the source, with this callback's own attribute changes
/// applied; the other methods record changes for the host to apply to the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    tag: String,
    attributes: Vec<(String, String)>,
    mutations: Vec<ElementMutation>,
    removed: bool,
}

impl Element {
    pub(crate) fn from_record(el: ElementRecord) -> Self {
        Self {
            tag: el.tag,
            attributes: el.attributes,
            mutations: Vec::new(),
            removed: false,
        }
    }

    pub(crate) fn into_mutations(self) -> Vec<ElementMutation> {
        self.mutations
    }

    /// The tag name, lower case (e.g. `div`).
    pub fn tag_name(&self) -> &str {
        &self.tag
    }

    /// The value of attribute `name` (ASCII case-insensitive), as written in the source:
    /// entities are not decoded. An attribute without a value (`<p hidden>`) gives `""`.
    pub fn get_attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the element has attribute `name` (ASCII case-insensitive).
    pub fn has_attribute(&self, name: &str) -> bool {
        self.get_attribute(name).is_some()
    }

    /// The attributes as `(name, value)`, in source order, then those set in this callback.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Sets attribute `name` to `value`, replacing its value if it exists (names compared
    /// ASCII case-insensitively), else adding it (lower-cased) after the others.
    ///
    /// `value` goes into the markup as given, except `"` which becomes `&quot;`.
    pub fn set_attribute(&mut self, name: &str, value: &str) {
        match self
            .attributes
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => value.clone_into(v),
            None => self
                .attributes
                .push((name.to_ascii_lowercase(), value.to_owned())),
        }
        self.mutations.push(ElementMutation::SetAttribute((
            name.to_owned(),
            value.to_owned(),
        )));
    }

    /// Removes attribute `name` (ASCII case-insensitive), if present.
    pub fn remove_attribute(&mut self, name: &str) {
        self.attributes
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.mutations
            .push(ElementMutation::RemoveAttribute(name.to_owned()));
    }

    /// Inserts `content` just before the element's start tag.
    pub fn before(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(ElementMutation::Before(Content::new(content, ty)));
    }

    /// Inserts `content` just after the element's end tag (or its start tag, if it has none).
    pub fn after(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(ElementMutation::After(Content::new(content, ty)));
    }

    /// Inserts `content` right after the start tag, before the element's content.
    pub fn prepend(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(ElementMutation::Prepend(Content::new(content, ty)));
    }

    /// Inserts `content` right before the end tag, after the element's content.
    pub fn append(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(ElementMutation::Append(Content::new(content, ty)));
    }

    /// Replaces the whole element, tags and content, with `content`.
    pub fn replace(&mut self, content: &str, ty: ContentType) {
        self.removed = true;
        self.mutations
            .push(ElementMutation::Replace(Content::new(content, ty)));
    }

    /// Replaces the element's content with `content`; the tags stay.
    pub fn set_inner_content(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(ElementMutation::SetInnerContent(Content::new(content, ty)));
    }

    /// Removes the element with its content.
    pub fn remove(&mut self) {
        self.removed = true;
        self.mutations.push(ElementMutation::Remove);
    }

    /// Removes the element's start and end tags but keeps its content.
    pub fn remove_and_keep_content(&mut self) {
        self.mutations.push(ElementMutation::RemoveAndKeepContent);
    }

    /// True once [`remove`](Self::remove) or [`replace`](Self::replace) was called in this callback.
    pub fn removed(&self) -> bool {
        self.removed
    }
}

/// Changes recorded on a text chunk, comment or end tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NodeEdits {
    mutations: Vec<NodeMutation>,
    removed: bool,
}

impl NodeEdits {
    fn before(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(NodeMutation::Before(Content::new(content, ty)));
    }

    fn after(&mut self, content: &str, ty: ContentType) {
        self.mutations
            .push(NodeMutation::After(Content::new(content, ty)));
    }

    fn replace(&mut self, content: &str, ty: ContentType) {
        self.removed = true;
        self.mutations
            .push(NodeMutation::Replace(Content::new(content, ty)));
    }

    fn remove(&mut self) {
        self.removed = true;
        self.mutations.push(NodeMutation::Remove);
    }
}

/// Defines `before`, `after`, `replace`, `remove` and `removed` on a node type with an `edits` field.
macro_rules! node_methods {
    ($what:literal) => {
        #[doc = concat!("Inserts `content` just before the ", $what, ".")]
        pub fn before(&mut self, content: &str, ty: ContentType) {
            self.edits.before(content, ty);
        }

        #[doc = concat!("Inserts `content` just after the ", $what, ".")]
        pub fn after(&mut self, content: &str, ty: ContentType) {
            self.edits.after(content, ty);
        }

        #[doc = concat!("Replaces the ", $what, " with `content`.")]
        pub fn replace(&mut self, content: &str, ty: ContentType) {
            self.edits.replace(content, ty);
        }

        #[doc = concat!("Removes the ", $what, ".")]
        pub fn remove(&mut self) {
            self.edits.remove();
        }

        /// True once [`remove`](Self::remove) or [`replace`](Self::replace) was called in this callback.
        pub fn removed(&self) -> bool {
            self.edits.removed
        }

        pub(crate) fn into_mutations(self) -> Vec<NodeMutation> {
            self.edits.mutations
        }
    };
}

/// Text inside a matching element, in [`EdgeScript::on_text`](crate::EdgeScript::on_text).
///
/// With [`TextMode::Chunks`] a text node may come in several chunks, split anywhere (also
/// inside an entity or a character reference), and the last may be empty; with
/// [`TextMode::Whole`] each text node comes once, whole. A change applies to this chunk only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextChunk {
    text: String,
    last: bool,
    edits: NodeEdits,
}

impl TextChunk {
    pub(crate) fn new(text: String, last: bool) -> Self {
        Self {
            text,
            last,
            edits: NodeEdits::default(),
        }
    }

    /// The text as written in the source: entities are not decoded.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for the last chunk of a text node (always, with [`TextMode::Whole`]).
    pub fn last_in_text_node(&self) -> bool {
        self.last
    }

    node_methods!("text chunk");
}

/// A comment inside a matching element, in [`EdgeScript::on_comment`](crate::EdgeScript::on_comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    text: String,
    edits: NodeEdits,
}

impl Comment {
    pub(crate) fn new(text: String) -> Self {
        Self {
            text,
            edits: NodeEdits::default(),
        }
    }

    /// The comment's text, without `<!--` and `-->`, as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    node_methods!("comment");
}

/// A matching element's end tag, in [`EdgeScript::on_element_end`](crate::EdgeScript::on_element_end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTag {
    name: String,
    edits: NodeEdits,
}

impl EndTag {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            edits: NodeEdits::default(),
        }
    }

    /// The tag name, e.g. `section`.
    pub fn name(&self) -> &str {
        &self.name
    }

    node_methods!("end tag");
}

/// The end of the document, in [`EdgeScript::on_document_end`](crate::EdgeScript::on_document_end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentEnd {
    appended: Vec<Content>,
}

impl DocumentEnd {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_contents(self) -> Vec<Content> {
        self.appended
    }

    /// Appends `content` at the very end of the document, after everything else.
    pub fn append(&mut self, content: &str, ty: ContentType) {
        self.appended.push(Content::new(content, ty));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::element;

    #[test]
    fn handler_builder_sets_only_what_is_asked() {
        let h = HtmlHandler::new("p.x");
        assert_eq!(
            (
                h.selector.as_str(),
                h.element,
                h.end_tag,
                h.text,
                h.comments
            ),
            ("p.x", false, false, TextMode::None, false)
        );
        let h = HtmlHandler::new(String::from("div"))
            .element()
            .end_tag()
            .text(TextMode::Whole)
            .comments();
        assert!(h.element && h.end_tag && h.comments);
        assert_eq!(h.text, TextMode::Whole);
    }

    #[test]
    fn content_type_round_trips() {
        let c = Content::new("<b>", ContentType::Html);
        assert!(c.html);
        assert_eq!(c.content_type(), ContentType::Html);
        assert_eq!(
            Content::new("x", ContentType::Text).content_type(),
            ContentType::Text
        );
    }

    #[test]
    fn attribute_reads_ignore_case_and_see_this_callbacks_changes() {
        let mut el = Element::from_record(
            element("DIV")
                .attr("Class", "a")
                .attr("data-x", "1")
                .attr("hidden", "")
                .build(),
        );
        assert_eq!(el.tag_name(), "div");
        assert_eq!(el.get_attribute("CLASS"), Some("a"));
        assert_eq!(el.get_attribute("hidden"), Some(""));
        assert!(!el.has_attribute("id"));

        el.set_attribute("Data-X", "2");
        el.set_attribute("ID", "new");
        el.remove_attribute("CLASS");
        el.remove_attribute("absent");
        assert_eq!(el.get_attribute("data-x"), Some("2"));
        assert_eq!(el.get_attribute("id"), Some("new"));
        assert!(!el.has_attribute("class"));
        assert_eq!(
            el.attributes().collect::<Vec<_>>(),
            [("data-x", "2"), ("hidden", ""), ("id", "new")]
        );
        assert!(!el.removed());
        assert_eq!(
            el.into_mutations(),
            [
                ElementMutation::SetAttribute(("Data-X".into(), "2".into())),
                ElementMutation::SetAttribute(("ID".into(), "new".into())),
                ElementMutation::RemoveAttribute("CLASS".into()),
                ElementMutation::RemoveAttribute("absent".into()),
            ]
        );
    }

    #[test]
    fn element_content_changes_are_recorded_in_order() {
        let mut el = Element::from_record(element("p").build());
        el.before("<b>", ContentType::Html);
        el.after("a&b", ContentType::Text);
        el.prepend("p", ContentType::Text);
        el.append("e", ContentType::Html);
        el.set_inner_content("i", ContentType::Text);
        el.remove_and_keep_content();
        assert!(!el.removed());
        el.replace("r", ContentType::Html);
        assert!(el.removed());
        el.remove();
        use ContentType::{Html, Text};
        assert_eq!(
            el.into_mutations(),
            [
                ElementMutation::Before(Content::new("<b>", Html)),
                ElementMutation::After(Content::new("a&b", Text)),
                ElementMutation::Prepend(Content::new("p", Text)),
                ElementMutation::Append(Content::new("e", Html)),
                ElementMutation::SetInnerContent(Content::new("i", Text)),
                ElementMutation::RemoveAndKeepContent,
                ElementMutation::Replace(Content::new("r", Html)),
                ElementMutation::Remove,
            ]
        );
    }

    #[test]
    fn node_changes_are_recorded_in_order() {
        let mut t = TextChunk::new("a &amp; b".into(), false);
        assert_eq!((t.as_str(), t.last_in_text_node()), ("a &amp; b", false));
        t.before("x", ContentType::Text);
        t.after("<y>", ContentType::Html);
        assert!(!t.removed());
        t.replace("z", ContentType::Text);
        assert!(t.removed());
        assert_eq!(
            t.into_mutations(),
            [
                NodeMutation::Before(Content::new("x", ContentType::Text)),
                NodeMutation::After(Content::new("<y>", ContentType::Html)),
                NodeMutation::Replace(Content::new("z", ContentType::Text)),
            ]
        );

        let mut c = Comment::new(" note ".into());
        assert_eq!(c.text(), " note ");
        c.remove();
        assert!(c.removed());
        assert_eq!(c.into_mutations(), [NodeMutation::Remove]);

        let mut end = EndTag::new("section".into());
        assert_eq!(end.name(), "section");
        end.before("<footer>", ContentType::Html);
        assert_eq!(
            end.into_mutations(),
            [NodeMutation::Before(Content::new(
                "<footer>",
                ContentType::Html
            ))]
        );

        let mut doc = DocumentEnd::new();
        doc.append("<!--x-->", ContentType::Html);
        doc.append("&", ContentType::Text);
        assert_eq!(
            doc.into_contents(),
            [
                Content::new("<!--x-->", ContentType::Html),
                Content::new("&", ContentType::Text)
            ]
        );
    }
}
