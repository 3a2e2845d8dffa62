//! One `[[site]]` table → a validated [`Site`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::uri::{Scheme, Uri};

use super::raw::{OneOrMany, RawCaching, RawEsi, RawSite};
use super::units::Errors;
use super::{
    CachePolicyConfig, ConfigError, EsiConfig, GuestErrorPolicies, GuestErrorPolicy, Limits, Site,
    DEFAULT_CONNECT_MS, DEFAULT_CPU_MS, DEFAULT_MEMORY_MIB, DEFAULT_RESPONSE_MS, MAX_GUEST_MEMORY,
};

pub(super) fn site(s: RawSite, base: &Path, e: &Errors) -> Result<Site, ConfigError> {
    let name = s.name.get_ref().clone();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(e.at(
            Some(s.name.span()),
            format!("key `name`: `{name}` must be 1 to 64 of A-Z a-z 0-9 - _ ."),
        ));
    }
    let key = |k: &str| format!("site \"{name}\" key `{k}`");
    let origin_text = s.origin.get_ref();
    let origin: Uri = origin_text.parse().map_err(|_| {
        e.at(
            Some(s.origin.span()),
            format!("{}: `{origin_text}` is not a URL", key("origin")),
        )
    })?;
    let https = origin.scheme() == Some(&Scheme::HTTPS);
    if !(https || origin.scheme() == Some(&Scheme::HTTP)) || origin.host().is_none() {
        return Err(e.at(
            Some(s.origin.span()),
            format!(
                "{}: `{origin_text}` must be an http:// or https:// URL with a host",
                key("origin")
            ),
        ));
    }
    let origin_ca = match &s.origin_ca {
        None => None,
        Some(_) if !https => {
            return Err(e.at(
                s.origin_ca.as_ref().map(|c| c.span()),
                format!(
                    "{}: only an https:// origin has certificates to check",
                    key("origin_ca")
                ),
            ))
        }
        Some(ca) => {
            let path = base.join(ca.get_ref());
            crate::tls::client::read_ca_file(&path)
                .map_err(|why| e.at(Some(ca.span()), format!("{}: {why}", key("origin_ca"))))?;
            Some(path)
        }
    };
    let shields = shields(s.shields.as_ref(), &key, e)?;
    let mut scripts = Vec::new();
    let mut script_crates = Vec::new();
    if let Some(p) = &s.script {
        let paths: Vec<&std::path::PathBuf> = match p.get_ref() {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many.iter().collect(),
        };
        for path in paths {
            let full = base.join(path);
            if full.join("Cargo.toml").is_file() {
                // A guest crate: built now, so that `check`, a start and a reload all run
                // what its sources say (cargo rebuilds only what changed).
                let wasm = crate::builder::build_guest(&full, None, None).map_err(|why| {
                    e.at(
                        Some(p.span()),
                        format!("{}: crate {}: {why:#}", key("script"), full.display()),
                    )
                })?;
                scripts.push(wasm);
                script_crates.push(full);
                continue;
            }
            if full.is_dir() {
                return Err(e.at(
                    Some(p.span()),
                    format!(
                        "{}: {} is a directory without Cargo.toml (name a .wasm file or a guest crate)",
                        key("script"),
                        full.display()
                    ),
                ));
            }
            if !full.is_file() {
                return Err(e.at(
                    Some(p.span()),
                    format!("{}: file {} not found", key("script"), full.display()),
                ));
            }
            scripts.push(full);
        }
    }
    let hosts = match s.hosts {
        Some(h) if h.get_ref().is_empty() => {
            return Err(e.at(Some(h.span()), format!("{}: list is empty", key("hosts"))))
        }
        Some(h) => h
            .into_inner()
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        None => vec!["*".into()],
    };
    let limits = s.limits.unwrap_or_default();
    let cpu_ms = e.number(
        &limits.cpu_ms,
        &key("limits.cpu_ms"),
        DEFAULT_CPU_MS,
        1..=60_000,
    )?;
    let memory_mib = e.number(
        &limits.memory_mib,
        &key("limits.memory_mib"),
        DEFAULT_MEMORY_MIB,
        1..=(MAX_GUEST_MEMORY >> 20) as u64,
    )?;
    let reuse = e.number(
        &limits.instance_reuse,
        &key("limits.instance_reuse"),
        0,
        0..=1_000_000,
    )?;
    let key_memo_kib = e.number(
        &limits.key_memo_kib,
        &key("limits.key_memo_kib"),
        0,
        0..=1 << 20,
    )?;
    let limits = Limits {
        cpu: Duration::from_millis(cpu_ms),
        memory_bytes: (memory_mib as usize) << 20,
        reuse: reuse as u32,
        key_memo_bytes: (key_memo_kib as usize) << 10,
    };
    let ms = |v, k: &str, default| {
        e.number(v, &key(k), default, 1..=3_600_000)
            .map(Duration::from_millis)
    };
    let connect_timeout = ms(
        &s.connect_timeout_ms,
        "connect_timeout_ms",
        DEFAULT_CONNECT_MS,
    )?;
    let response_timeout = ms(
        &s.response_timeout_ms,
        "response_timeout_ms",
        DEFAULT_RESPONSE_MS,
    )?;
    let on_guest_error = match &s.on_guest_error {
        None => GuestErrorPolicies::default(),
        Some(v) => guest_error_policies(v, &key("on_guest_error"), e)?,
    };
    let caching = caching(s.caching, &key, e)?;
    let esi = esi(s.esi.unwrap_or_default(), &key, e)?;
    let script_config = super::script_config::script_config(s.script_config, base, &key, e)?;
    Ok(Site {
        script_config,
        esi,
        name,
        hosts,
        origin,
        origin_ca,
        local_origin: None,
        shields,
        scripts,
        script_crates,
        limits,
        on_guest_error,
        connect_timeout,
        response_timeout,
        caching,
    })
}

/// Most shields one site may name.
pub const MAX_SHIELDS: usize = 16;

fn shields(
    raw: Option<&toml::Spanned<Vec<String>>>,
    key: &dyn Fn(&str) -> String,
    e: &Errors,
) -> Result<Vec<Uri>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let at = Some(raw.span());
    let list = raw.get_ref();
    if list.len() > MAX_SHIELDS {
        return Err(e.at(at, format!("{}: at most {MAX_SHIELDS}", key("shields"))));
    }
    let mut out: Vec<Uri> = Vec::new();
    for text in list {
        let uri: Option<Uri> = text.parse().ok();
        let uri = uri
            .filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str() == "/")
            })
            .ok_or_else(|| {
                e.at(
                    at.clone(),
                    format!(
                        "{}: `{text}` must be an http:// or https:// URL with a host and no path",
                        key("shields")
                    ),
                )
            })?;
        if out.contains(&uri) {
            return Err(e.at(at, format!("{}: `{text}` is listed twice", key("shields"))));
        }
        out.push(uri);
    }
    Ok(out)
}

fn esi(raw: RawEsi, key: &dyn Fn(&str) -> String, e: &Errors) -> Result<EsiConfig, ConfigError> {
    let d = EsiConfig::default();
    let paths = raw.paths.unwrap_or_default();
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(e.at(
            None,
            format!("{}: `{p}` must start with /", key("esi.paths")),
        ));
    }
    Ok(EsiConfig {
        paths,
        allow_hosts: raw
            .allow_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_depth: e.number(
            &raw.max_depth,
            &key("esi.max_depth"),
            d.max_depth as u64,
            1..=20,
        )? as usize,
        max_includes: e.number(
            &raw.max_includes,
            &key("esi.max_includes"),
            d.max_includes as u64,
            1..=10_000,
        )? as usize,
        fragment_timeout: Duration::from_millis(e.number(
            &raw.fragment_timeout_ms,
            &key("esi.fragment_timeout_ms"),
            d.fragment_timeout.as_millis() as u64,
            1..=600_000,
        )?),
    })
}

/// `"fail"`, `"fallback"`, or a table `{ on_request = …, on_response = … }`.
fn guest_error_policies(
    v: &toml::Spanned<toml::Value>,
    key: &str,
    e: &Errors,
) -> Result<GuestErrorPolicies, ConfigError> {
    let one = |value: &toml::Value| {
        match value.as_str() {
        Some("fail") => Ok(GuestErrorPolicy::Fail),
        Some("fallback") => Ok(GuestErrorPolicy::Fallback),
        _ => Err(e.at(
            Some(v.span()),
            format!("{key}: expected \"fail\" or \"fallback\", or a table with on_request / on_response"),
        )),
    }
    };
    match v.get_ref() {
        toml::Value::Table(t) => {
            let mut p = GuestErrorPolicies::default();
            for (k, value) in t {
                match k.as_str() {
                    "on_request" => p.on_request = one(value)?,
                    "on_response" => p.on_response = one(value)?,
                    other => {
                        return Err(e.at(
                            Some(v.span()),
                            format!("{key}: unknown hook `{other}` (cache_key and cache_policy always fail closed: pass / not stored)"),
                        ))
                    }
                }
            }
            Ok(p)
        }
        value => {
            let policy = one(value)?;
            Ok(GuestErrorPolicies {
                on_request: policy,
                on_response: policy,
            })
        }
    }
}

fn caching(
    raw: Option<RawCaching>,
    key: &dyn Fn(&str) -> String,
    e: &Errors,
) -> Result<CachePolicyConfig, ConfigError> {
    let mut c = CachePolicyConfig::default();
    let Some(raw) = raw else { return Ok(c) };
    if let Some(t) = raw.targets {
        for name in t.get_ref() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(e.at(
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
            return Err(e.at(
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
                    e.at(
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
    c.strip_unkeyed_params = raw.strip_unkeyed_params.unwrap_or(true);
    c.compress = raw.compress.unwrap_or(true);
    c.debug = raw.debug.unwrap_or(false);
    Ok(c)
}
