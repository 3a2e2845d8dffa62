//! Loading a script: validate the file, compile (or reuse the on-disk compiled copy), link.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::engine::GuestEngine;

/// A script that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    /// The wasm file.
    pub path: PathBuf,
    /// What is wrong with it, in words a script author can act on.
    pub problem: String,
}

const COMPONENT_MAGIC: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const HOW_TO_BUILD: &str = "build it with `tessera build <crate-dir>` (wasm32-unknown-unknown with linker wasm-component-ld)";

/// Reads, checks and compiles a component, using `compiled_dir` as a cache of native code.
pub fn load_component(
    engine: &GuestEngine,
    path: &Path,
    compiled_dir: &Path,
) -> Result<Component, LoadError> {
    let fail = |problem: String| LoadError {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    check_header(&bytes).map_err(fail)?;

    let cached = compiled_path(engine, &bytes, compiled_dir);
    if let Ok(native) = std::fs::read(&cached) {
        // SAFETY: the file was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the file name) and its name carries the wasm's SHA-256.
        match unsafe { Component::deserialize(engine.engine(), &native) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(file = %cached.display(), "ignoring unusable compiled copy: {e}")
            }
        }
    }
    let component = Component::new(engine.engine(), &bytes)
        .map_err(|e| fail(format!("invalid component: {}", root_cause(&e.into()))))?;
    if let Err(e) = store_compiled(&component, &cached) {
        // A read-only cache dir costs only start-up time, never correctness.
        tracing::warn!(dir = %compiled_dir.display(), "cannot keep compiled component: {e}");
    }
    Ok(component)
}

fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || bytes[..4] != COMPONENT_MAGIC[..4] {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "not a WebAssembly file (starts with {}, expected 00 61 73 6d); {HOW_TO_BUILD}",
            if head.is_empty() {
                "nothing".to_string()
            } else {
                head.join(" ")
            }
        ));
    }
    if bytes[4..8] == [0x01, 0x00, 0x00, 0x00] {
        return Err(format!(
            "not a WebAssembly component (looks like a core module); {HOW_TO_BUILD}"
        ));
    }
    if bytes[..8] != COMPONENT_MAGIC {
        return Err(format!(
            "unsupported WebAssembly version/layer {:02x?}; {HOW_TO_BUILD}",
            &bytes[4..8]
        ));
    }
    Ok(())
}

fn compiled_path(engine: &GuestEngine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.engine().precompile_compatibility_hash().hash(&mut h);
    let digest = hex::encode(Sha256::digest(wasm));
    dir.join(format!(
        "{}-wasmtime{}-{:016x}.cwasm",
        &digest[..32],
        WASMTIME_VERSION,
        h.finish()
    ))
}

/// The wasmtime major version this host is built against, part of the compiled-cache key.
pub const WASMTIME_VERSION: &str = "48";

fn store_compiled(component: &Component, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().expect("compiled path has a parent");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    // Write then rename so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The innermost message of an error chain, which is what wasmtime's useful text is.
pub fn root_cause(e: &anyhow::Error) -> String {
    let msgs: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    msgs.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_module_is_named_as_such() {
        let e = check_header(&[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]).unwrap_err();
        assert!(e.contains("core module"), "{e}");
    }

    #[test]
    fn garbage_is_not_wasm() {
        let e = check_header(b"hello world").unwrap_err();
        assert!(
            e.contains("not a WebAssembly file") && e.contains("68 65 6c 6c"),
            "{e}"
        );
    }
}
