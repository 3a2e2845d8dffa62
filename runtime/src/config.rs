//! `tessera.toml` → typed, validated [`Config`]; every error names file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Scheme, Uri};
use serde::Deserialize;
use toml::Spanned;

/// A configuration error that points at the offending place in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// File the error is in.
    pub file: PathBuf,
    /// 1-based line, when the error has a place.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// What the proxy does when a site's script traps, times out or runs out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GuestErrorPolicy {
    /// Carry on with the host's defaults as if the hook were not implemented.
    #[default]
    Fallback,
    /// Answer the request with 503.
    Fail,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy listens on.
    pub listen: SocketAddr,
    /// Name of this node, sent in `X-Served-By`, `Via` and `Cache-Status`.
    pub node_name: String,
    /// Cache-wide bounds.
    pub cache: CacheConfig,
    /// Where compiled components are kept between runs.
    pub compiled_dir: PathBuf,
    /// Sites, matched by Host in order.
    pub sites: Vec<Site>,
}

/// Bounds of the shared object cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Upper bound on stored bytes (bodies plus heads).
    pub max_bytes: u64,
    /// Objects larger than this are streamed through and not stored.
    pub max_object_bytes: u64,
}

/// Sandbox limits for one site's script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Wall-clock budget for all hooks of one request.
    pub cpu: Duration,
    /// Linear memory cap per instance.
    pub memory_bytes: usize,
}

/// Caching behaviour a site can tune; defaults follow the standards.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicyConfig {
    /// Targeted cache-control fields honoured over `Cache-Control`, in order (RFC 9213).
    pub targets: Vec<String>,
    /// `stale-while-revalidate` applied when the origin sends none.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` applied when the origin sends none.
    pub stale_if_error: Duration,
    /// Background refresh once an entry has used this fraction of its TTL.
    pub refresh_ahead: Option<f64>,
    /// TTL per status for responses without freshness information.
    pub negative_ttl: BTreeMap<u16, Duration>,
    /// Store responses carrying `Set-Cookie` (off by default: they are usually personal).
    pub allow_set_cookie: bool,
    /// Add `key=` to `Cache-Status` (exposes the cache key to clients).
    pub debug: bool,
}

impl Default for CachePolicyConfig {
    fn default() -> Self {
        CachePolicyConfig {
            targets: vec!["cdn-cache-control".into(), "surrogate-control".into()],
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            refresh_ahead: None,
            negative_ttl: default_negative_ttl(),
            allow_set_cookie: false,
            debug: false,
        }
    }
}

/// Only heuristically cacheable statuses by default: a response without explicit freshness
/// may be reused only if its status is heuristically cacheable (RFC 9111 §3, §4.2.2), which
/// 5xx other than 501 are not. Operators may still list 5xx in `negative_ttl` to shield an
/// origin, as an explicit policy of their own.
fn default_negative_ttl() -> BTreeMap<u16, Duration> {
    let mut m = BTreeMap::new();
    m.insert(404, Duration::from_secs(60));
    m.insert(410, Duration::from_secs(60));
    m
}

/// One site: the hosts it answers, its origin and its script.
#[derive(Debug, Clone)]
pub struct Site {
    /// Name used in logs and metrics.
    pub name: String,
    /// Host names (without port) this site answers; `*` matches any.
    pub hosts: Vec<String>,
    /// Origin base URL (`http://host:port`).
    pub origin: Uri,
    /// Scripts to run, in chain order (each refines the previous one's key and decision).
    pub scripts: Vec<PathBuf>,
    /// Sandbox limits.
    pub limits: Limits,
    /// What a failing script leads to.
    pub on_guest_error: GuestErrorPolicy,
    /// Time allowed to open an origin connection.
    pub connect_timeout: Duration,
    /// Time allowed for the origin's response head (and then for its body).
    pub response_timeout: Duration,
    /// Caching knobs.
    pub caching: CachePolicyConfig,
}

impl Site {
    /// A site for the quick start: any host, one origin, optional script, defaults elsewhere.
    pub fn quick(origin: Uri, scripts: Vec<PathBuf>) -> Site {
        Site {
            name: "default".into(),
            hosts: vec!["*".into()],
            origin,
            scripts,
            limits: Limits {
                cpu: Duration::from_millis(DEFAULT_CPU_MS),
                memory_bytes: DEFAULT_MEMORY_MIB << 20,
            },
            on_guest_error: GuestErrorPolicy::Fallback,
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_MS),
            response_timeout: Duration::from_millis(DEFAULT_RESPONSE_MS),
            caching: CachePolicyConfig::default(),
        }
    }

    /// Whether this site answers requests for `host` (port already removed).
    pub fn matches(&self, host: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(host))
    }
}

const DEFAULT_CPU_MS: u64 = 50;
const DEFAULT_MEMORY_MIB: usize = 64;
const DEFAULT_CONNECT_MS: u64 = 2_000;
const DEFAULT_RESPONSE_MS: u64 = 15_000;
/// Default bound on the whole cache.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Default bound on one object.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Config {
    /// A config with one catch-all site, as `tessera serve --origin` builds it.
    pub fn quick(listen: SocketAddr, site: Site) -> Config {
        Config {
            listen,
            node_name: default_node_name(),
            cache: CacheConfig {
                max_bytes: DEFAULT_CACHE_BYTES,
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            },
            compiled_dir: default_compiled_dir(),
            sites: vec![site],
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            file: path.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            err(e.span(), msg)
        })?;
        let base = path.parent().unwrap_or(Path::new("."));

        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().expect("default listen address"),
            Some(l) => l.get_ref().parse().map_err(|_| {
                err(
                    Some(l.span()),
                    format!(
                        "key `listen`: `{}` is not an address like 127.0.0.1:8080",
                        l.get_ref()
                    ),
                )
            })?,
        };
        let cache = match raw.cache {
            None => CacheConfig {
                max_bytes: DEFAULT_CACHE_BYTES,
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            },
            Some(c) => CacheConfig {
                max_bytes: size(&c.max_size, "cache.max_size", DEFAULT_CACHE_BYTES, &err)?,
                max_object_bytes: size(
                    &c.max_object_size,
                    "cache.max_object_size",
                    DEFAULT_MAX_OBJECT_BYTES,
                    &err,
                )?,
            },
        };
        if raw.site.is_empty() {
            return Err(err(None, "no `[[site]]` defined: add at least one".into()));
        }
        let mut sites = Vec::with_capacity(raw.site.len());
        for s in raw.site {
            let name = s.name.clone();
            let key = |k: &str| format!("site \"{name}\" key `{k}`");
            let origin_text = s.origin.get_ref();
            let origin: Uri = origin_text.parse().map_err(|_| {
                err(
                    Some(s.origin.span()),
                    format!("{}: `{origin_text}` is not a URL", key("origin")),
                )
            })?;
            if origin.scheme() != Some(&Scheme::HTTP) || origin.host().is_none() {
                return Err(err(
                    Some(s.origin.span()),
                    format!("{}: `{origin_text}` must be an http:// URL with a host (https origins are not supported yet)", key("origin")),
                ));
            }
            let mut scripts = Vec::new();
            if let Some(p) = &s.script {
                let paths: Vec<&PathBuf> = match p.get_ref() {
                    OneOrMany::One(one) => vec![one],
                    OneOrMany::Many(many) => many.iter().collect(),
                };
                for path in paths {
                    let full = base.join(path);
                    if !full.is_file() {
                        return Err(err(
                            Some(p.span()),
                            format!("{}: file {} not found", key("script"), full.display()),
                        ));
                    }
                    scripts.push(full);
                }
            }
            let hosts = match s.hosts {
                Some(h) if h.get_ref().is_empty() => {
                    return Err(err(
                        Some(h.span()),
                        format!("{}: list is empty", key("hosts")),
                    ))
                }
                Some(h) => h
                    .into_inner()
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                None => vec!["*".into()],
            };
            let positive = |v: &Option<Spanned<u64>>, k: &str, default: u64| match v {
                None => Ok(default),
                Some(v) if *v.get_ref() == 0 => {
                    Err(err(Some(v.span()), format!("{}: must be above 0", key(k))))
                }
                Some(v) => Ok(*v.get_ref()),
            };
            let limits = s.limits.unwrap_or_default();
            let limits = Limits {
                cpu: Duration::from_millis(positive(
                    &limits.cpu_ms,
                    "limits.cpu_ms",
                    DEFAULT_CPU_MS,
                )?),
                memory_bytes: (positive(
                    &limits.memory_mib,
                    "limits.memory_mib",
                    DEFAULT_MEMORY_MIB as u64,
                )? as usize)
                    << 20,
            };
            if limits.memory_bytes > MAX_GUEST_MEMORY {
                return Err(err(
                    None,
                    format!(
                        "{}: at most {} MiB",
                        key("limits.memory_mib"),
                        MAX_GUEST_MEMORY >> 20
                    ),
                ));
            }
            let connect_timeout = Duration::from_millis(positive(
                &s.connect_timeout_ms,
                "connect_timeout_ms",
                DEFAULT_CONNECT_MS,
            )?);
            let response_timeout = Duration::from_millis(positive(
                &s.response_timeout_ms,
                "response_timeout_ms",
                DEFAULT_RESPONSE_MS,
            )?);
            let caching = caching(s.caching, &key, &err)?;
            sites.push(Site {
                name: s.name,
                hosts,
                origin,
                scripts,
                limits,
                on_guest_error: s.on_guest_error.unwrap_or_default(),
                connect_timeout,
                response_timeout,
                caching,
            });
        }
        let compiled_dir = raw
            .compiled_dir
            .map(|d| base.join(d))
            .unwrap_or_else(default_compiled_dir);
        Ok(Config {
            listen,
            node_name: raw.node_name.unwrap_or_else(default_node_name),
            cache,
            compiled_dir,
            sites,
        })
    }
}

/// The largest memory cap a site may ask for; the pooling allocator reserves this per slot.
pub const MAX_GUEST_MEMORY: usize = 1 << 30;

type ErrFn<'a> = dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError + 'a;

fn caching(
    raw: Option<RawCaching>,
    key: &dyn Fn(&str) -> String,
    err: &ErrFn,
) -> Result<CachePolicyConfig, ConfigError> {
    let mut c = CachePolicyConfig::default();
    let Some(raw) = raw else { return Ok(c) };
    if let Some(t) = raw.targets {
        for name in t.get_ref() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(err(
                    Some(t.span()),
                    format!("{}: `{name}` is not a header name", key("caching.targets")),
                ));
            }
        }
        c.targets = t
            .into_inner()
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
    }
    if let Some(s) = raw.stale_while_revalidate {
        c.stale_while_revalidate = Duration::from_secs(s);
    }
    if let Some(s) = raw.stale_if_error {
        c.stale_if_error = Duration::from_secs(s);
    }
    if let Some(f) = raw.refresh_ahead {
        let v = *f.get_ref();
        if !(v > 0.0 && v < 1.0) {
            return Err(err(
                Some(f.span()),
                format!(
                    "{}: must be between 0 and 1 (e.g. 0.9)",
                    key("caching.refresh_ahead")
                ),
            ));
        }
        c.refresh_ahead = Some(v);
    }
    if let Some(n) = raw.negative_ttl {
        let mut m = BTreeMap::new();
        for (status, secs) in n.get_ref() {
            let code: u16 = status
                .parse()
                .ok()
                .filter(|c| (400..600).contains(c))
                .ok_or_else(|| {
                    err(
                        Some(n.span()),
                        format!(
                            "{}: `{status}` is not a 4xx or 5xx status",
                            key("caching.negative_ttl")
                        ),
                    )
                })?;
            m.insert(code, Duration::from_secs(*secs));
        }
        c.negative_ttl = m;
    }
    c.allow_set_cookie = raw.allow_set_cookie.unwrap_or(false);
    c.debug = raw.debug.unwrap_or(false);
    Ok(c)
}

fn size(v: &Option<Spanned<Size>>, k: &str, default: u64, err: &ErrFn) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let bytes = match v.get_ref() {
        Size::Bytes(b) => Some(*b),
        Size::Text(t) => parse_size(t),
    };
    match bytes {
        Some(b) if b > 0 => Ok(b),
        _ => Err(err(
            Some(v.span()),
            format!("key `{k}`: expected a size such as 268435456, \"256MiB\" or \"1GiB\""),
        )),
    }
}

/// Parses sizes such as `512`, `64KiB`, `256 MiB`, `1GiB` (also KB/MB/GB as binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tessera".into())
}

/// `$XDG_CACHE_HOME/tessera/compiled`, else `~/.cache/tessera/compiled`, else the temp dir.
pub fn default_compiled_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tessera").join("compiled")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    node_name: Option<String>,
    compiled_dir: Option<PathBuf>,
    cache: Option<RawCache>,
    #[serde(default)]
    site: Vec<RawSite>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_size: Option<Spanned<Size>>,
    max_object_size: Option<Spanned<Size>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    hosts: Option<Spanned<Vec<String>>>,
    origin: Spanned<String>,
    script: Option<Spanned<OneOrMany>>,
    on_guest_error: Option<GuestErrorPolicy>,
    connect_timeout_ms: Option<Spanned<u64>>,
    response_timeout_ms: Option<Spanned<u64>>,
    limits: Option<RawLimits>,
    caching: Option<RawCaching>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpu_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaching {
    targets: Option<Spanned<Vec<String>>>,
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
    refresh_ahead: Option<Spanned<f64>>,
    negative_ttl: Option<Spanned<BTreeMap<String, u64>>>,
    allow_set_cookie: Option<bool>,
    debug: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("tessera.toml"), text)
    }

    #[test]
    fn minimal_site_gets_defaults() {
        let c = parse("[[site]]\nname = \"a\"\norigin = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.sites[0].hosts, vec!["*"]);
        assert_eq!(
            c.sites[0].caching.negative_ttl[&404],
            Duration::from_secs(60)
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse(
            "listen = \"127.0.0.1:1\"\n[[site]]\nname = \"a\"\norigin = \"http://x\"\ncolour = 1\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().starts_with("tessera.toml:5:"), "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn bad_origin_names_site_and_key() {
        let e = parse("[[site]]\nname = \"shop\"\norigin = \"ftp://x\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("site \"shop\" key `origin`"), "{e}");
    }

    #[test]
    fn missing_script_file_is_reported() {
        let e = parse("[[site]]\nname = \"shop\"\norigin = \"http://x\"\nscript = \"nope.wasm\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(
            e.message.contains("key `script`") && e.message.contains("not found"),
            "{e}"
        );
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn refresh_ahead_must_be_a_fraction() {
        let e = parse(
            "[[site]]\nname = \"a\"\norigin = \"http://x\"\n[site.caching]\nrefresh_ahead = 1.5\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5));
    }
}
