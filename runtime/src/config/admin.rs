//! `[admin]` and `[[event]]`: the admin listener, its token, and how publish events map to
//! purges (templates checked here, filled per event by the admin API).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::{RawAdmin, RawEvent};
use super::units::Errors;
use super::ConfigError;

/// The admin API: its address and where its bearer token comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Address to listen on; `None`: no admin API.
    pub listen: Option<SocketAddr>,
    /// Environment variable holding the token.
    pub token_env: String,
    /// File holding the token (first line), read at start; wins over the variable.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token_env: "TESSERA_ADMIN_TOKEN".into(),
            token_file: None,
        }
    }
}

/// A publish event (from a CMS webhook) mapped to what it purges. `{field}` in a template is
/// replaced by that field of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRule {
    /// The `event` value it answers, e.g. `publish`.
    pub event: String,
    /// The `type` value it answers, if it names one.
    pub kind: Option<String>,
    /// Tags to purge.
    pub tags: Vec<String>,
    /// URLs to purge (every variant).
    pub urls: Vec<String>,
    /// URL prefixes to purge.
    pub prefixes: Vec<String>,
    /// Mark stale instead of removing.
    pub soft: bool,
}

pub(super) fn admin(
    raw: Option<RawAdmin>,
    base: &Path,
    e: &Errors,
) -> Result<AdminConfig, ConfigError> {
    let mut a = AdminConfig::default();
    let Some(r) = raw else { return Ok(a) };
    if let Some(l) = r.listen {
        a.listen = Some(l.get_ref().parse().map_err(|_| {
            e.at(
                Some(l.span()),
                format!(
                    "key `admin.listen`: `{}` is not an address like 127.0.0.1:9090",
                    l.get_ref()
                ),
            )
        })?);
    }
    if let Some(v) = r.token_env {
        a.token_env = v;
    }
    if let Some(f) = r.token_file {
        let path = base.join(f.get_ref());
        if !path.is_file() {
            return Err(e.at(
                Some(f.span()),
                format!("key `admin.token_file`: file {} not found", path.display()),
            ));
        }
        a.token_file = Some(path);
    }
    Ok(a)
}

/// The `[[event]]` rules, each with at least one target and well-formed templates.
pub(super) fn events(raw: Vec<RawEvent>, e: &Errors) -> Result<Vec<EventRule>, ConfigError> {
    raw.into_iter()
        .map(|r| {
            let name = r.event.get_ref().clone();
            let at = |message: String| {
                e.at(Some(r.event.span()), format!("event \"{name}\": {message}"))
            };
            if r.tags.is_empty() && r.urls.is_empty() && r.prefixes.is_empty() {
                return Err(at("give `tags`, `urls` or `prefixes` to purge".into()));
            }
            for (key, templates) in [
                ("tags", &r.tags),
                ("urls", &r.urls),
                ("prefixes", &r.prefixes),
            ] {
                for t in templates {
                    template(t).map_err(|why| at(format!("key `{key}`: `{t}` {why}")))?;
                    if key != "tags" && !(t.starts_with("http://") || t.starts_with("https://")) {
                        return Err(at(format!(
                            "key `{key}`: `{t}` must be an absolute http:// or https:// URL"
                        )));
                    }
                }
            }
            Ok(EventRule {
                event: name,
                kind: r.kind,
                tags: r.tags,
                urls: r.urls,
                prefixes: r.prefixes,
                soft: r.soft,
            })
        })
        .collect()
}

/// Checks that every `{` opens a placeholder naming a field (letters, digits, `_`, `-`).
fn template(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("is empty".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("has a `}` that closes nothing".into());
        }
        let close = rest[open..].find('}').ok_or("has an unclosed `{`")?;
        let field = &rest[open + 1..open + close];
        if field.is_empty()
            || !field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "has a placeholder `{{{field}}}` that is not a field name"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn templates_must_name_fields() {
        assert!(template("entry-{id}").is_ok());
        assert!(template("{content_type}-{locale}").is_ok());
        assert!(template("plain").is_ok());
        for bad in ["", "x-{id", "x-}", "x-{}", "x-{a b}", "{{id}}"] {
            assert!(template(bad).is_err(), "{bad}");
        }
    }
}
