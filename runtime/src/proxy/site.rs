//! A configured site made ready to serve: its script loaded and its origin client built.

use std::sync::Arc;

use http::HeaderName;

use crate::cache::directives::Targets;
use crate::config::Site;
use crate::guest::{GuestEngine, LoadError, Script};
use crate::origin::OriginClient;

/// A site with its live parts.
pub struct SiteRuntime {
    /// The site's configuration.
    pub cfg: Site,
    /// The site's scripts, in the order their hooks run.
    pub scripts: Vec<Arc<Script>>,
    /// Pooled client for the site's origin.
    pub origin: OriginClient,
    /// Targeted cache-control fields in precedence order.
    pub targets: Targets,
}

impl SiteRuntime {
    /// Loads the site's script (if any) and builds its origin client.
    pub fn new(
        cfg: Site,
        engine: Option<&GuestEngine>,
        compiled_dir: &std::path::Path,
    ) -> Result<SiteRuntime, LoadError> {
        let mut scripts = Vec::with_capacity(cfg.scripts.len());
        if let Some(engine) = engine {
            for path in &cfg.scripts {
                scripts.push(Arc::new(Script::load(
                    engine,
                    path,
                    compiled_dir,
                    &cfg.name,
                    cfg.limits,
                )?));
            }
        }
        let targets = Targets::new(
            cfg.caching
                .targets
                .iter()
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
            "tessera",
        );
        let origin = OriginClient::new(cfg.connect_timeout, cfg.response_timeout);
        Ok(SiteRuntime {
            cfg,
            scripts,
            origin,
            targets,
        })
    }
}
