//! Read-side helpers on the request, response head and device class.

use std::fmt;

use crate::{DeviceClass, Query, Request, ResponseHead};

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
    use crate::testing::{request, response};
    use crate::DeviceClass;

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
