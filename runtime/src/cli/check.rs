//! `tessera check`: a config validated and every script loaded, described and instantiated,
//! as a start would, without serving.

use std::path::Path;

use tessera::config::{Config, ScriptsConfig};
use tessera::guest::{GuestEngine, InstancePool, PoolSize, Script};

/// Validates the config at `path` and instantiates every script; lists what failed.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let compiled = tessera::proxy::compiled_cache(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let max_memory = config
        .sites
        .iter()
        .map(|s| s.limits.memory_bytes)
        .max()
        .unwrap_or(0);
    let engine = GuestEngine::new(PoolSize {
        instances: 8,
        max_memory,
    })?;
    let pool = InstancePool::new(&ScriptsConfig {
        instances: 8,
        ..ScriptsConfig::default()
    });
    let mut errors = Vec::new();
    let mut scripts = 0;
    crate::runtime(None)?.block_on(async {
        for site in &config.sites {
            for script in &site.scripts {
                match Script::load(
                    &engine,
                    &pool,
                    script,
                    compiled.as_ref(),
                    &site.name,
                    site.limits,
                )
                .await
                {
                    Err(e) => errors.push(format!("site \"{}\": {e}", site.name)),
                    Ok(s) => {
                        let reads = s
                            .key_reads_text()
                            .map(|r| format!(" (cache_key reads {r})"))
                            .unwrap_or_default();
                        println!(
                            "site \"{}\": {}: hooks {}{}{reads}",
                            site.name,
                            script.display(),
                            s.hook_names().join(", "),
                            if s.keeps_state() {
                                " (keeps state)"
                            } else {
                                ""
                            }
                        );
                        scripts += 1;
                    }
                }
            }
        }
    });
    if errors.is_empty() {
        println!(
            "{}: ok ({} site(s), {} script(s))",
            path.display(),
            config.sites.len(),
            scripts
        );
        Ok(())
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!("{}: {} error(s)", path.display(), errors.len())
    }
}
