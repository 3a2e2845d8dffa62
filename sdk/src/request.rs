//! The request and response head as scripts see them, unpacked from the wire, and their
//! read-side helpers.

use std::fmt;

use crate::bindings::tessera::edge::types as wire;
use crate::{ClientInfo, DeviceClass, Query, RequestParts, RequestReads};

/// An incoming request as the script sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method in upper case, e.g. `GET`.
    pub method: String,
    /// `http` or `https`, as the client reached the edge.
    pub scheme: String,
    /// Host (and port, if not default) the client asked for.
    pub authority: String,
    /// Path, starting with `/`, still percent-encoded.
    pub path: String,
    /// Raw query string without the `?`, if any.
    pub query: Option<String>,
    /// Request headers `(name, value)`, names in lower case, in the order each name first
    /// arrived and a repeated name's values together, in arrival order; bytes of a value
    /// that are not UTF-8 arrive as U+FFFD, so no header is ever hidden from the script.
    pub headers: Vec<(String, String)>,
    /// Facts about the client.
    pub client: ClientInfo,
}

/// Status and headers of an origin (or cached) response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
    /// Response headers `(name, value)` in order, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl From<wire::Request> for Request {
    fn from(r: wire::Request) -> Request {
        Request {
            method: r.method,
            scheme: r.scheme,
            authority: r.authority,
            path: r.path,
            query: r.query,
            headers: unpack(&r.headers),
            client: r.client,
        }
    }
}

impl From<wire::ResponseHead> for ResponseHead {
    fn from(r: wire::ResponseHead) -> ResponseHead {
        ResponseHead {
            status: r.status,
            headers: unpack(&r.headers),
        }
    }
}

impl From<&Request> for wire::Request {
    fn from(r: &Request) -> wire::Request {
        wire::Request {
            method: r.method.clone(),
            scheme: r.scheme.clone(),
            authority: r.authority.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: pack(&r.headers),
            client: r.client.clone(),
        }
    }
}

impl From<&ResponseHead> for wire::ResponseHead {
    fn from(r: &ResponseHead) -> wire::ResponseHead {
        wire::ResponseHead {
            status: r.status,
            headers: pack(&r.headers),
        }
    }
}

/// The fields the host packed, one `(name, value)` each. Lengths that overrun the text or
/// split a character (never sent by a correct host) end the list there.
fn unpack(f: &wire::Fields) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(f.lengths.len());
    let mut rest = f.text.as_str();
    for &(n, v) in &f.lengths {
        let (n, v) = (n as usize, v as usize);
        let (Some(name), Some(value)) = (rest.get(..n), rest.get(n..n.saturating_add(v))) else {
            break;
        };
        out.push((name.to_owned(), value.to_owned()));
        rest = &rest[n + v..];
    }
    out
}

/// Fields packed as the host sends them (for tests, which call hooks through the glue).
fn pack(headers: &[(String, String)]) -> wire::Fields {
    let mut text = String::new();
    let mut lengths = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        text.push_str(name);
        text.push_str(value);
        lengths.push((name.len() as u32, value.len() as u32));
    }
    wire::Fields { text, lengths }
}

/// Values of every header called `name` (ASCII case-insensitive), in order.
fn values<'h, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    /// The request as a hook limited to `reads` sees it: every other part empty, as the
    /// host passes it (`key_reads`).
    pub fn as_read_by(&self, reads: &RequestReads) -> Request {
        let p = reads.parts;
        let take = |part, s: &String| {
            if p.contains(part) {
                s.clone()
            } else {
                String::new()
            }
        };
        Request {
            method: take(RequestParts::METHOD, &self.method),
            scheme: take(RequestParts::SCHEME, &self.scheme),
            authority: take(RequestParts::AUTHORITY, &self.authority),
            path: take(RequestParts::PATH, &self.path),
            query: self
                .query
                .clone()
                .filter(|_| p.contains(RequestParts::QUERY)),
            // As the host passes them: by declared name, each name's values in arrival order.
            headers: reads
                .headers
                .iter()
                .flat_map(|h| {
                    self.headers
                        .iter()
                        .filter(|(n, _)| h.eq_ignore_ascii_case(n))
                })
                .cloned()
                .collect(),
            client: ClientInfo {
                ip: take(RequestParts::CLIENT_IP, &self.client.ip),
                country: self
                    .client
                    .country
                    .clone()
                    .filter(|_| p.contains(RequestParts::COUNTRY)),
                device: if p.contains(RequestParts::DEVICE) {
                    self.client.device
                } else {
                    DeviceClass::Desktop
                },
            },
        }
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        values(&self.headers, name).next()
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        values(&self.headers, name)
    }

    /// Value of cookie `name` from all `cookie` headers (names are case-sensitive, RFC 6265 §5.4).
    ///
    /// The first match wins; a value wrapped in double quotes is returned without them.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_all("cookie")
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| {
                let v = v.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
    }

    /// The query string as an ordered, editable [`Query`] (empty when there is none).
    pub fn query(&self) -> Query {
        Query::parse(self.query.as_deref().unwrap_or(""))
    }
}

impl ResponseHead {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        values(&self.headers, name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        values(&self.headers, name)
    }

    /// Media type of `content-type`, lower-cased, without parameters (`text/html; charset=utf-8` → `text/html`).
    pub fn media_type(&self) -> Option<String> {
        let value = self.header("content-type")?;
        let essence = value.split(';').next().unwrap_or("").trim();
        (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
    }
}

impl DeviceClass {
    /// Lower-case name as in the WIT: `desktop`, `mobile`, `tablet` or `bot`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Bot => "bot",
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{pack, unpack, wire};
    use crate::testing::{request, response};
    use crate::DeviceClass;

    #[test]
    fn fields_cross_the_wire_and_back_in_order() {
        let req = request("/p?q=1")
            .header("Cookie", "a=1")
            .header("x-empty", "")
            .header("cookie", "b=é")
            .build();
        let wire = wire::Request::from(&req);
        assert_eq!(wire.headers.text, "cookiea=1x-emptycookieb=é");
        assert_eq!(super::Request::from(wire), req);
    }

    #[test]
    fn lengths_that_overrun_or_split_a_character_end_the_list() {
        let mut f = pack(&[("a".into(), "é".into()), ("b".into(), "2".into())]);
        f.lengths[1] = (1, 9);
        assert_eq!(unpack(&f), [("a".to_owned(), "é".to_owned())]);
        f.lengths = vec![(1, 1)];
        assert_eq!(unpack(&f), []);
        f.lengths = vec![(u32::MAX, u32::MAX)];
        assert_eq!(unpack(&f), []);
    }

    #[test]
    fn header_lookup_ignores_case_and_returns_first() {
        let req = request("/")
            .header("Accept", "text/html")
            .header("accept", "*/*")
            .build();
        assert_eq!(req.header("ACCEPT"), Some("text/html"));
        assert_eq!(
            req.header_all("accept").collect::<Vec<_>>(),
            ["text/html", "*/*"]
        );
        assert_eq!(req.header("missing"), None);
    }

    #[test]
    fn cookie_is_found_across_several_cookie_headers() {
        let req = request("/")
            .header("cookie", "a=1; b=2")
            .header("cookie", "ab=B;theme=\"dark\"")
            .build();
        assert_eq!(req.cookie("a"), Some("1"));
        assert_eq!(req.cookie("b"), Some("2"));
        assert_eq!(req.cookie("ab"), Some("B"));
        assert_eq!(req.cookie("theme"), Some("dark"));
        assert_eq!(req.cookie("A"), None, "cookie names are case-sensitive");
        assert_eq!(req.cookie("c"), None);
    }

    #[test]
    fn cookie_first_match_wins_and_empty_value_is_found() {
        let req = request("/").header("cookie", "x=; x=2; junk; y").build();
        assert_eq!(req.cookie("x"), Some(""));
        assert_eq!(req.cookie("junk"), None);
    }

    #[test]
    fn query_is_empty_without_a_query_string() {
        assert!(request("/p").build().query().is_empty());
        assert_eq!(request("/p?b=2&a=1").build().query().get("a"), Some("1"));
    }

    #[test]
    fn media_type_drops_parameters_and_case() {
        let resp = response(200)
            .header("Content-Type", "Text/HTML; charset=UTF-8")
            .build();
        assert_eq!(resp.media_type().as_deref(), Some("text/html"));
        assert_eq!(response(200).build().media_type(), None);
        assert_eq!(
            response(200)
                .header("content-type", " ; x")
                .build()
                .media_type(),
            None
        );
    }

    #[test]
    fn device_class_renders_as_wit_name() {
        assert_eq!(DeviceClass::Tablet.to_string(), "tablet");
        assert_eq!(DeviceClass::Bot.as_str(), "bot");
    }
}
