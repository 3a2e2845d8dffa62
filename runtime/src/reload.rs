//! What puts a new configuration in force while serving: SIGHUP, and with `serve --watch`
//! a change to the config file, a script or a certificate. A bad new version is logged and refused;
//! the old one keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::observe::{metrics, ResultLabel};
use crate::proxy::Shared;

/// Reads the configuration again (the file, plus whatever the command line overrode).
pub type Loader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// How often `--watch` looks at the files.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Loads the configuration again and puts it in force. Returns the new generation, or the
/// error (already logged) with the old generation still serving.
pub async fn reload(shared: &Shared, load: &Loader, why: &str) -> anyhow::Result<u64> {
    put_in_force(shared, load(), why).await
}

async fn put_in_force(
    shared: &Shared,
    loaded: anyhow::Result<Config>,
    why: &str,
) -> anyhow::Result<u64> {
    let result = match loaded {
        Ok(config) => shared.reload(config).await,
        Err(e) => Err(e),
    };
    let label = match &result {
        Ok(v) => {
            tracing::info!("reloaded ({why}): configuration generation {v} in force");
            "ok"
        }
        Err(e) => {
            tracing::error!(
                "reload ({why}) refused, generation {} keeps serving: {e:#}",
                shared.generation().version
            );
            "error"
        }
    };
    metrics()
        .reloads
        .get_or_create(&ResultLabel {
            result: label.to_owned(),
        })
        .inc();
    result
}

/// Reloads on every SIGHUP, for as long as the process runs.
pub fn on_sighup(shared: Arc<Shared>, load: Loader) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload(&shared, &load, "SIGHUP").await;
        }
    }))
}

/// What identifies a file's version without reading it: inode (an editor's or a deploy's
/// rename-over), size and modification time. `None` while the file is missing.
type Stamp = Option<(u64, u64, SystemTime)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

/// The files a generation depends on: its config file, if any, every script and every
/// listener certificate and key.
fn watched(config_file: &Option<PathBuf>, config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config_file.iter().cloned().collect();
    files.extend(config.sites.iter().flat_map(|s| s.scripts.iter().cloned()));
    for tls in config.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        files.extend([tls.certificate.clone(), tls.key.clone()]);
        files.extend(
            tls.sni
                .iter()
                .flat_map(|s| [s.certificate.clone(), s.key.clone()]),
        );
    }
    files.sort();
    files.dedup();
    files
}

/// Polls the config file and the scripts every `every`, and reloads once a change has
/// settled (the same for two looks in a row, so a file caught half-written is not loaded).
pub fn watch(
    shared: Arc<Shared>,
    load: Loader,
    config_file: Option<PathBuf>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Also watched: the files of the last version tried, so that fixing a new script a
        // refused config named is noticed though the config file did not change again.
        let mut tried: Vec<PathBuf> = Vec::new();
        let look = |config: &Config, tried: &[PathBuf]| -> Vec<(PathBuf, Stamp)> {
            let mut files = watched(&config_file, config);
            files.extend(tried.iter().cloned());
            files.sort();
            files.dedup();
            files
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s)
                })
                .collect()
        };
        let mut seen = look(&shared.generation().config, &tried);
        let mut pending: Option<Vec<(PathBuf, Stamp)>> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = look(&shared.generation().config, &tried);
            if now == seen {
                pending = None;
                continue;
            }
            if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            }
            let changed: Vec<String> = now
                .iter()
                .filter(|f| !seen.contains(f))
                .map(|(p, _)| p.display().to_string())
                .collect();
            let loaded = load();
            tried = match &loaded {
                Ok(c) => watched(&config_file, c),
                Err(_) => Vec::new(),
            };
            let why = format!("changed: {}", changed.join(", "));
            let _ = put_in_force(&shared, loaded, &why).await;
            pending = None;
            // Whatever the outcome, wait for the next change: a refused version is not
            // retried every second.
            seen = look(&shared.generation().config, &tried);
        }
    })
}
