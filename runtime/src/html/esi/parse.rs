//! ESI markup → [`Template`] (W3C ESI Language Specification 1.0). A pure function.
//!
//! Only ESI markup is interpreted (`<esi:…>`, `</esi:…>`, `<!--esi … -->`); every other byte
//! is literal text, shared with the stored body. Malformed markup never fails the parse;
//! it is resolved in a defined way and noted in [`Template::warnings`]:
//! - an unknown `esi:` element loses its tags and keeps its content;
//! - a stray end tag is ignored; an end tag that skips open elements closes them;
//! - elements still open at the end of the document are closed there (an open
//!   `esi:remove` removes to the end);
//! - `esi:when` / `esi:otherwise` outside `esi:choose` and `esi:attempt` / `esi:except`
//!   outside `esi:try` are dropped with their content, as is text directly inside
//!   `esi:choose` or `esi:try`;
//! - a tag that never ends (`<esi:include src="x"` to the end of input) is literal text;
//! - nesting deeper than [`MAX_NESTING`] drops the deeper tags and keeps their content.

use bytes::Bytes;

use super::expr::Expr;
use super::template::{Include, Node, Template};
use super::vars::Interp;

/// Deepest nesting of ESI elements kept.
pub const MAX_NESTING: usize = 32;

#[derive(Debug)]
enum Kind {
    Root,
    Vars,
    Choose {
        whens: Vec<(Expr, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    When(Expr),
    Otherwise,
    Try {
        attempt: Vec<Node>,
        except: Vec<Node>,
    },
    Attempt,
    Except,
    /// `<!--esi … -->`: its content is ESI; the wrapper goes.
    Comment,
    Unknown(String),
}

impl Kind {
    fn name(&self) -> &str {
        match self {
            Kind::Root => "",
            Kind::Vars => "vars",
            Kind::Choose { .. } => "choose",
            Kind::When(_) => "when",
            Kind::Otherwise => "otherwise",
            Kind::Try { .. } => "try",
            Kind::Attempt => "attempt",
            Kind::Except => "except",
            Kind::Comment => "<!--esi",
            Kind::Unknown(n) => n,
        }
    }
}

struct Frame {
    kind: Kind,
    children: Vec<Node>,
}

struct Parser {
    src: Bytes,
    stack: Vec<Frame>,
    warnings: Vec<String>,
    uses_request: bool,
    ahead: Ahead,
}

/// Where the next `-->`, `>`, `"` and `'` are, as far as the parser has looked. It only
/// moves forward, so with these each byte is searched about once: without them, every `<`
/// inside an unclosed `<!--esi`, every `</esi:` without `>` and every unclosed quoted
/// attribute searched to the end of the page again (quadratic in a hostile page).
#[derive(Default)]
struct Ahead {
    close: Next,
    gt: Next,
    double: Next,
    single: Next,
}

/// The first occurrence of something at or after `from` (`None`: none to the end).
#[derive(Default)]
struct Next {
    known: Option<(usize, Option<usize>)>,
}

impl Next {
    fn find(&mut self, src: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
        let found = match self.known {
            Some((start, found)) if from >= start && found.is_none_or(|f| f >= from) => {
                return found;
            }
            // Before what is known (a tag inside another that did not end): only the
            // stretch up to it needs looking at, including a match that straddles it.
            Some((start, found)) if from < start => {
                let upto = (start + needle.len() - 1).min(src.len());
                find_bytes(&src[..upto], from, needle).or(found)
            }
            _ => find_bytes(src, from, needle),
        };
        self.known = Some((from, found));
        found
    }
}

/// Most warnings kept per template: a hostile page must not grow the stored entry.
const MAX_WARNINGS: usize = 16;

/// Parses an ESI document.
pub fn parse(src: Bytes) -> Template {
    let mut p = Parser {
        src,
        stack: vec![Frame {
            kind: Kind::Root,
            children: Vec::new(),
        }],
        warnings: Vec::new(),
        uses_request: false,
        ahead: Ahead::default(),
    };
    p.run();
    while p.stack.len() > 1 {
        let name = p
            .stack
            .last()
            .map(|f| f.kind.name().to_owned())
            .unwrap_or_default();
        p.warn(format!(
            "esi:{name} not closed before the end of the document"
        ));
        p.close_top();
    }
    let root = p.stack.pop().expect("root frame");
    Template {
        nodes: root.children,
        uses_request: p.uses_request,
        warnings: p.warnings,
    }
}

impl Parser {
    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        }
    }

    fn in_vars(&self) -> bool {
        self.stack.iter().any(|f| matches!(f.kind, Kind::Vars))
    }

    fn in_comment(&self) -> bool {
        self.stack.iter().any(|f| matches!(f.kind, Kind::Comment))
    }

    fn top(&mut self) -> &mut Frame {
        self.stack.last_mut().expect("root frame")
    }

    fn text(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let bytes = self.src.slice(from..to);
        let node = if self.in_vars() {
            let interp = Interp::parse(&String::from_utf8_lossy(&bytes));
            if interp.has_vars() {
                self.uses_request = true;
                Node::VarText(interp)
            } else {
                Node::Text(bytes)
            }
        } else {
            Node::Text(bytes)
        };
        let top = self.top();
        match top.kind {
            // Structure-only elements hold no text of their own.
            Kind::Choose { .. } | Kind::Try { .. } => {
                if !bytes_are_blank(&self.src[from..to]) {
                    let name = self.top().kind.name().to_owned();
                    self.warn(format!("text directly inside esi:{name} dropped"));
                }
            }
            _ => top.children.push(node),
        }
    }

    fn run(&mut self) {
        let len = self.src.len();
        let mut at = 0;
        let mut lit = 0;
        while at < len {
            let comment = self.in_comment();
            let Some(next) = find(&self.src, at, comment, &mut self.ahead.close) else {
                break;
            };
            let src = self.src.clone();
            let rest = &src[next..];
            if rest.starts_with(b"-->") {
                // Only found while inside `<!--esi`.
                self.text(lit, next);
                self.end_named("<!--esi");
                at = next + 3;
                lit = at;
            } else if rest.starts_with(b"<!--esi") {
                self.text(lit, next);
                self.open(Kind::Comment);
                at = next + 7;
                lit = at;
            } else if rest.starts_with(b"</esi:") {
                let gt = self.ahead.gt.find(&src, next, b">").map(|g| g - next);
                match gt.and_then(|gt| tag_end(rest, gt)) {
                    Some(end) => {
                        self.text(lit, next);
                        let name = String::from_utf8_lossy(&rest[6..end - 1])
                            .trim()
                            .to_ascii_lowercase();
                        if name != "include" && name != "comment" {
                            self.end_named(&name);
                        }
                        at = next + end;
                        lit = at;
                    }
                    None => at = next + 1,
                }
            } else if rest.starts_with(b"<esi:") {
                match start_tag(&src, next, &mut self.ahead) {
                    Some(tag) => {
                        self.text(lit, next);
                        at = next + tag.len;
                        if tag.name == "remove" && !tag.self_closing {
                            // Not processed at all: skip to its end tag.
                            match find_bytes(&self.src, at, b"</esi:remove>") {
                                Some(end) => at = end + b"</esi:remove>".len(),
                                None => {
                                    self.warn("esi:remove not closed: removed to the end".into());
                                    at = len;
                                }
                            }
                        } else {
                            self.start(tag);
                        }
                        lit = at;
                    }
                    None => at = next + 1,
                }
            } else {
                at = next + 1;
            }
        }
        self.text(lit, len);
    }

    fn open(&mut self, kind: Kind) {
        if self.stack.len() > MAX_NESTING {
            let name = kind.name().to_owned();
            self.warn(format!(
                "esi:{name} nested too deep: tags dropped, content kept"
            ));
            // Keep the content by not opening anything; its end tag will be stray.
            return;
        }
        self.stack.push(Frame {
            kind,
            children: Vec::new(),
        });
    }

    fn start(&mut self, tag: Tag) {
        let attr = |n: &str| {
            tag.attrs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        match tag.name.as_str() {
            "include" => {
                let src = attr("src").map(|s| Interp::parse(&s));
                let alt = attr("alt").map(|s| Interp::parse(&s));
                if src.as_ref().is_some_and(Interp::has_vars)
                    || alt.as_ref().is_some_and(Interp::has_vars)
                {
                    self.uses_request = true;
                }
                if src.is_none() {
                    self.warn("esi:include without src: it fails".into());
                }
                let node = Node::Include(Include {
                    src,
                    alt,
                    continue_on_error: attr("onerror").is_some_and(|v| v == "continue"),
                });
                self.top().children.push(node);
            }
            // Self-closing `esi:remove` and `esi:comment` leave nothing behind.
            "comment" | "remove" => {}
            _ if tag.self_closing => {}
            "vars" => self.open(Kind::Vars),
            "choose" => self.open(Kind::Choose {
                whens: Vec::new(),
                otherwise: Vec::new(),
            }),
            "when" => {
                self.uses_request = true;
                let test = attr("test").unwrap_or_default();
                let expr = Expr::parse(&test);
                if expr == Expr::Invalid {
                    // The start of it: a hostile test may be megabytes long.
                    let shown: String = test.chars().take(80).collect();
                    self.warn(format!(
                        "esi:when test {shown:?} is not an expression: false"
                    ));
                }
                self.open(Kind::When(expr));
            }
            "otherwise" => self.open(Kind::Otherwise),
            "try" => self.open(Kind::Try {
                attempt: Vec::new(),
                except: Vec::new(),
            }),
            "attempt" => self.open(Kind::Attempt),
            "except" => self.open(Kind::Except),
            other => {
                self.warn(format!(
                    "unknown element esi:{other}: tags dropped, content kept"
                ));
                self.open(Kind::Unknown(other.to_owned()));
            }
        }
    }

    /// Handles an end tag: closes up to the innermost open element of that name.
    fn end_named(&mut self, name: &str) {
        let Some(pos) = self.stack.iter().rposition(|f| f.kind.name() == name) else {
            if name != "<!--esi" {
                self.warn(format!("stray end tag esi:{name} ignored"));
            }
            return;
        };
        if pos == 0 {
            return;
        }
        while self.stack.len() > pos + 1 {
            let inner = self
                .stack
                .last()
                .map(|f| f.kind.name().to_owned())
                .unwrap_or_default();
            self.warn(format!("esi:{inner} closed by the end of esi:{name}"));
            self.close_top();
        }
        self.close_top();
    }

    /// Pops the innermost element and puts what it means into its parent.
    fn close_top(&mut self) {
        let Frame { kind, children } = self.stack.pop().expect("not the root");
        let parent = self.stack.last_mut().expect("root frame");
        let dropped = match (kind, &mut parent.kind) {
            (Kind::When(test), Kind::Choose { whens, .. }) => {
                whens.push((test, children));
                None
            }
            (Kind::Otherwise, Kind::Choose { otherwise, .. }) => {
                otherwise.extend(children);
                None
            }
            (Kind::Attempt, Kind::Try { attempt, .. }) => {
                attempt.extend(children);
                None
            }
            (Kind::Except, Kind::Try { except, .. }) => {
                except.extend(children);
                None
            }
            (k @ (Kind::When(_) | Kind::Otherwise | Kind::Attempt | Kind::Except), _) => {
                Some(k.name().to_owned())
            }
            (Kind::Choose { whens, otherwise }, _) => {
                parent.children.push(Node::Choose { whens, otherwise });
                None
            }
            (Kind::Try { attempt, except }, _) => {
                parent.children.push(Node::Try { attempt, except });
                None
            }
            // vars, <!--esi and unknown elements: their content takes their place.
            (_, Kind::Choose { .. } | Kind::Try { .. }) => {
                if !children.is_empty() {
                    Some("content".to_owned())
                } else {
                    None
                }
            }
            (_, _) => {
                parent.children.extend(children);
                None
            }
        };
        if let Some(name) = dropped {
            self.warn(format!("esi:{name} outside its parent element dropped"));
        }
    }
}

fn bytes_are_blank(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_whitespace)
}

/// The next `<` at or after `from`; inside `<!--esi`, also the next `-->`.
fn find(src: &[u8], from: usize, comment: bool, close: &mut Next) -> Option<usize> {
    let lt = src[from..]
        .iter()
        .position(|b| *b == b'<')
        .map(|i| from + i);
    if !comment {
        return lt;
    }
    let end = close.find(src, from, b"-->");
    match (lt, end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn find_bytes(src: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    src.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// Length of an end tag `</esi:name>` including `>`, given where its first `>` is.
fn tag_end(rest: &[u8], gt: usize) -> Option<usize> {
    let name = rest.get(6..gt)?;
    (!name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphabetic() || b.is_ascii_whitespace()))
    .then_some(gt + 1)
}

struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    self_closing: bool,
    len: usize,
}

/// Parses `<esi:name attr="v" …>` or `…/>` at `at`; `None` when it never ends or is not a
/// tag. An unquoted value ends at whitespace, `>`, `/` or `<`.
fn start_tag(src: &[u8], at: usize, ahead: &mut Ahead) -> Option<Tag> {
    let rest = &src[at..];
    let mut i = 5;
    let name_start = i;
    while i < rest.len() && rest[i].is_ascii_alphabetic() {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let name = String::from_utf8_lossy(&rest[name_start..i]).to_ascii_lowercase();
    let mut attrs = Vec::new();
    loop {
        while i < rest.len() && rest[i].is_ascii_whitespace() {
            i += 1;
        }
        match rest.get(i)? {
            b'>' => {
                return Some(Tag {
                    name,
                    attrs,
                    self_closing: false,
                    len: i + 1,
                })
            }
            b'/' if rest.get(i + 1) == Some(&b'>') => {
                return Some(Tag {
                    name,
                    attrs,
                    self_closing: true,
                    len: i + 2,
                })
            }
            _ => {}
        }
        let key_start = i;
        while i < rest.len() && (rest[i].is_ascii_alphanumeric() || b"-_:".contains(&rest[i])) {
            i += 1;
        }
        if i == key_start {
            return None;
        }
        let key = String::from_utf8_lossy(&rest[key_start..i]).to_ascii_lowercase();
        while i < rest.len() && rest[i].is_ascii_whitespace() {
            i += 1;
        }
        if rest.get(i) != Some(&b'=') {
            attrs.push((key, String::new()));
            continue;
        }
        i += 1;
        while i < rest.len() && rest[i].is_ascii_whitespace() {
            i += 1;
        }
        let quote = *rest.get(i)?;
        let value = if quote == b'"' || quote == b'\'' {
            let next = if quote == b'"' {
                &mut ahead.double
            } else {
                &mut ahead.single
            };
            let end = next.find(src, at + i + 1, &[quote])? - at;
            let v = &rest[i + 1..end];
            i = end + 1;
            v
        } else {
            let start = i;
            while i < rest.len() && !rest[i].is_ascii_whitespace() && !b"></".contains(&rest[i]) {
                i += 1;
            }
            &rest[start..i]
        };
        attrs.push((key, decode_entities(&String::from_utf8_lossy(value))));
    }
}

/// XML's predefined entities and numeric references, as attribute values may hold them.
fn decode_entities(v: &str) -> String {
    if !v.contains('&') {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // Only a `;` close enough ends an entity: looking further, a value of many `&`
        // without one searched to its end for each.
        let end = rest.bytes().take(11).position(|b| b == b';');
        let decoded = end.and_then(|e| match &rest[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32),
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Template {
        parse(Bytes::from(s.to_owned()))
    }

    fn text(n: &Node) -> String {
        match n {
            Node::Text(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }

    /// Every literal byte of a template, in order.
    fn literal(t: &Template) -> String {
        t.nodes.iter().map(text).collect()
    }

    #[test]
    fn hostile_pages_that_made_every_tag_search_to_the_end_parse_as_literal_text() {
        // Each was quadratic (a 1 MiB page took minutes); the parser now looks at each byte
        // about once. What they mean is unchanged: none of it is ESI.
        let n = 1 << 20;
        // `<` after `<!--esi` that never closes: the comment's content, unwrapped.
        let t = p(&format!("<!--esi {}", "<".repeat(n)));
        assert_eq!(literal(&t), format!(" {}", "<".repeat(n)));
        // `</esi:` with no `>` anywhere after.
        let ends = "</esi:".repeat(n / 6);
        assert_eq!(literal(&p(&ends)), ends);
        // Unquoted values that ran on over the next tag.
        let runs = "<esi:a b=".repeat(n / 9);
        assert_eq!(literal(&p(&runs)), runs);
        // A quoted value never closed, then many tags: one search to the end, not one each.
        let open = format!("<esi:include src=\"/x{}", "<esi:vars a=\"".repeat(n / 13));
        assert_eq!(literal(&p(&open)).len(), open.len());
        // An attribute of `&` with no `;`: each looked for its `;` to the end of the value.
        let t = p(&format!("<esi:include src=\"/{}\"/>", "&".repeat(n)));
        let Node::Include(i) = &t.nodes[0] else {
            panic!("{:?}", t.warnings)
        };
        assert_eq!(i.src, Some(Interp::parse(&format!("/{}", "&".repeat(n)))));
        // `$(` with no `)` inside `esi:vars`: no variable, so plain text.
        let dollars = "$(".repeat(n / 2);
        let t = p(&format!("<esi:vars>{dollars}</esi:vars>"));
        assert_eq!(literal(&t), dollars);
        assert!(!t.uses_request);
    }

    #[test]
    fn a_tag_inside_an_unfinished_one_still_parses() {
        // The first include's quote never closes before the second tag's: the first is
        // text up to where the second starts, and the second is an include.
        let t = p("<esi:include src=\"/a <esi:include src='/b'/> tail");
        assert_eq!(t.includes(), 1, "{:?}", t.nodes);
        let t = p("a<!--esi b<c --> d --> e");
        assert_eq!(literal(&t), "a b<c  d --> e");
    }

    #[test]
    fn literal_text_and_includes_keep_document_order() {
        let t = p(r#"<p>a</p><esi:include src="/h" alt="/alt" onerror="continue"/><p>b</p>"#);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(text(&t.nodes[0]), "<p>a</p>");
        let Node::Include(i) = &t.nodes[1] else {
            panic!()
        };
        assert_eq!(i.src, Some(Interp::parse("/h")));
        assert_eq!(i.alt, Some(Interp::parse("/alt")));
        assert!(i.continue_on_error);
        assert!(t.warnings.is_empty() && !t.uses_request);
    }

    #[test]
    fn remove_and_comment_leave_nothing_and_esi_comments_are_unwrapped() {
        let t = p("a<esi:remove><esi:include src=\"/x\"/>b</esi:remove>c<esi:comment text=\"x\"/>d<!--esi <esi:include src=\"/y\"/> -->e");
        let out: Vec<String> = t.nodes.iter().map(text).collect();
        assert_eq!(out[0], "a");
        assert_eq!(out[1], "c");
        assert_eq!(out[2], "d");
        assert_eq!(out[3], " ");
        assert!(out[4].starts_with("Include"), "{out:?}");
        assert_eq!(out[6], "e");
        assert_eq!(t.includes(), 1);
    }

    #[test]
    fn choose_and_try_build_their_branches() {
        let t = p(concat!(
            "<esi:choose>\n <esi:when test=\"$(HTTP_COOKIE{g})=='a'\">A</esi:when>",
            "<esi:when test=\"1==1\">one</esi:when><esi:otherwise>O</esi:otherwise></esi:choose>",
            "<esi:try><esi:attempt><esi:include src=\"/f\"/></esi:attempt><esi:except>E</esi:except></esi:try>"
        ));
        let Node::Choose { whens, otherwise } = &t.nodes[0] else {
            panic!("{:?}", t.nodes)
        };
        assert_eq!(whens.len(), 2);
        assert_eq!(otherwise.len(), 1);
        let Node::Try { attempt, except } = &t.nodes[1] else {
            panic!()
        };
        assert_eq!((attempt.len(), except.len()), (1, 1));
        assert!(t.uses_request);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn variables_are_read_only_inside_vars_and_attribute_entities_decode() {
        let t = p("$(HTTP_HOST)<esi:vars>Hi $(HTTP_COOKIE{n})</esi:vars><esi:include src=\"/f?a=1&amp;b=$(QUERY_STRING{b})\"/>");
        assert_eq!(text(&t.nodes[0]), "$(HTTP_HOST)");
        assert!(matches!(t.nodes[1], Node::VarText(_)));
        let Node::Include(i) = &t.nodes[2] else {
            panic!()
        };
        let src = i.src.as_ref().unwrap();
        assert!(matches!(&src.0[0], super::super::vars::Piece::Lit(l) if l == "/f?a=1&b="));
    }

    #[test]
    fn malformed_markup_resolves_in_the_documented_way() {
        let t = p("<esi:choose><esi:when test=\"1\">x");
        assert!(!t.warnings.is_empty());
        assert_eq!(t.nodes.len(), 1, "closed at the end");
        let t = p("a</esi:try>b");
        assert_eq!(t.nodes.iter().map(text).collect::<String>(), "ab");
        let t = p("<esi:include src=\"x\"");
        assert_eq!(
            t.nodes.iter().map(text).collect::<String>(),
            "<esi:include src=\"x\""
        );
        let t = p("<esi:frob>kept</esi:frob>");
        assert_eq!(t.nodes.iter().map(text).collect::<String>(), "kept");
        let t = p("<esi:when test=\"1\">gone</esi:when>x");
        assert_eq!(t.nodes.iter().map(text).collect::<String>(), "x");
        let t = p("<esi:remove>to the end");
        assert!(t.nodes.is_empty());
        let deep = "<esi:vars>".repeat(100) + "x" + &"</esi:vars>".repeat(100);
        let t = p(&deep);
        assert_eq!(t.nodes.iter().map(text).collect::<String>(), "x");
        assert!(t.warnings.len() <= MAX_WARNINGS);
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_without_panicking(s in "(<esi:[a-z]{0,8}|</esi:[a-z]{0,8}>|<!--esi|-->|[a-z =\"'/>$(){}|]{0,6}){0,40}") {
            let t = p(&s);
            let _ = t.weight();
            proptest::prop_assert!(t.warnings.len() <= MAX_WARNINGS);
        }

        #[test]
        fn text_without_esi_is_one_literal(s in "[^<]{0,200}") {
            let t = p(&s);
            let joined: String = t.nodes.iter().map(text).collect();
            proptest::prop_assert_eq!(joined, s);
        }
    }
}
