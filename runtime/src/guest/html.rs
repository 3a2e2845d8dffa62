//! The HTML rewrite as the host sees it: what scripts asked for and what they change, checked
//! against caps and turned into host types.

use super::bindings::html_types as wit;
use super::sanitize::Violation;

/// Most handlers one script may ask for per response.
pub const MAX_HANDLERS: usize = 32;
/// Longest selector, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 256;
/// Most mutations one callback may return.
pub const MAX_MUTATIONS: usize = 64;
/// Most bytes of names, values and content one callback may return.
pub const MAX_CONTENT_BYTES: usize = 64 << 10;

/// How a handler wants text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// No text callbacks.
    None,
    /// Chunks as parsed.
    Chunks,
    /// Whole text nodes (the host buffers).
    Whole,
}

/// One handler a script asked for, its selector compiled.
#[derive(Debug, Clone)]
pub struct Handler {
    /// The compiled selector.
    pub selector: lol_html::Selector,
    /// Call `on-element`.
    pub element: bool,
    /// Call `on-element-end`.
    pub end_tag: bool,
    /// Text callbacks.
    pub text: TextMode,
    /// Comment callbacks.
    pub comments: bool,
}

/// Content to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The content.
    pub text: String,
    /// Raw HTML (else escaped text).
    pub html: bool,
}

/// A change to an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementMutation {
    /// Set attribute.
    SetAttribute(String, String),
    /// Remove attribute.
    RemoveAttribute(String),
    /// Insert before.
    Before(Content),
    /// Insert after.
    After(Content),
    /// Insert after the start tag.
    Prepend(Content),
    /// Insert before the end tag.
    Append(Content),
    /// Replace the element.
    Replace(Content),
    /// Replace the content.
    SetInnerContent(Content),
    /// Remove with content.
    Remove,
    /// Remove the tags, keep the content.
    RemoveAndKeepContent,
}

/// A change to a text chunk, comment or end tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMutation {
    /// Insert before.
    Before(Content),
    /// Insert after.
    After(Content),
    /// Replace.
    Replace(Content),
    /// Remove.
    Remove,
}

/// An element as scripts see it.
#[derive(Debug, Clone)]
pub struct ElementView {
    /// Tag name.
    pub tag: String,
    /// Attributes as written.
    pub attributes: Vec<(String, String)>,
}

impl From<ElementView> for wit::Element {
    fn from(e: ElementView) -> wit::Element {
        wit::Element {
            tag: e.tag,
            attributes: e.attributes,
        }
    }
}

fn content(c: wit::Content, budget: &mut usize) -> Result<Content, Violation> {
    take(budget, c.text.len())?;
    Ok(Content {
        text: c.text,
        html: c.html,
    })
}

fn take(budget: &mut usize, n: usize) -> Result<(), Violation> {
    *budget = budget.checked_sub(n).ok_or_else(|| {
        Violation(format!(
            "more than {MAX_CONTENT_BYTES} bytes of content in one callback"
        ))
    })?;
    Ok(())
}

fn count<T>(list: &[T]) -> Result<(), Violation> {
    if list.len() > MAX_MUTATIONS {
        return Err(Violation(format!(
            "{} mutations in one callback (at most {MAX_MUTATIONS})",
            list.len()
        )));
    }
    Ok(())
}

/// Checks a script's handlers; `compile` turns a selector into lol_html's (cached per script).
pub fn handlers(
    list: Vec<wit::HtmlHandler>,
    compile: impl Fn(&str) -> Result<lol_html::Selector, String>,
) -> Result<Vec<Handler>, Violation> {
    if list.len() > MAX_HANDLERS {
        return Err(Violation(format!(
            "{} html handlers (at most {MAX_HANDLERS})",
            list.len()
        )));
    }
    list.into_iter()
        .map(|h| {
            if h.selector.len() > MAX_SELECTOR_BYTES {
                return Err(Violation(format!(
                    "selector of {} bytes (at most {MAX_SELECTOR_BYTES})",
                    h.selector.len()
                )));
            }
            Ok(Handler {
                selector: compile(&h.selector).map_err(Violation)?,
                element: h.element,
                end_tag: h.end_tag,
                text: match h.text {
                    wit::TextMode::None => TextMode::None,
                    wit::TextMode::Chunks => TextMode::Chunks,
                    wit::TextMode::Whole => TextMode::Whole,
                },
                comments: h.comments,
            })
        })
        .collect()
}

/// Checks an element callback's answer.
pub fn element_mutations(
    list: Vec<wit::ElementMutation>,
) -> Result<Vec<ElementMutation>, Violation> {
    count(&list)?;
    let mut budget = MAX_CONTENT_BYTES;
    list.into_iter()
        .map(|m| {
            Ok(match m {
                wit::ElementMutation::SetAttribute((n, v)) => {
                    take(&mut budget, n.len() + v.len())?;
                    ElementMutation::SetAttribute(n, v)
                }
                wit::ElementMutation::RemoveAttribute(n) => {
                    take(&mut budget, n.len())?;
                    ElementMutation::RemoveAttribute(n)
                }
                wit::ElementMutation::Before(c) => {
                    ElementMutation::Before(content(c, &mut budget)?)
                }
                wit::ElementMutation::After(c) => ElementMutation::After(content(c, &mut budget)?),
                wit::ElementMutation::Prepend(c) => {
                    ElementMutation::Prepend(content(c, &mut budget)?)
                }
                wit::ElementMutation::Append(c) => {
                    ElementMutation::Append(content(c, &mut budget)?)
                }
                wit::ElementMutation::Replace(c) => {
                    ElementMutation::Replace(content(c, &mut budget)?)
                }
                wit::ElementMutation::SetInnerContent(c) => {
                    ElementMutation::SetInnerContent(content(c, &mut budget)?)
                }
                wit::ElementMutation::Remove => ElementMutation::Remove,
                wit::ElementMutation::RemoveAndKeepContent => ElementMutation::RemoveAndKeepContent,
            })
        })
        .collect()
}

/// Checks a text, comment or end-tag callback's answer.
pub fn node_mutations(list: Vec<wit::NodeMutation>) -> Result<Vec<NodeMutation>, Violation> {
    count(&list)?;
    let mut budget = MAX_CONTENT_BYTES;
    list.into_iter()
        .map(|m| {
            Ok(match m {
                wit::NodeMutation::Before(c) => NodeMutation::Before(content(c, &mut budget)?),
                wit::NodeMutation::After(c) => NodeMutation::After(content(c, &mut budget)?),
                wit::NodeMutation::Replace(c) => NodeMutation::Replace(content(c, &mut budget)?),
                wit::NodeMutation::Remove => NodeMutation::Remove,
            })
        })
        .collect()
}

/// Checks the document-end answer.
pub fn contents(list: Vec<wit::Content>) -> Result<Vec<Content>, Violation> {
    count(&list)?;
    let mut budget = MAX_CONTENT_BYTES;
    list.into_iter().map(|c| content(c, &mut budget)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> wit::Content {
        wit::Content {
            text: s.into(),
            html: false,
        }
    }

    #[test]
    fn callbacks_are_capped_in_count_and_bytes() {
        let many = vec![wit::ElementMutation::Remove; MAX_MUTATIONS + 1];
        assert!(element_mutations(many).is_err());
        let big = vec![wit::ElementMutation::Append(c(
            &"x".repeat(MAX_CONTENT_BYTES + 1)
        ))];
        assert!(element_mutations(big).is_err());
        assert!(node_mutations(vec![wit::NodeMutation::Before(c("ok"))]).is_ok());
    }

    #[test]
    fn handlers_are_capped_and_bad_selectors_named() {
        let h = |sel: &str| wit::HtmlHandler {
            selector: sel.into(),
            element: true,
            end_tag: false,
            text: wit::TextMode::None,
            comments: false,
        };
        let compile = |s: &str| {
            s.parse::<lol_html::Selector>()
                .map_err(|e| format!("invalid selector {s:?}: {e}"))
        };
        let e = handlers(vec![h("div[")], compile).unwrap_err();
        assert!(e.0.contains("div["), "{e}");
        assert!(handlers(vec![h("div"); MAX_HANDLERS + 1], compile).is_err());
        assert!(handlers(vec![h(&"d".repeat(MAX_SELECTOR_BYTES + 1))], compile).is_err());
        assert_eq!(
            handlers(vec![h("div.greeting"), h("[data-x]")], compile)
                .unwrap()
                .len(),
            2
        );
    }
}
