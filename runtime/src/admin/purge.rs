//! `POST /purge` and `POST /events`: what a request names, resolved to store purges.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache::{key, Purge, StoreKey};
use crate::config::EventRule;
use crate::proxy::Generation;

/// A purge request, as JSON: exactly one of `url`, `prefix`, `tag`, `site` or `all`
/// (`tag` may be narrowed with `site`), and `soft` to mark stale instead of removing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// An absolute URL: every variant and key of it.
    pub url: Option<String>,
    /// An absolute URL prefix: every stored URL starting with it.
    pub prefix: Option<String>,
    /// A surrogate key (from `Surrogate-Key`, `Cache-Tag` or a script's decision).
    pub tag: Option<String>,
    /// A site's name: all of it (or, with `tag`, where the tag is looked for).
    pub site: Option<String>,
    /// Everything.
    pub all: Option<bool>,
    /// Mark stale (serve-stale windows still apply) instead of removing.
    #[serde(default)]
    pub soft: bool,
}

/// A purge request that cannot be carried out, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(s: impl Into<String>) -> Invalid {
    Invalid(s.into())
}

/// `(site, authority + path)` of an absolute `http(s)://` URL, for the site serving it.
fn locate(gen: &Generation, url: &str) -> Result<(String, String, Option<String>), Invalid> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid(format!("`{url}` is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(format!(
            "`{url}` must be absolute (http://host/path)"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(format!("`{url}` must be absolute (http://host/path)")))?
        .as_str()
        .to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let site = gen
        .sites
        .iter()
        .find(|s| s.cfg.matches(&host))
        .ok_or_else(|| invalid(format!("no site serves {host}")))?;
    Ok((
        site.cfg.name.clone(),
        format!("{authority}{}", uri.path()),
        uri.query().map(str::to_owned),
    ))
}

/// What a request purges, as store targets, with a short description for the audit log.
pub fn targets(gen: &Generation, r: &PurgeRequest) -> Result<(Purge, String), Invalid> {
    let picked = [
        r.url.is_some(),
        r.prefix.is_some(),
        r.tag.is_some(),
        r.all == Some(true),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let site_only = picked == 0 && r.site.is_some();
    if picked + usize::from(site_only) != 1
        || (r.site.is_some() && (r.url.is_some() || r.prefix.is_some() || r.all.is_some()))
    {
        return Err(invalid(
            "give exactly one of `url`, `prefix`, `tag`, `site` or `all` (`tag` may be narrowed by `site`)",
        ));
    }
    if let Some(site) = &r.site {
        if !gen.sites.iter().any(|s| &s.cfg.name == site) {
            return Err(invalid(format!("no site named {site:?}")));
        }
    }
    if let Some(url) = &r.url {
        let (site, path, query) = locate(gen, url)?;
        let (authority, p) = path
            .split_once('/')
            .map(|(a, p)| (a, format!("/{p}")))
            .unwrap_or((&path, "/".into()));
        let default = key::default_key(authority, &p, query.as_deref());
        return Ok((
            Purge::Uri(StoreKey::new(&site, &default).as_str().to_owned()),
            format!("url {url}"),
        ));
    }
    if let Some(prefix) = &r.prefix {
        let (site, path, _) = locate(gen, prefix)?;
        return Ok((
            Purge::Prefix(StoreKey::new(&site, &path).as_str().to_owned()),
            format!("prefix {prefix}"),
        ));
    }
    if let Some(tag) = &r.tag {
        if tag.is_empty() {
            return Err(invalid("empty tag"));
        }
        let what = match &r.site {
            Some(s) => format!("tag {tag} in {s}"),
            None => format!("tag {tag}"),
        };
        return Ok((
            Purge::Tag {
                tag: tag.clone(),
                site: r.site.clone(),
            },
            what,
        ));
    }
    if r.all == Some(true) {
        return Ok((Purge::All, "all".into()));
    }
    let site = r.site.clone().expect("checked above");
    Ok((Purge::Site(site.clone()), format!("site {site}")))
}

/// A publish event's fields (`event`, `type`, `id`, … as strings).
pub type Event = BTreeMap<String, serde_json::Value>;

/// Fills `{field}` placeholders from the event; a missing field is an error naming it.
fn fill(template: &str, event: &Event) -> Result<String, Invalid> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| invalid(format!("unclosed placeholder in `{template}`")))?;
        let name = &rest[open + 1..open + close];
        let value = match event.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(invalid(format!(
                    "event has no string field `{name}` (needed by `{template}`)"
                )))
            }
        };
        if value.is_empty() || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(format!(
                "event field `{name}` is empty or has spaces"
            )));
        }
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The purges an event maps to through the configured rules; an event no rule answers is
/// an error (never ignored silently).
pub fn event_targets(
    gen: &Generation,
    rules: &[EventRule],
    event: &Event,
) -> Result<Vec<(Purge, String, bool)>, Invalid> {
    let name = match event.get("event") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        _ => return Err(invalid("the event has no `event` field")),
    };
    let kind = event.get("type").and_then(|v| v.as_str());
    let matching: Vec<&EventRule> = rules
        .iter()
        .filter(|r| r.event == name && r.kind.as_deref().is_none_or(|k| Some(k) == kind))
        .collect();
    if matching.is_empty() {
        return Err(invalid(format!(
            "no rule for event {name:?}{}",
            kind.map(|k| format!(" of type {k:?}")).unwrap_or_default()
        )));
    }
    let mut out = Vec::new();
    for r in matching {
        for t in &r.tags {
            let tag = fill(t, event)?;
            out.push((
                Purge::Tag {
                    tag: tag.clone(),
                    site: None,
                },
                format!("tag {tag}"),
                r.soft,
            ));
        }
        for (templates, prefix) in [(&r.urls, false), (&r.prefixes, true)] {
            for t in templates {
                let filled = Some(fill(t, event)?);
                let req = PurgeRequest {
                    url: if prefix { None } else { filled.clone() },
                    prefix: if prefix { filled } else { None },
                    soft: r.soft,
                    ..PurgeRequest::default()
                };
                let (p, what) = targets(gen, &req)?;
                out.push((p, what, r.soft));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_missing_fields_named() {
        let e: Event = serde_json::from_str(r#"{"event":"publish","id":"blt123","n":7}"#).unwrap();
        assert_eq!(fill("entry-{id}", &e).unwrap(), "entry-blt123");
        assert_eq!(fill("n{n}", &e).unwrap(), "n7");
        assert!(fill("x-{locale}", &e).unwrap_err().0.contains("`locale`"));
        assert!(fill("x-{id", &e).is_err());
        let spaced: Event = serde_json::from_str(r#"{"id":"a b"}"#).unwrap();
        assert!(fill("{id}", &spaced).is_err());
    }
}
