//! `Cache-Status` (RFC 9211) and `X-Cache` for one response.

use std::fmt::Write;

/// Why the request went forward to the origin (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// The cache was configured (or told by the script) not to handle this request.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored under the key.
    UriMiss,
    /// Stored responses did not match the request's `Vary` headers.
    VaryMiss,
    /// The request's own directives (`no-cache`, `max-age`, …) required it.
    Request,
    /// The stored response was stale and had to be revalidated.
    Stale,
}

impl Fwd {
    /// The RFC 9211 token.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// How the cache handled one request; rendered into `Cache-Status` and `X-Cache`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStatus {
    /// Served from cache without going forward (also stale served while revalidating).
    pub hit: bool,
    /// Why the request went forward, if it did.
    pub fwd: Option<Fwd>,
    /// Status the origin answered with.
    pub fwd_status: Option<u16>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited on another request's fetch.
    pub collapsed: bool,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// The cache key, shown only when the site enables debugging.
    pub key: Option<String>,
    /// Extra detail: why something was not stored, or what failed.
    pub detail: Option<String>,
}

impl CacheStatus {
    /// The `Cache-Status` member for this cache, named `name`.
    pub fn render(&self, name: &str) -> String {
        let mut s = String::from(name);
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            let _ = write!(s, "; fwd={}", f.as_str());
        }
        if let Some(c) = self.fwd_status {
            let _ = write!(s, "; fwd-status={c}");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(t) = self.ttl {
            let _ = write!(s, "; ttl={t}");
        }
        if let Some(k) = &self.key {
            let _ = write!(s, "; key={}", sf_string(k));
        }
        if let Some(d) = &self.detail {
            let _ = write!(s, "; detail={}", sf_string(d));
        }
        s
    }

    /// `HIT` or `MISS` for `X-Cache`.
    pub fn x_cache(&self) -> &'static str {
        if self.hit {
            "HIT"
        } else {
            "MISS"
        }
    }
}

/// An RFC 8941 sf-string: quoted, with `"` and `\` escaped and non-printables dropped.
fn sf_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9211_members() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(250),
            ..Default::default()
        };
        assert_eq!(hit.render("tessera"), "tessera; hit; ttl=250");
        let miss = CacheStatus {
            fwd: Some(Fwd::UriMiss),
            fwd_status: Some(200),
            stored: true,
            ..Default::default()
        };
        assert_eq!(
            miss.render("tessera"),
            "tessera; fwd=uri-miss; fwd-status=200; stored"
        );
        let d = CacheStatus {
            detail: Some("a\"b".into()),
            ..Default::default()
        };
        assert_eq!(d.render("t"), "t; detail=\"a\\\"b\"");
    }
}
