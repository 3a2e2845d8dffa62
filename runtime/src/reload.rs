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
    put_in_force(shared, load_off_thread(load).await, why).await
}

/// Runs the loader where it may block: loading may build guest crates (seconds), which
/// must not hold a thread that serves requests.
async fn load_off_thread(load: &Loader) -> anyhow::Result<Config> {
    let loader = load.clone();
    tokio::task::spawn_blocking(move || loader())
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("loading the configuration failed: {e}")))
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

/// Source files of one guest crate watched at most: a crate is a script, not a monorepo.
const MAX_CRATE_FILES: usize = 2000;

/// A guest crate's manifest, lock file and everything under `src/`.
fn crate_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("Cargo.toml"), dir.join("Cargo.lock")];
    let mut dirs = vec![dir.join("src")];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if files.len() >= MAX_CRATE_FILES {
                return files;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// The files a generation depends on: its config file, if any, every script (down to the
/// sources of a script named by crate) and every listener certificate and key.
fn watched(config_file: &Option<PathBuf>, config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config_file.iter().cloned().collect();
    files.extend(config.sites.iter().flat_map(|s| s.scripts.iter().cloned()));
    for dir in config.sites.iter().flat_map(|s| &s.script_crates) {
        files.extend(crate_files(dir));
    }
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

/// The scripts (by file or crate name) among the changed files.
fn changed_scripts(config: &Config, changed: &[PathBuf]) -> Vec<String> {
    let name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for site in &config.sites {
        for s in &site.scripts {
            if changed.contains(s) {
                out.push(name(s));
            }
        }
        for dir in &site.script_crates {
            if changed.iter().any(|c| c.starts_with(dir)) {
                out.push(name(dir));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Polls the config file and the scripts every `every`, and reloads once a change has
/// settled (the same for two looks in a row, so a file caught half-written is not loaded).
/// The files are first looked at before this returns: a change made once the caller goes
/// on (say, after it printed its listening line) is a change, however late the task runs.
pub fn watch(
    shared: Arc<Shared>,
    load: Loader,
    config_file: Option<PathBuf>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let file = config_file.clone();
    let look = move |config: &Config, tried: &[PathBuf]| -> Vec<(PathBuf, Stamp)> {
        let mut files = watched(&file, config);
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
    let mut seen = look(&shared.generation().config, &[]);
    tokio::spawn(async move {
        // Also watched: the files of the last version tried, so that fixing a new script a
        // refused config named is noticed though the config file did not change again.
        let mut tried: Vec<PathBuf> = Vec::new();
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
            let changed: Vec<PathBuf> = now
                .iter()
                .filter(|f| !seen.contains(f))
                .map(|(p, _)| p.clone())
                .collect();
            let started = std::time::Instant::now();
            let loaded = load_off_thread(&load).await;
            tried = match &loaded {
                Ok(c) => watched(&config_file, c),
                Err(_) => Vec::new(),
            };
            let scripts = match &loaded {
                Ok(c) => changed_scripts(c, &changed),
                Err(_) => Vec::new(),
            };
            let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
            let why = format!("changed: {}", names.join(", "));
            if put_in_force(&shared, loaded, &why).await.is_ok() {
                let ms = started.elapsed().as_millis();
                for script in scripts {
                    tracing::info!("reloaded {script} in {ms} ms");
                }
            }
            pending = None;
            // Whatever the outcome, wait for the next change: a refused version is not
            // retried every second. The files the reload was decided on keep the stamps
            // they had then, so a file replaced while it loaded (or since) still counts as
            // changed; only files the new version names for the first time are stamped now.
            seen = look(&shared.generation().config, &tried)
                .into_iter()
                .map(|(p, s)| match now.iter().find(|(q, _)| *q == p) {
                    Some((_, before)) => (p, *before),
                    None => (p, s),
                })
                .collect();
        }
    })
}
