//! The file as written: serde mirrors of `tessera.toml`, with spans for error messages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Spanned<String>>,
    pub node_name: Option<Spanned<String>>,
    pub compiled_dir: Option<Spanned<PathBuf>>,
    pub cache: Option<RawCache>,
    pub server: Option<RawServer>,
    pub scripts: Option<RawScripts>,
    pub admin: Option<RawAdmin>,
    pub fleet: Option<RawFleet>,
    #[serde(default)]
    pub event: Vec<RawEvent>,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub site: Vec<RawSite>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub redis: Spanned<String>,
    pub stream: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub token_env: Option<String>,
    pub token_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: Spanned<String>,
    pub certificate: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub sni: Vec<RawSni>,
    pub alt_svc: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSni {
    pub names: Spanned<Vec<String>>,
    pub certificate: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
    pub event: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub soft: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub max_size: Option<Spanned<Size>>,
    pub max_object_size: Option<Spanned<Size>>,
    pub disk: Option<Spanned<RawDisk>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub path: Spanned<PathBuf>,
    pub size: Option<Spanned<Size>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub max_connections: Option<Spanned<u64>>,
    pub header_read_timeout_ms: Option<Spanned<u64>>,
    pub keepalive_timeout_ms: Option<Spanned<u64>>,
    pub upgrade_idle_timeout_ms: Option<Spanned<u64>>,
    pub max_headers: Option<Spanned<u64>>,
    pub max_header_bytes: Option<Spanned<Size>>,
    pub max_request_body: Option<Spanned<Size>>,
    pub drain_timeout_ms: Option<Spanned<u64>>,
    pub h2_max_concurrent_streams: Option<Spanned<u64>>,
    pub client_country_header: Option<Spanned<String>>,
    pub geoip_db: Option<Spanned<PathBuf>>,
    pub trusted_edges: Option<Spanned<Vec<String>>>,
    pub workers: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScripts {
    pub instances: Option<Spanned<u64>>,
    pub max_queued: Option<Spanned<u64>>,
    pub queue_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub name: Spanned<String>,
    pub hosts: Option<Spanned<Vec<String>>>,
    pub origin: Spanned<String>,
    pub origin_ca: Option<Spanned<PathBuf>>,
    pub shields: Option<Spanned<Vec<String>>>,
    pub script: Option<Spanned<OneOrMany>>,
    pub on_guest_error: Option<Spanned<toml::Value>>,
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub response_timeout_ms: Option<Spanned<u64>>,
    pub limits: Option<RawLimits>,
    pub caching: Option<RawCaching>,
    pub esi: Option<RawEsi>,
    pub script_config: Option<
        Spanned<std::collections::BTreeMap<String, Spanned<super::script_config::RawValue>>>,
    >,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEsi {
    pub paths: Option<Vec<String>>,
    pub allow_hosts: Option<Vec<String>>,
    pub max_depth: Option<Spanned<u64>>,
    pub max_includes: Option<Spanned<u64>>,
    pub fragment_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub cpu_ms: Option<Spanned<u64>>,
    pub memory_mib: Option<Spanned<u64>>,
    pub instance_reuse: Option<Spanned<u64>>,
    pub key_memo_kib: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCaching {
    pub targets: Option<Spanned<Vec<String>>>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    pub refresh_ahead: Option<Spanned<f64>>,
    pub negative_ttl: Option<Spanned<BTreeMap<String, u64>>>,
    pub allow_set_cookie: Option<bool>,
    pub strip_unkeyed_params: Option<bool>,
    pub compress: Option<bool>,
    pub debug: Option<bool>,
}
