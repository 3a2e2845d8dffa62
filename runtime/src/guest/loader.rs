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

/// The on-disk cache of compiled components: a directory only this user can write.
///
/// Compiled code is native code, loaded with `Component::deserialize` without further
/// checks; a directory another local user could write to would let them run code in the
/// proxy. So the directory is created `0700`, and one that is writable by group or others,
/// owned by someone else, or a symbolic link is refused.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    /// Opens `dir`, creating it (mode 0700) if needed; refuses an unsafe directory.
    pub fn open(dir: &Path) -> Result<CompiledCache, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("{}: cannot inspect: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "{}: not a directory (a symbolic link?)",
                dir.display()
            ));
        }
        if meta.uid() != effective_uid() {
            return Err(format!(
                "{}: owned by uid {}, not by this user; compiled code must be private",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{}: writable by group or others (mode {:o}); run `chmod 700 {}`",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ));
        }
        Ok(CompiledCache {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads, checks and compiles a component, using `compiled` as a cache of native code;
/// returns it with the hex SHA-256 of the wasm (the script's version).
pub fn load_component(
    engine: &GuestEngine,
    path: &Path,
    compiled: Option<&CompiledCache>,
) -> Result<(Component, String), LoadError> {
    let fail = |problem: String| LoadError {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    check_header(&bytes).map_err(fail)?;
    let digest = hex::encode(Sha256::digest(&bytes));

    let cached = compiled.map(|c| compiled_path(engine, &bytes, &c.dir));
    if let Some(native) = cached.as_deref().and_then(read_private) {
        // SAFETY: the file is in a directory only this user can write (CompiledCache::open),
        // it is a regular file owned by this user, was written by `Component::serialize`
        // of an engine with the same compatibility hash (in its name), and its name carries
        // the wasm's SHA-256.
        match unsafe { Component::deserialize(engine.engine(), &native) } {
            Ok(c) => return Ok((c, digest)),
            Err(e) => {
                tracing::warn!(file = %path.display(), "ignoring unusable compiled copy: {e}")
            }
        }
    }
    let component = Component::new(engine.engine(), &bytes)
        .map_err(|e| fail(format!("invalid component: {}", root_cause(&e.into()))))?;
    if let Some(cached) = &cached {
        if let Err(e) = store_compiled(&component, cached) {
            // A read-only cache dir costs only start-up time, never correctness.
            tracing::warn!(file = %cached.display(), "cannot keep compiled component: {e}");
        }
    }
    Ok((component, digest))
}

/// The file's bytes if it is a regular file of ours that nobody else can write.
fn read_private(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.uid() != effective_uid() || meta.mode() & 0o022 != 0 {
        tracing::warn!(file = %path.display(), "ignoring compiled copy that is not a private file");
        return None;
    }
    std::fs::read(path).ok()
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("compiled path has a parent");
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    // Write then rename so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
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
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("compiled");
        let c = CompiledCache::open(&dir).unwrap();
        let mode = std::fs::metadata(c.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = CompiledCache::open(&dir).unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(CompiledCache::open(&link)
            .unwrap_err()
            .contains("not a directory"));
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
