//! `tessera build`: compiles a guest crate into a WebAssembly component.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The target guests are built for; with `wasm-component-ld` it yields a component with no WASI.
pub const GUEST_TARGET: &str = "wasm32-unknown-unknown";

/// Builds the guest crate in `dir` (release) and returns the component's path, copied to `out` if given.
pub fn build_guest(
    dir: &Path,
    out: Option<&Path>,
    target_dir: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{}: no Cargo.toml: expected a guest crate directory",
            dir.display()
        );
    }
    ensure_target()?;
    let mut cmd = Command::new(cargo());
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        // A crate's own .cargo/config.toml is ignored when building from elsewhere, so the
        // linker that makes a component is named here explicitly.
        .arg("--config")
        .arg(format!(
            "target.{GUEST_TARGET}.linker=\"wasm-component-ld\""
        ))
        // Guests ship without debug info: it makes components ~35x larger.
        .args([
            "--config",
            "profile.release.debug=false",
            "--config",
            "profile.release.strip=true",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = target_dir {
        cmd.arg("--target-dir").arg(t);
    }
    let output = cmd.output().context("cannot run cargo")?;
    if !output.status.success() {
        bail!("{}: cargo build failed ({})", dir.display(), output.status);
    }
    let wasm = find_artifact(&output.stdout).with_context(|| {
        format!(
            "{}: cargo built no .wasm; is crate-type = [\"cdylib\"] set?",
            dir.display()
        )
    })?;
    match out {
        Some(out) => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&wasm, out).with_context(|| format!("cannot write {}", out.display()))?;
            Ok(out.to_owned())
        }
        None => Ok(wasm),
    }
}

fn find_artifact(stdout: &[u8]) -> Option<PathBuf> {
    let mut found = None;
    for line in stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                found = Some(PathBuf::from(f));
            }
        }
    }
    found
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs the wasm target with rustup when the active toolchain lacks it.
fn ensure_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    if let Ok(o) = sysroot {
        let root = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if Path::new(&root)
            .join("lib/rustlib")
            .join(GUEST_TARGET)
            .is_dir()
        {
            return Ok(());
        }
    }
    eprintln!("installing the {GUEST_TARGET} target with rustup…");
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .context("the wasm target is missing and rustup could not be run")?;
    if !status.success() {
        bail!("`rustup target add {GUEST_TARGET}` failed");
    }
    Ok(())
}
