//! A `tessera test` file: the site's config, its sample pages, and the steps a visitor takes
//! with what they must see. Errors name the file, line and key, as the config's do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// One test file, checked.
#[derive(Debug)]
pub struct Spec {
    /// The file.
    pub file: PathBuf,
    /// The site's `tessera.toml`.
    pub config: PathBuf,
    /// `site = "name"`: only that `[[site]]` of the config is tested (with the line of
    /// the key, for an error once the config is read).
    pub site: Option<(String, usize)>,
    /// The folder of sample pages the origin serves.
    pub pages: PathBuf,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// Answers that differ from the pages for some requests.
    pub variations: Vec<Variation>,
}

/// One step.
#[derive(Debug)]
pub enum Step {
    /// A request and what its answer must be.
    Request(Box<RequestStep>),
    /// The virtual clock moves forward.
    Advance(Duration),
    /// A purge, as the admin API takes it, and how many stored responses it must reach.
    Purge {
        /// What it purges.
        request: crate::admin::purge::PurgeRequest,
        /// Responses it must reach, when given.
        purged: Option<usize>,
        /// Its line.
        line: usize,
    },
}

/// A request step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestStep {
    /// `"GET /path?query"` or just `"/path"`.
    pub request: String,
    /// The Host (default: the first name of the first site, else `localhost`).
    pub host: Option<String>,
    /// Request header fields.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Cookies, sent as one `Cookie` field.
    #[serde(default)]
    pub cookies: BTreeMap<String, String>,
    /// The client's country (two letters), as a trusted upstream would tell it.
    pub country: Option<String>,
    /// The client's device: a typical User-Agent of `mobile`, `tablet`, `desktop` or `bot`.
    pub device: Option<String>,
    /// What the answer must be.
    #[serde(default)]
    pub expect: Expect,
    /// The line of the step in its file (filled in after parsing).
    #[serde(skip)]
    pub line: usize,
}

/// Expectations on one answer; every one given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Status code.
    pub status: Option<u16>,
    /// Header fields with their exact value (all lines joined by `, `); `""` to say absent.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Served from the cache (`Cache-Status` has `hit`) or not.
    pub hit: Option<bool>,
    /// `Cache-Status` `fwd=` value (`uri-miss`, `vary-miss`, `stale`, `bypass`, …).
    pub fwd: Option<String>,
    /// Whether this response was stored (`Cache-Status` `stored`).
    pub stored: Option<bool>,
    /// Seconds of freshness left (`Cache-Status` `ttl`; negative once stale): exact, on
    /// the virtual clock.
    pub ttl: Option<i64>,
    /// The body, exactly.
    pub body: Option<String>,
    /// A file (relative to the test file) the body must equal; written by
    /// `--update-snapshots`.
    pub body_snapshot: Option<PathBuf>,
    /// Texts the body contains.
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// Texts the body must not contain.
    #[serde(default)]
    pub body_not_contains: Vec<String>,
    /// Checks on the HTML by CSS selector.
    #[serde(default)]
    pub select: Vec<Select>,
    /// Requests the origin has seen so far, in total.
    pub origin_requests: Option<u64>,
    /// Requests the origin has seen so far, per path (path and query as sent).
    #[serde(default)]
    pub origin_requests_for: BTreeMap<String, u64>,
}

/// How the sample origin answers some requests for one path instead of with its page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    /// The path (without query).
    pub path: String,
    /// Which of the origin's requests for the path (1 = the first); none: all of them.
    #[serde(default)]
    pub requests: Vec<u64>,
    /// The status to answer with (the page's body and fields stay).
    pub status: Option<u16>,
    /// Real time to wait before answering (`"2s"`), e.g. to meet a timeout.
    pub delay: Option<String>,
    /// Fields to add or replace.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A check on the elements a CSS selector matches (lol_html's selector syntax).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The selector, e.g. `"h1.greeting"`, `"ul > li"`, `"a[href^='/cart']"`.
    pub css: String,
    /// How many elements match.
    pub count: Option<usize>,
    /// The first match's text (whitespace at the ends trimmed), exactly.
    pub text: Option<String>,
    /// Text the first match's text contains.
    pub contains: Option<String>,
    /// An attribute of the first match, compared with `equals` (`""`: absent).
    pub attr: Option<String>,
    /// The attribute's value.
    pub equals: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    config: Spanned<PathBuf>,
    site: Option<Spanned<String>>,
    pages: Option<Spanned<PathBuf>>,
    #[serde(default)]
    step: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    page: Vec<Spanned<Variation>>,
}

/// A test file that cannot be run: file, line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SpecError {
    /// The test file.
    pub file: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `"130s"`, `"2m"`, `"1h"`, `"30d"`, `"1500ms"`.
pub fn duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = t[..split].parse().ok()?;
    let unit = match &t[split..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit).map(Duration::from_millis)
}

impl Spec {
    /// Reads and checks the test file at `file`.
    pub fn load(file: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|e| SpecError {
            file: file.to_owned(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        Spec::parse(file, &text)
    }

    /// Checks a test file's text.
    pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| SpecError {
            file: file.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawSpec =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().to_owned()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let config = base.join(raw.config.get_ref());
        if !config.is_file() {
            return Err(err(
                Some(raw.config.span()),
                format!("key `config`: {} not found", config.display()),
            ));
        }
        let pages = match &raw.pages {
            Some(p) => (base.join(p.get_ref()), Some(p.span())),
            None => (base.join("pages"), None),
        };
        if !pages.0.is_dir() {
            return Err(err(
                pages.1,
                format!("key `pages`: folder {} not found", pages.0.display()),
            ));
        }
        let mut steps = Vec::with_capacity(raw.step.len());
        for (i, s) in raw.step.into_iter().enumerate() {
            let span = s.span();
            let key = format!("step {} (the {} [[step]])", i + 1, ordinal(i + 1));
            let table = s.into_inner();
            let kinds = ["request", "advance", "purge"]
                .into_iter()
                .filter(|k| table.contains_key(*k))
                .collect::<Vec<_>>();
            match kinds.as_slice() {
                ["advance"] => {
                    if table.len() > 1 {
                        return Err(err(
                            Some(span),
                            format!("{key}: an `advance` step has nothing else"),
                        ));
                    }
                    let d = table["advance"].as_str().and_then(duration).ok_or_else(|| {
                        err(
                            Some(span.clone()),
                            format!("{key} key `advance`: expected a time such as \"130s\", \"2m\", \"30d\""),
                        )
                    })?;
                    steps.push(Step::Advance(d));
                }
                ["purge"] => {
                    let mut table = table;
                    let purged = match table.remove("purged") {
                        None => None,
                        Some(v) => Some(
                            v.as_integer()
                                .and_then(|n| usize::try_from(n).ok())
                                .ok_or_else(|| {
                                    err(
                                        Some(span.clone()),
                                        format!("{key} key `purged`: expected a count"),
                                    )
                                })?,
                        ),
                    };
                    if let Some(other) = table.keys().find(|k| *k != "purge") {
                        return Err(err(
                            Some(span),
                            format!("{key}: unknown key `{other}` in a purge step"),
                        ));
                    }
                    let request =
                        table["purge"]
                            .clone()
                            .try_into()
                            .map_err(|e: toml::de::Error| {
                                err(
                                    Some(span.clone()),
                                    format!("{key} key `purge`: {}", e.message()),
                                )
                            })?;
                    steps.push(Step::Purge {
                        request,
                        purged,
                        line: line_of(text, span.start),
                    });
                }
                ["request"] => {
                    let mut r: RequestStep =
                        toml::Value::Table(table)
                            .try_into()
                            .map_err(|e: toml::de::Error| {
                                err(Some(span.clone()), format!("{key}: {}", e.message()))
                            })?;
                    r.line = line_of(text, span.start);
                    request_line(&r.request).map_err(|why| {
                        err(Some(span.clone()), format!("{key} key `request`: {why}"))
                    })?;
                    if r.country.as_deref().is_some_and(|c| {
                        c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic())
                    }) {
                        return Err(err(
                            Some(span),
                            format!("{key} key `country`: two letters, such as \"FR\""),
                        ));
                    }
                    if r.device
                        .as_deref()
                        .is_some_and(|d| device_agent(d).is_none())
                    {
                        return Err(err(
                            Some(span),
                            format!("{key} key `device`: one of mobile, tablet, desktop, bot"),
                        ));
                    }
                    if r.device.is_some()
                        && r.headers
                            .keys()
                            .any(|h| h.eq_ignore_ascii_case("user-agent"))
                    {
                        return Err(err(
                            Some(span),
                            format!(
                                "{key}: `device` and a `user-agent` header both set the User-Agent"
                            ),
                        ));
                    }
                    steps.push(Step::Request(Box::new(r)));
                }
                _ => {
                    return Err(err(
                        Some(span),
                        format!("{key}: needs one of `request`, `advance` or `purge`"),
                    ))
                }
            }
        }
        let mut variations = Vec::with_capacity(raw.page.len());
        for (i, v) in raw.page.into_iter().enumerate() {
            let span = v.span();
            let v = v.into_inner();
            let key = format!("page {} (the {} [[page]])", i + 1, ordinal(i + 1));
            if !v.path.starts_with('/') {
                return Err(err(
                    Some(span),
                    format!("{key} key `path`: must start with `/`"),
                ));
            }
            if v.status
                .is_some_and(|s| http::StatusCode::from_u16(s).is_err())
            {
                return Err(err(
                    Some(span),
                    format!("{key} key `status`: not a status code"),
                ));
            }
            if v.delay
                .as_deref()
                .is_some_and(|d| duration(d).is_none_or(|d| d > Duration::from_secs(60)))
            {
                return Err(err(
                    Some(span),
                    format!("{key} key `delay`: expected a time up to 60 s, such as \"2s\""),
                ));
            }
            for (n, val) in &v.headers {
                if http::HeaderName::from_bytes(n.as_bytes()).is_err()
                    || http::HeaderValue::from_str(val).is_err()
                {
                    return Err(err(
                        Some(span),
                        format!("{key} key `headers`: `{n}` is not a valid field"),
                    ));
                }
            }
            variations.push(v);
        }
        if steps.is_empty() {
            return Err(err(None, "no `[[step]]`: add at least one".into()));
        }
        Ok(Spec {
            file: file.to_owned(),
            config,
            site: raw
                .site
                .map(|s| (s.get_ref().clone(), line_of(text, s.span().start))),
            pages: pages.0,
            steps,
            variations,
        })
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A typical User-Agent of a device class (the host classifies it back the same way).
pub fn device_agent(device: &str) -> Option<&'static str> {
    Some(match device {
        "mobile" => "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
        "tablet" => "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Mobile/15E148",
        "desktop" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
        "bot" => "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        _ => return None,
    })
}

/// The method and target of `"GET /path"` or `"/path"`.
pub fn request_line(text: &str) -> Result<(http::Method, String), String> {
    let mut parts = text.split_whitespace();
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(t), None, None) => ("GET", t),
        (Some(m), Some(t), None) => (m, t),
        _ => return Err(format!("expected \"GET /path\" or \"/path\", got {text:?}")),
    };
    if !target.starts_with('/') {
        return Err(format!("the target must start with `/`, got {target:?}"));
    }
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("not a method: {method:?}"))?;
    target
        .parse::<http::Uri>()
        .map_err(|e| format!("{target:?}: {e}"))?;
    Ok((method, target.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_docs_say() {
        assert_eq!(duration("130s"), Some(Duration::from_secs(130)));
        assert_eq!(duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(duration("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(duration("1500ms"), Some(Duration::from_millis(1500)));
        for bad in ["", "s", "10", "-5s", "5 weeks", "99999999999999999999d"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_lines_are_checked() {
        assert_eq!(request_line("/a?b=1").unwrap().1, "/a?b=1");
        assert_eq!(request_line("POST /cart").unwrap().0, http::Method::POST);
        assert!(request_line("GET a").is_err());
        assert!(request_line("GET /a HTTP/1.1").is_err());
    }
}
