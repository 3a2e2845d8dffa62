//! A parsed ESI page: literal segments and ESI operations, kept with the stored entry.

use bytes::Bytes;

use super::expr::Expr;
use super::vars::Interp;

/// An ESI document, parsed once when it is stored so that hits only stitch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    /// The top-level nodes in document order.
    pub nodes: Vec<Node>,
    /// Whether output depends on the request (variables or conditions): then the assembled
    /// page must not be shared by downstream caches.
    pub uses_request: bool,
    /// Markup problems found and how they were resolved (for the log; never fatal).
    pub warnings: Vec<String>,
}

/// One piece of an ESI document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Bytes sent as they are.
    Text(Bytes),
    /// Text inside `esi:vars` with `$(…)` variables, substituted and HTML-escaped on output.
    VarText(Interp),
    /// `esi:include`.
    Include(Include),
    /// `esi:choose` with its `esi:when` branches (test, content) and `esi:otherwise`.
    Choose {
        /// The `when` branches in order.
        whens: Vec<(Expr, Vec<Node>)>,
        /// The `otherwise` content.
        otherwise: Vec<Node>,
    },
    /// `esi:try`: the attempt's output, or the except's if anything in the attempt failed.
    Try {
        /// `esi:attempt` content.
        attempt: Vec<Node>,
        /// `esi:except` content.
        except: Vec<Node>,
    },
}

/// An `esi:include` element.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// `src`, with variables.
    pub src: Option<Interp>,
    /// `alt`, tried when `src` fails.
    pub alt: Option<Interp>,
    /// `onerror="continue"`: a failure leaves nothing in its place.
    pub continue_on_error: bool,
}

impl Template {
    /// Bytes this template keeps beyond the stored body (literal segments share it).
    pub fn weight(&self) -> usize {
        fn nodes(n: &[Node]) -> usize {
            n.iter()
                .map(|n| {
                    64 + match n {
                        Node::Text(_) => 0,
                        Node::VarText(i) => i.weight(),
                        Node::Include(i) => {
                            i.src.as_ref().map_or(0, Interp::weight)
                                + i.alt.as_ref().map_or(0, Interp::weight)
                        }
                        Node::Choose { whens, otherwise } => {
                            whens.iter().map(|(_, b)| nodes(b) + 64).sum::<usize>()
                                + nodes(otherwise)
                        }
                        Node::Try { attempt, except } => nodes(attempt) + nodes(except),
                    }
                })
                .sum()
        }
        nodes(&self.nodes) + self.warnings.iter().map(String::len).sum::<usize>()
    }

    /// Number of `esi:include` elements anywhere in the template.
    pub fn includes(&self) -> usize {
        fn count(n: &[Node]) -> usize {
            n.iter()
                .map(|n| match n {
                    Node::Include(_) => 1,
                    Node::Choose { whens, otherwise } => {
                        whens.iter().map(|(_, b)| count(b)).sum::<usize>() + count(otherwise)
                    }
                    Node::Try { attempt, except } => count(attempt) + count(except),
                    _ => 0,
                })
                .sum()
        }
        count(&self.nodes)
    }
}
