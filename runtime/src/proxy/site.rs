//! A configured site made ready to serve: its scripts loaded and its origin client built.

use std::sync::Arc;

use http::HeaderName;

use crate::cache::directives::Targets;
use crate::config::Site;
use crate::guest::{
    CompiledCache, GuestEngine, InstancePool, LoadError, RateLimiter, Script, ScriptEnv,
};
use crate::origin::OriginClient;

/// A site with its live parts.
pub struct SiteRuntime {
    /// The site's configuration.
    pub cfg: Site,
    /// The site's scripts, in the order their hooks run.
    pub scripts: Arc<[Arc<Script>]>,
    /// Pooled client for the site's origin.
    pub origin: OriginClient,
    /// The site's shields, each with its own pool and health.
    pub shields: Vec<super::tier::Shield>,
    /// Targeted cache-control fields in precedence order.
    pub targets: Targets,
}

/// Device token this cache answers to in `Surrogate-Control` targeting (`max-age=60;tessera`).
const SURROGATE_DEVICE: &str = "tessera";

impl SiteRuntime {
    /// Loads the site's scripts (if any) and builds its origin client.
    pub async fn new(
        cfg: Site,
        engine: Option<&GuestEngine>,
        pool: &InstancePool,
        compiled: Option<&CompiledCache>,
        limiter: &Arc<RateLimiter>,
    ) -> Result<SiteRuntime, LoadError> {
        let mut scripts = Vec::with_capacity(cfg.scripts.len());
        let env = Arc::new(ScriptEnv {
            config: cfg.script_config.clone(),
            limiter: limiter.clone(),
        });
        if let Some(engine) = engine {
            for path in &cfg.scripts {
                let (site, limits) = (&cfg.name, cfg.limits);
                let script =
                    Script::load_with(engine, pool, path, compiled, site, limits, env.clone())
                        .await?;
                scripts.push(Arc::new(script));
            }
        }
        let targets = Targets::new(
            cfg.caching
                .targets
                .iter()
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
            SURROGATE_DEVICE,
        );
        // TLS for an https upstream (origin or shield), checked against the site's CAs.
        let tls_for = |url: &http::Uri, what: &str| {
            if url.scheme() != Some(&http::uri::Scheme::HTTPS) {
                return Ok(None);
            }
            crate::tls::client::client_config(cfg.origin_ca.as_deref())
                .map(Some)
                .map_err(|e| LoadError {
                    path: cfg
                        .origin_ca
                        .clone()
                        .unwrap_or_else(|| "the system's CA certificates".into()),
                    problem: format!("site {:?}: https {what}: {e}", cfg.name),
                })
        };
        let client =
            |tls| OriginClient::new(&cfg.name, cfg.connect_timeout, cfg.response_timeout, tls);
        let mut shields = Vec::with_capacity(cfg.shields.len());
        for url in &cfg.shields {
            let tls = tls_for(url, &format!("shield {url}"))?;
            shields.push(super::tier::Shield::new(url.clone(), client(tls)));
        }
        let origin = match &cfg.local_origin {
            Some(local) => OriginClient::local(&cfg.name, cfg.response_timeout, local.clone()),
            None => client(tls_for(&cfg.origin, "origin")?),
        };
        Ok(SiteRuntime {
            cfg,
            scripts: scripts.into(),
            origin,
            shields,
            targets,
        })
    }
}
