//! Commands of the `tessera` binary that live in their own files.

pub mod check;
pub mod key;
pub mod simulate;
pub mod test;

use std::path::PathBuf;

use tessera::config::{Config, Site, DEFAULT_LISTEN};

/// A one-site config of `scripts` in front of an origin that commands working offline
/// (`key`, `simulate`) never contact.
pub fn offline_config(scripts: &[PathBuf]) -> anyhow::Result<Config> {
    for s in scripts {
        anyhow::ensure!(s.is_file(), "--script: file {} not found", s.display());
    }
    let origin = "http://127.0.0.1:9".parse().expect("a valid URL");
    Ok(Config::quick(
        DEFAULT_LISTEN.parse()?,
        Site::quick(origin, scripts.to_vec()),
    ))
}
