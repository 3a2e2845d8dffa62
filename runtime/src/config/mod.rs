//! `tessera.toml` → typed, validated [`Config`]; every error names file, line and key.

mod admin;
mod disk;
mod listener;
mod raw;
mod script_config;
mod site;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::Uri;
use http::HeaderName;

pub use admin::{AdminConfig, EventRule};
pub use listener::{ListenerConfig, SniCert, TlsConfig};
pub use script_config::ScriptConfig;
pub use units::parse_size;

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

/// What the proxy does when a site's `on_request` or `on_response` hook fails.
///
/// `cache_key` and `cache_policy` have no such choice: they always fail closed (the request
/// is passed to the origin uncached, or the response is not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuestErrorPolicy {
    /// Answer the request with 503 (the hook may have been an access check).
    #[default]
    Fail,
    /// Carry on as if the hook had made no changes.
    Fallback,
}

/// The error policy of each hook that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestErrorPolicies {
    /// When `on_request` fails.
    pub on_request: GuestErrorPolicy,
    /// When `on_response` fails.
    pub on_response: GuestErrorPolicy,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy listens on (cleartext HTTP/1.1 and h2c).
    pub listen: SocketAddr,
    /// More addresses, cleartext or TLS.
    pub listeners: Vec<ListenerConfig>,
    /// Name of this node, sent in `X-Served-By`, `Via` and `Cache-Status`.
    pub node_name: String,
    /// Cache-wide bounds.
    pub cache: CacheConfig,
    /// Connection handling and limits against hostile clients.
    pub server: ServerConfig,
    /// The script instance pool.
    pub scripts: ScriptsConfig,
    /// Where compiled components are kept between runs; `None` compiles at every start.
    pub compiled_dir: Option<PathBuf>,
    /// The admin listener (purge, events, metrics, status).
    pub admin: AdminConfig,
    /// How publish events map to purges.
    pub events: Vec<EventRule>,
    /// The fleet's purge stream, when nodes share purges.
    pub fleet: Option<FleetConfig>,
    /// Sites, matched by Host in order.
    pub sites: Vec<Site>,
}

/// `[fleet]`: the Redis stream through which purges reach every node. Its `Debug` hides
/// the URL's password.
#[derive(Clone, PartialEq)]
pub struct FleetConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`, `redis+unix://`).
    pub redis: String,
    /// The stream's key.
    pub stream: String,
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.redis.split_once('@') {
            Some((_, host)) => format!("redis://…@{host}"),
            None => self.redis.clone(),
        };
        f.debug_struct("FleetConfig")
            .field("redis", &shown)
            .field("stream", &self.stream)
            .finish()
    }
}

/// The stream's key when `[fleet] stream` is not given.
pub const DEFAULT_FLEET_STREAM: &str = "tessera:purges";

/// Bounds of the shared object cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Upper bound on stored bytes (bodies, heads, keys, tags, Vary data).
    pub max_bytes: u64,
    /// Objects larger than this are streamed through and not stored.
    pub max_object_bytes: u64,
    /// The disk tier, if any (memory only by default).
    pub disk: Option<crate::cache::disk::DiskConfig>,
}

/// How the listener treats connections.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client has to send a whole request head once it has started one.
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub keepalive_timeout: Duration,
    /// An upgraded connection (WebSocket) with no bytes either way is closed after this long.
    pub upgrade_idle_timeout: Duration,
    /// Most header fields in one request (431 beyond).
    pub max_headers: usize,
    /// Most bytes of one request head (431 beyond).
    pub max_header_bytes: usize,
    /// Largest request body forwarded to an origin (413 beyond).
    pub max_request_body: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// A request header set by a trusted upstream with the client's country (e.g. `cf-ipcountry`).
    pub client_country_header: Option<HeaderName>,
    /// A MaxMind DB giving the country of client addresses (when no header says it).
    pub geoip: Option<std::sync::Arc<crate::geoip::GeoIp>>,
    /// Networks of edges whose word on the client (address, country) this node takes,
    /// when it is their shield.
    pub trusted_edges: Vec<ipnetwork::IpNetwork>,
    /// Threads serving requests; `None`: one per core.
    pub workers: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            upgrade_idle_timeout: Duration::from_secs(300),
            max_headers: 100,
            max_header_bytes: 64 << 10,
            max_request_body: 64 << 20,
            drain_timeout: Duration::from_secs(30),
            h2_max_concurrent_streams: 256,
            client_country_header: None,
            geoip: None,
            trusted_edges: Vec::new(),
            workers: None,
        }
    }
}

/// The pool of script instances shared by all sites.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptsConfig {
    /// Instances that may be alive at once (a request holds one per script in its chain).
    pub instances: u32,
    /// Requests that may wait for an instance at once; beyond, 503 with `Retry-After`.
    pub max_queued: usize,
    /// Longest wait for an instance before 503 with `Retry-After`.
    pub queue_timeout: Duration,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            instances: 256,
            max_queued: 16_384,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Sandbox limits for one site's script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Time the site's scripts may run (their own running time, not queueing) per request.
    pub cpu: Duration,
    /// Linear memory cap per instance.
    pub memory_bytes: usize,
    /// Requests one instance may serve in turn (`instance_reuse`); 0: a fresh instance for
    /// every request, the default.
    pub reuse: u32,
    /// Bytes of memoised `cache-key` answers kept per script (`key_memo_kib`); 0: none, the
    /// default.
    pub key_memo_bytes: usize,
}

/// Caching behaviour a site can tune; defaults follow the standards.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicyConfig {
    /// Targeted cache-control fields honoured over `Cache-Control`, in order (RFC 9213).
    pub targets: Vec<String>,
    /// `stale-while-revalidate` applied when the origin sends none and gave a positive lifetime.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` applied when the origin sends none and gave a positive lifetime.
    pub stale_if_error: Duration,
    /// Background refresh once an entry has used this fraction of its TTL.
    pub refresh_ahead: Option<f64>,
    /// TTL per status for responses without freshness information.
    pub negative_ttl: BTreeMap<u16, Duration>,
    /// Store responses carrying `Set-Cookie` (the stored copy never keeps the cookie).
    pub allow_set_cookie: bool,
    /// Query parameters that the cache key leaves out are removed from the origin request.
    pub strip_unkeyed_params: bool,
    /// Add `key=` to `Cache-Status` (exposes the cache key to clients).
    pub debug: bool,
    /// Compress compressible responses the origin sent uncompressed (br or gzip, per client).
    pub compress: bool,
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
            strip_unkeyed_params: true,
            debug: false,
            compress: true,
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
    /// Name used in logs and metrics, and the namespace of its cache keys.
    pub name: String,
    /// Host names (without port) this site answers; `*` matches any.
    pub hosts: Vec<String>,
    /// Origin base URL (`http://host:port` or `https://host:port`).
    pub origin: Uri,
    /// CA certificates (PEM) an https origin is checked against instead of the system's.
    pub origin_ca: Option<PathBuf>,
    /// An origin in this process (`tessera test`'s sample pages) that takes the place of
    /// `origin`'s address; never from a configuration file.
    pub local_origin: Option<crate::origin::LocalOrigin>,
    /// Shield nodes misses go to before the origin (edge → shield → origin).
    pub shields: Vec<Uri>,
    /// Scripts to run, in chain order (each refines the previous one's key and decision).
    pub scripts: Vec<PathBuf>,
    /// Guest crates named by directory: built when the config is loaded (their builds are
    /// in `scripts`), and watched by `serve --watch` down to their sources.
    pub script_crates: Vec<PathBuf>,
    /// Sandbox limits.
    pub limits: Limits,
    /// What a failing `on_request` / `on_response` leads to.
    pub on_guest_error: GuestErrorPolicies,
    /// Time allowed to open an origin connection.
    pub connect_timeout: Duration,
    /// Time allowed for the origin's response head (and then for its body).
    pub response_timeout: Duration,
    /// Caching knobs.
    pub caching: CachePolicyConfig,
    /// ESI processing.
    pub esi: EsiConfig,
    /// Values the site's scripts read with `config::get`.
    pub script_config: ScriptConfig,
}

/// ESI assembly (W3C ESI 1.0) for one site.
#[derive(Debug, Clone, PartialEq)]
pub struct EsiConfig {
    /// Path prefixes whose responses are processed even without
    /// `Surrogate-Control: content="ESI/1.0"` from the origin.
    pub paths: Vec<String>,
    /// Hosts other than the page's own that fragments may come from; each must be served
    /// by a site of this config (fragments never go anywhere else).
    pub allow_hosts: Vec<String>,
    /// Deepest nesting of included pages that themselves include.
    pub max_depth: usize,
    /// Most `esi:include` fetches for one page, nested ones included.
    pub max_includes: usize,
    /// Time one fragment has to arrive whole.
    pub fragment_timeout: Duration,
}

impl Default for EsiConfig {
    fn default() -> Self {
        EsiConfig {
            paths: Vec::new(),
            allow_hosts: Vec::new(),
            max_depth: 5,
            max_includes: 256,
            fragment_timeout: Duration::from_secs(5),
        }
    }
}

impl Site {
    /// A site for the quick start: any host, one origin, optional script, defaults elsewhere.
    pub fn quick(origin: Uri, scripts: Vec<PathBuf>) -> Site {
        Site {
            name: "default".into(),
            hosts: vec!["*".into()],
            origin,
            origin_ca: None,
            local_origin: None,
            shields: Vec::new(),
            scripts,
            script_crates: Vec::new(),
            limits: Limits {
                cpu: Duration::from_millis(DEFAULT_CPU_MS),
                memory_bytes: (DEFAULT_MEMORY_MIB as usize) << 20,
                reuse: 0,
                key_memo_bytes: 0,
            },
            on_guest_error: GuestErrorPolicies::default(),
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_MS),
            response_timeout: Duration::from_millis(DEFAULT_RESPONSE_MS),
            caching: CachePolicyConfig::default(),
            esi: EsiConfig::default(),
            script_config: ScriptConfig::default(),
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
const DEFAULT_MEMORY_MIB: u64 = 64;
const DEFAULT_CONNECT_MS: u64 = 2_000;
const DEFAULT_RESPONSE_MS: u64 = 15_000;
/// Default bound on the whole cache.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Default bound on one object.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The largest memory cap a site may ask for; the pooling allocator reserves this per slot.
pub const MAX_GUEST_MEMORY: usize = 1 << 30;

impl Config {
    /// A config with one catch-all site, as `tessera serve --origin` builds it.
    pub fn quick(listen: SocketAddr, site: Site) -> Config {
        Config {
            listen,
            listeners: Vec::new(),
            node_name: default_node_name(),
            cache: CacheConfig {
                max_bytes: DEFAULT_CACHE_BYTES,
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
                disk: None,
            },
            server: ServerConfig::default(),
            scripts: ScriptsConfig::default(),
            compiled_dir: default_compiled_dir(),
            admin: AdminConfig::default(),
            fleet: None,
            events: Vec::new(),
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
        let e = units::Errors {
            file: path.to_owned(),
            text,
        };
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|err| e.parser(err.span(), err.message().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));

        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().expect("default listen address"),
            Some(l) => l.get_ref().parse().map_err(|_| {
                e.at(
                    Some(l.span()),
                    format!(
                        "key `listen`: `{}` is not an address like 127.0.0.1:8080",
                        l.get_ref()
                    ),
                )
            })?,
        };
        let node_name = match &raw.node_name {
            None => default_node_name(),
            Some(n) if valid_node_name(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                return Err(e.at(
                    Some(n.span()),
                    format!(
                        "key `node_name`: `{}` must be 1 to 64 of A-Z a-z 0-9 - _ . (it is sent in Cache-Status and Via)",
                        n.get_ref()
                    ),
                ))
            }
        };
        let cache = match &raw.cache {
            None => CacheConfig {
                max_bytes: DEFAULT_CACHE_BYTES,
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
                disk: None,
            },
            Some(c) => {
                let max_object_bytes = e.size(
                    &c.max_object_size,
                    "key `cache.max_object_size`",
                    DEFAULT_MAX_OBJECT_BYTES,
                )?;
                CacheConfig {
                    max_bytes: e.size(&c.max_size, "key `cache.max_size`", DEFAULT_CACHE_BYTES)?,
                    max_object_bytes,
                    disk: c
                        .disk
                        .as_ref()
                        .map(|d| disk::disk(d, max_object_bytes, base, &e))
                        .transpose()?,
                }
            }
        };
        let server = server(raw.server.as_ref(), base, &e)?;
        let scripts = scripts(raw.scripts.as_ref(), &e)?;
        if raw.site.is_empty() {
            return Err(e.at(None, "no `[[site]]` defined: add at least one".into()));
        }
        let mut sites: Vec<Site> = Vec::with_capacity(raw.site.len());
        for s in raw.site {
            let span = s.name.span();
            let site = site::site(s, base, &e)?;
            if sites.iter().any(|other| other.name == site.name) {
                return Err(e.at(
                    Some(span),
                    format!("key `name`: site \"{}\" is defined twice", site.name),
                ));
            }
            sites.push(site);
        }
        let compiled_dir = match raw.compiled_dir {
            Some(d) => Some(base.join(d.into_inner())),
            None => default_compiled_dir(),
        };
        let admin = admin::admin(raw.admin, base, &e)?;
        let events = admin::events(raw.event, &e)?;
        let fleet = match raw.fleet {
            None => None,
            Some(f) => {
                let url = f.redis.get_ref().clone();
                // The URL may hold a password: it is not repeated in the error.
                redis::Client::open(url.as_str()).map_err(|why| {
                    e.at(
                        Some(f.redis.span()),
                        format!("key `fleet.redis`: not a Redis URL: {why}"),
                    )
                })?;
                let stream = match f.stream {
                    None => DEFAULT_FLEET_STREAM.to_owned(),
                    Some(s) if !s.get_ref().is_empty() && s.get_ref().len() <= 200 => {
                        s.into_inner()
                    }
                    Some(s) => {
                        return Err(
                            e.at(Some(s.span()), "key `fleet.stream`: 1 to 200 bytes".into())
                        )
                    }
                };
                Some(FleetConfig { redis: url, stream })
            }
        };
        let listeners = listener::listeners(raw.listener, base, &e)?;
        Ok(Config {
            listen,
            listeners,
            node_name,
            cache,
            server,
            scripts,
            compiled_dir,
            admin,
            events,
            fleet,
            sites,
        })
    }
}

fn server(
    raw: Option<&raw::RawServer>,
    base: &Path,
    e: &units::Errors,
) -> Result<ServerConfig, ConfigError> {
    let d = ServerConfig::default();
    let Some(r) = raw else { return Ok(d) };
    let ms = |v, k: &str, default: Duration| {
        e.number(v, k, default.as_millis() as u64, 1..=86_400_000)
            .map(Duration::from_millis)
    };
    let country = match &r.client_country_header {
        None => None,
        Some(h) => Some(HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
            e.at(
                Some(h.span()),
                format!(
                    "key `server.client_country_header`: `{}` is not a header name",
                    h.get_ref()
                ),
            )
        })?),
    };
    Ok(ServerConfig {
        max_connections: e.number(
            &r.max_connections,
            "key `server.max_connections`",
            d.max_connections as u64,
            1..=1_000_000,
        )? as usize,
        header_read_timeout: ms(
            &r.header_read_timeout_ms,
            "key `server.header_read_timeout_ms`",
            d.header_read_timeout,
        )?,
        keepalive_timeout: ms(
            &r.keepalive_timeout_ms,
            "key `server.keepalive_timeout_ms`",
            d.keepalive_timeout,
        )?,
        upgrade_idle_timeout: ms(
            &r.upgrade_idle_timeout_ms,
            "key `server.upgrade_idle_timeout_ms`",
            d.upgrade_idle_timeout,
        )?,
        max_headers: e.number(
            &r.max_headers,
            "key `server.max_headers`",
            d.max_headers as u64,
            8..=10_000,
        )? as usize,
        max_header_bytes: {
            let v = e.size(
                &r.max_header_bytes,
                "key `server.max_header_bytes`",
                d.max_header_bytes as u64,
            )?;
            if !(8192..=(16 << 20)).contains(&v) {
                return Err(e.at(
                    r.max_header_bytes.as_ref().map(|s| s.span()),
                    "key `server.max_header_bytes`: must be between 8KiB and 16MiB".into(),
                ));
            }
            v as usize
        },
        max_request_body: e.size(
            &r.max_request_body,
            "key `server.max_request_body`",
            d.max_request_body,
        )?,
        drain_timeout: ms(
            &r.drain_timeout_ms,
            "key `server.drain_timeout_ms`",
            d.drain_timeout,
        )?,
        h2_max_concurrent_streams: e.number(
            &r.h2_max_concurrent_streams,
            "key `server.h2_max_concurrent_streams`",
            d.h2_max_concurrent_streams as u64,
            1..=10_000,
        )? as u32,
        client_country_header: country,
        geoip: match &r.geoip_db {
            None => None,
            Some(p) => Some(std::sync::Arc::new(
                crate::geoip::GeoIp::open(&base.join(p.get_ref()))
                    .map_err(|why| e.at(Some(p.span()), format!("key `server.geoip_db`: {why}")))?,
            )),
        },
        trusted_edges: match &r.trusted_edges {
            None => Vec::new(),
            Some(list) => list
                .get_ref()
                .iter()
                .map(|n| n.parse::<ipnetwork::IpNetwork>())
                .collect::<Result<_, _>>()
                .map_err(|why| {
                    e.at(
                        Some(list.span()),
                        format!("key `server.trusted_edges`: {why} (give addresses or networks such as 10.0.0.0/8)"),
                    )
                })?,
        },
        workers: match &r.workers {
            None => None,
            Some(_) => Some(e.number(&r.workers, "key `server.workers`", 1, 1..=1024)? as usize),
        },
    })
}

fn scripts(raw: Option<&raw::RawScripts>, e: &units::Errors) -> Result<ScriptsConfig, ConfigError> {
    let d = ScriptsConfig::default();
    let Some(r) = raw else { return Ok(d) };
    Ok(ScriptsConfig {
        instances: e.number(
            &r.instances,
            "key `scripts.instances`",
            d.instances as u64,
            1..=100_000,
        )? as u32,
        max_queued: e.number(
            &r.max_queued,
            "key `scripts.max_queued`",
            d.max_queued as u64,
            0..=10_000_000,
        )? as usize,
        queue_timeout: Duration::from_millis(e.number(
            &r.queue_timeout_ms,
            "key `scripts.queue_timeout_ms`",
            d.queue_timeout.as_millis() as u64,
            1..=600_000,
        )?),
    })
}

/// A node name fit for `Cache-Status` (an sf-token) and `Via` (a pseudonym).
fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && n.as_bytes()[0].is_ascii_alphabetic()
}

fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| valid_node_name(h))
        .unwrap_or_else(|| "tessera".into())
}

/// `$XDG_CACHE_HOME/tessera/compiled`, else `~/.cache/tessera/compiled`, else none: never a
/// shared temporary directory, where another local user could plant native code.
pub fn default_compiled_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|base| base.join("tessera").join("compiled"))
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
        assert_eq!(c.sites[0].on_guest_error, GuestErrorPolicies::default());
        assert_eq!(c.sites[0].on_guest_error.on_request, GuestErrorPolicy::Fail);
        assert!(c.sites[0].caching.strip_unkeyed_params);
        assert_eq!(c.server, ServerConfig::default());
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
    fn admin_and_event_errors_name_line_and_key() {
        let site = "[[site]]\nname = \"a\"\norigin = \"http://x\"\n";
        for (text, line, words) in [
            (
                "[admin]\nlisten = \"localhost\"\n",
                2,
                &["admin.listen", "localhost"][..],
            ),
            (
                "[admin]\ntoken_file = \"nope\"\n",
                2,
                &["admin.token_file", "not found"],
            ),
            ("[admin]\ntoken = \"x\"\n", 2, &["token"]),
            (
                "[[event]]\nevent = \"publish\"\n",
                2,
                &["event \"publish\"", "tags"],
            ),
            (
                "[[event]]\nevent = \"p\"\ntags = [\"entry-{id\"]\n",
                2,
                &["key `tags`", "unclosed"],
            ),
            (
                "[[event]]\nevent = \"p\"\nurls = [\"/a/{id}\"]\n",
                2,
                &["key `urls`", "absolute"],
            ),
            (
                "[[event]]\nevent = \"p\"\nprefixes = [\"http://x/{}\"]\n",
                2,
                &["key `prefixes`"],
            ),
            (
                "[[event]]\nevent = \"p\"\ntags = [\"t\"]\ntarget = 1\n",
                4,
                &["target"],
            ),
        ] {
            let e = parse(&format!("{text}{site}")).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            for w in words {
                assert!(e.message.contains(w), "{text}: {e} lacks {w}");
            }
        }
        let ok = parse(&format!(
            "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken_env = \"T\"\n\
             [[event]]\nevent = \"publish\"\ntype = \"entry\"\ntags = [\"entry-{{id}}\"]\nsoft = true\n{site}"
        ))
        .unwrap();
        assert_eq!(ok.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(ok.admin.token_env, "T");
        assert_eq!(ok.events[0].kind.as_deref(), Some("entry"));
        assert!(ok.events[0].soft);
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
    fn refresh_ahead_must_be_a_fraction() {
        let e = parse(
            "[[site]]\nname = \"a\"\norigin = \"http://x\"\n[site.caching]\nrefresh_ahead = 1.5\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn instance_reuse_is_off_unless_set_and_bounded() {
        let site = "[[site]]\nname = \"a\"\norigin = \"http://x\"\n[site.limits]\n";
        assert_eq!(parse(site).unwrap().sites[0].limits.reuse, 0);
        let on = parse(&format!("{site}instance_reuse = 1000\n")).unwrap();
        assert_eq!(on.sites[0].limits.reuse, 1000);
        for bad in ["-1", "1000001", "\"many\""] {
            let e = parse(&format!("{site}instance_reuse = {bad}\n")).unwrap_err();
            assert_eq!(e.line, Some(5), "{bad}: {e}");
            assert!(e.message.contains("instance_reuse"), "{bad}: {e}");
        }
    }

    #[test]
    fn key_memo_is_off_unless_set_and_bounded() {
        let site = "[[site]]\nname = \"a\"\norigin = \"http://x\"\n[site.limits]\n";
        assert_eq!(parse(site).unwrap().sites[0].limits.key_memo_bytes, 0);
        let on = parse(&format!("{site}key_memo_kib = 4096\n")).unwrap();
        assert_eq!(on.sites[0].limits.key_memo_bytes, 4 << 20);
        for bad in ["-1", "1048577", "\"4MiB\""] {
            let e = parse(&format!("{site}key_memo_kib = {bad}\n")).unwrap_err();
            assert_eq!(e.line, Some(5), "{bad}: {e}");
            assert!(e.message.contains("key_memo_kib"), "{bad}: {e}");
        }
    }

    #[test]
    fn guest_error_policy_is_per_hook_and_names_the_key_when_wrong() {
        let c = parse(
            "[[site]]\nname = \"a\"\norigin = \"http://x\"\non_guest_error = { on_request = \"fallback\" }\n",
        )
        .unwrap();
        assert_eq!(
            c.sites[0].on_guest_error.on_request,
            GuestErrorPolicy::Fallback
        );
        assert_eq!(
            c.sites[0].on_guest_error.on_response,
            GuestErrorPolicy::Fail
        );
        let c =
            parse("[[site]]\nname = \"a\"\norigin = \"http://x\"\non_guest_error = \"fallback\"\n")
                .unwrap();
        assert_eq!(
            c.sites[0].on_guest_error.on_response,
            GuestErrorPolicy::Fallback
        );
        let e = parse(
            "[[site]]\nname = \"a\"\norigin = \"http://x\"\non_guest_error = { cache_key = \"fallback\" }\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(
            e.message.contains("on_guest_error") && e.message.contains("cache_key"),
            "{e}"
        );
    }

    #[test]
    fn server_and_scripts_tables_are_validated_with_their_key() {
        let c = parse(
            "[server]\nmax_connections = 5\nclient_country_header = \"CF-IPCountry\"\nmax_request_body = \"1KiB\"\n[scripts]\ninstances = 8\n[[site]]\nname = \"a\"\norigin = \"http://x\"\n",
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 5);
        assert_eq!(c.server.max_request_body, 1024);
        assert_eq!(c.server.client_country_header.unwrap(), "cf-ipcountry");
        assert_eq!(c.scripts.instances, 8);
        let e = parse("[scripts]\ninstances = 0\n[[site]]\nname = \"a\"\norigin = \"http://x\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("scripts.instances"), "{e}");
        let e = parse(
            "[server]\nmax_header_bytes = 100\n[[site]]\nname = \"a\"\norigin = \"http://x\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("server.max_header_bytes"), "{e}");
    }

    #[test]
    fn node_and_site_names_must_be_tokens_and_sites_unique() {
        let e = parse("node_name = \"a b\"\n[[site]]\nname = \"a\"\norigin = \"http://x\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(1));
        let e = parse(
            "[[site]]\nname = \"a\"\norigin = \"http://x\"\n[[site]]\nname = \"a\"\norigin = \"http://y\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("twice"), "{e}");
    }
}
