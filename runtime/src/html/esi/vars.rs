//! ESI variables (ESI 1.0 §5): `$(HTTP_COOKIE{name}|default)` and friends, from the request.

use std::fmt::Write;

use http::HeaderMap;

/// Longest `$(…)` reference read as one, in bytes after `$(`.
pub const MAX_REF: usize = 256;

/// Text with variable references, e.g. `/frag?lang=$(HTTP_COOKIE{lang}|en)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interp(pub Vec<Piece>);

/// A literal run or a variable reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text as written.
    Lit(String),
    /// `$(NAME{key}|default)`.
    Var {
        /// Variable name, e.g. `HTTP_COOKIE`.
        name: String,
        /// Dictionary key or list item, e.g. the cookie name.
        key: Option<String>,
        /// Used when the variable is undefined or empty.
        default: Option<String>,
    },
}

/// How a substituted value is made safe for where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Into HTML text: `& < > " '` escaped, so a value can never become markup.
    Html,
    /// Into a URL: everything but unreserved characters percent-encoded.
    Url,
    /// As a value inside an expression: not escaped.
    None,
}

/// The request a page is assembled for: what variables read.
pub struct VarSource<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its query string.
    pub query: Option<&'a str>,
    /// The host it asked for.
    pub host: &'a str,
}

impl Interp {
    /// Parses text with `$(…)` references; anything malformed stays literal, as does one
    /// longer than [`MAX_REF`].
    pub fn parse(text: &str) -> Interp {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("$(") {
            lit.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            // Only a `)` close enough ends a reference: a hostile page of `$(` with none
            // made every one of them search to the end.
            match parse_ref(&after[..after.floor_char_boundary(MAX_REF)]) {
                Some((piece, used)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(piece);
                    rest = &after[used..];
                }
                None => {
                    lit.push_str("$(");
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Interp(pieces)
    }

    /// Whether any piece is a variable.
    pub fn has_vars(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Var { .. }))
    }

    /// Bytes kept.
    pub fn weight(&self) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.len() + 24,
                Piece::Var { name, key, default } => {
                    name.len()
                        + key.as_ref().map_or(0, String::len)
                        + default.as_ref().map_or(0, String::len)
                        + 48
                }
            })
            .sum()
    }

    /// The text with variables substituted; literals are kept as written.
    pub fn render(&self, src: &VarSource, escape: Escape) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var { name, key, default } => {
                    let v = src
                        .value(name, key.as_deref())
                        .filter(|v| !v.is_empty())
                        .or_else(|| default.clone())
                        .unwrap_or_default();
                    escape_into(&mut out, &v, escape);
                }
            }
        }
        out
    }
}

/// Parses `NAME{key}|default)` after `$(`; returns the piece and the bytes used.
fn parse_ref(s: &str) -> Option<(Piece, usize)> {
    let close = s.find(')')?;
    let inner = &s[..close];
    let name_end = inner
        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &inner[name_end..];
    let mut key = None;
    if let Some(r) = rest.strip_prefix('{') {
        let end = r.find('}')?;
        key = Some(r[..end].to_owned());
        rest = &r[end + 1..];
    }
    let default = match rest.strip_prefix('|') {
        Some(d) => {
            let d = d.trim();
            Some(
                d.strip_prefix('\'')
                    .and_then(|d| d.strip_suffix('\''))
                    .unwrap_or(d)
                    .to_owned(),
            )
        }
        None if rest.is_empty() => None,
        None => return None,
    };
    Some((
        Piece::Var {
            name: name.to_owned(),
            key,
            default,
        },
        close + 1,
    ))
}

fn escape_into(out: &mut String, v: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(v),
        Escape::Html => crate::html::escape_into(out, v),
        Escape::Url => {
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
}

impl VarSource<'_> {
    fn header(&self, name: &str) -> Option<String> {
        let all: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!all.is_empty()).then(|| all.join(if name == "cookie" { "; " } else { ", " }))
    }

    /// A variable's value (ESI 1.0 §5.2); `None` when undefined.
    pub fn value(&self, name: &str, key: Option<&str>) -> Option<String> {
        match (name, key) {
            ("HTTP_HOST", None) => Some(self.host.to_owned()),
            ("HTTP_REFERER", None) => self.header("referer"),
            ("HTTP_COOKIE", None) => self.header("cookie"),
            ("HTTP_COOKIE", Some(k)) => self.header("cookie").and_then(|c| {
                c.split(';')
                    .filter_map(|p| p.trim().split_once('='))
                    .find(|(n, _)| n.trim() == k)
                    .map(|(_, v)| v.trim().to_owned())
            }),
            ("QUERY_STRING", None) => self.query.map(str::to_owned),
            ("QUERY_STRING", Some(k)) => self.query.and_then(|q| {
                q.split('&').find_map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    (n == k).then(|| percent_decode(v))
                })
            }),
            ("HTTP_ACCEPT_LANGUAGE", None) => self.header("accept-language"),
            ("HTTP_ACCEPT_LANGUAGE", Some(lang)) => {
                let header = self.header("accept-language").unwrap_or_default();
                let found = header.split(',').any(|range| {
                    let tag = range.split(';').next().unwrap_or("").trim();
                    tag.eq_ignore_ascii_case(lang)
                        || tag
                            .split('-')
                            .next()
                            .is_some_and(|primary| primary.eq_ignore_ascii_case(lang))
                });
                Some(found.to_string())
            }
            ("HTTP_USER_AGENT", None) => self.header("user-agent"),
            ("HTTP_USER_AGENT", Some(part)) => Some(user_agent(
                &self.header("user-agent").unwrap_or_default(),
                part,
            )),
            _ => None,
        }
    }
}

fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// `HTTP_USER_AGENT{browser|os|version}` as ESI 1.0 §5.2 defines it.
fn user_agent(ua: &str, part: &str) -> String {
    let msie = ua.find("MSIE ").map(|i| &ua[i + 5..]);
    match part {
        "browser" => if msie.is_some() || ua.contains("Trident/") {
            "MSIE"
        } else if ua.starts_with("Mozilla") {
            "MOZILLA"
        } else {
            "OTHER"
        }
        .into(),
        "os" => if ua.contains("Windows") {
            "WIN"
        } else if ua.contains("Macintosh") || ua.contains("Mac OS") {
            "MAC"
        } else if ua.contains("Linux") || ua.contains("X11") || ua.contains("BSD") {
            "UNIX"
        } else {
            "OTHER"
        }
        .into(),
        "version" => {
            let from = msie.or_else(|| ua.strip_prefix("Mozilla/")).unwrap_or("");
            from.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(
        headers: &[(&'static str, &str)],
        query: Option<&'static str>,
    ) -> (HeaderMap, Option<&'static str>) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().unwrap());
        }
        (h, query)
    }

    fn render(text: &str, h: &HeaderMap, q: Option<&str>, e: Escape) -> String {
        let s = VarSource {
            headers: h,
            query: q,
            host: "shop.test",
        };
        Interp::parse(text).render(&s, e)
    }

    #[test]
    fn cookies_queries_hosts_and_defaults_esi_5() {
        let (h, q) = src(
            &[("cookie", "a=1; user=Zoë"), ("referer", "https://r/")],
            Some("id=7&x=a%20b"),
        );
        assert_eq!(render("$(HTTP_COOKIE{user})", &h, q, Escape::None), "Zoë");
        assert_eq!(
            render("$(HTTP_COOKIE{none}|'guest')", &h, q, Escape::None),
            "guest"
        );
        assert_eq!(
            render("$(HTTP_COOKIE{none}|anon)", &h, q, Escape::None),
            "anon"
        );
        assert_eq!(render("$(QUERY_STRING{x})", &h, q, Escape::None), "a b");
        assert_eq!(
            render("/f?id=$(QUERY_STRING{id})", &h, q, Escape::Url),
            "/f?id=7"
        );
        assert_eq!(
            render("$(HTTP_HOST)|$(HTTP_REFERER)", &h, q, Escape::None),
            "shop.test|https://r/"
        );
        assert_eq!(render("$(NOPE)", &h, q, Escape::None), "");
    }

    #[test]
    fn values_are_escaped_for_where_they_go() {
        let (h, q) = src(&[("cookie", "n=<script>\"x\"&'")], None);
        assert_eq!(
            render("$(HTTP_COOKIE{n})", &h, q, Escape::Html),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        assert_eq!(
            render("$(HTTP_COOKIE{n})", &h, q, Escape::Url),
            "%3Cscript%3E%22x%22%26%27"
        );
    }

    #[test]
    fn language_and_user_agent_dictionaries_esi_5_2() {
        let (h, q) = src(
            &[
                ("accept-language", "en-GB,en;q=0.9, nl;q=0.5"),
                ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64)"),
            ],
            None,
        );
        assert_eq!(
            render("$(HTTP_ACCEPT_LANGUAGE{nl})", &h, q, Escape::None),
            "true"
        );
        assert_eq!(
            render("$(HTTP_ACCEPT_LANGUAGE{en})", &h, q, Escape::None),
            "true"
        );
        assert_eq!(
            render("$(HTTP_ACCEPT_LANGUAGE{de})", &h, q, Escape::None),
            "false"
        );
        assert_eq!(
            render("$(HTTP_USER_AGENT{browser})", &h, q, Escape::None),
            "MOZILLA"
        );
        assert_eq!(render("$(HTTP_USER_AGENT{os})", &h, q, Escape::None), "WIN");
        assert_eq!(
            render("$(HTTP_USER_AGENT{version})", &h, q, Escape::None),
            "5.0"
        );
    }

    #[test]
    fn malformed_references_stay_literal() {
        let (h, q) = src(&[], None);
        for t in [
            "$(",
            "$(lower)",
            "$(A{b",
            "$(A)x)",
            "cost $(5)",
            "$(A junk)",
        ] {
            let _ = render(t, &h, q, Escape::None);
        }
        assert_eq!(render("$(", &h, q, Escape::None), "$(");
        assert_eq!(render("$(lower)", &h, q, Escape::None), "$(lower)");
        assert_eq!(render("$(A junk)", &h, q, Escape::None), "$(A junk)");
    }
}
