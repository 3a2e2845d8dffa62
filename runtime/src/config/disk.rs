//! `[cache] disk = { path, size }`: where the disk tier lives, checked before anything is
//! served: a directory that exists or can be made, writable, private to this user, and on a
//! filesystem with room for the size asked.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawDisk;
use super::units::Errors;
use super::ConfigError;
use crate::cache::disk::DiskConfig;

/// The disk tier's settings, validated against the filesystem.
pub(super) fn disk(
    raw: &Spanned<RawDisk>,
    max_body: u64,
    base: &Path,
    e: &Errors,
) -> Result<DiskConfig, ConfigError> {
    let r = raw.get_ref();
    if r.size.is_none() {
        return Err(e.at(
            Some(raw.span()),
            "key `cache.disk.size`: required (e.g. \"100GiB\")".into(),
        ));
    }
    let max_bytes = e.size(&r.size, "key `cache.disk.size`", 0)?;
    let path = base.join(r.path.get_ref());
    let at = |why: String| e.at(Some(r.path.span()), format!("key `cache.disk.path`: {why}"));
    // Not followed: a link planted where the tier lives could point its clean-up at
    // another of this user's directories.
    let (existing, exists) = match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                return Err(at(format!(
                    "{} is a symbolic link: name the directory itself",
                    path.display()
                )));
            }
            if !meta.is_dir() {
                return Err(at(format!("{} is not a directory", path.display())));
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me {
                return Err(at(format!(
                    "{} belongs to another user (uid {}): cached responses must be private to tessera's user",
                    path.display(),
                    meta.uid()
                )));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(at(format!(
                    "{} is open to group or others: chmod 700 it",
                    path.display()
                )));
            }
            (path.clone(), true)
        }
        Err(_) => (
            nearest_existing(&path).ok_or_else(|| at("no such place".into()))?,
            false,
        ),
    };
    if !writable(&existing) {
        return Err(at(format!(
            "{} is not writable by tessera's user",
            existing.display()
        )));
    }
    if let Some(free) = available(&existing) {
        // What the tier holds already counts toward its size; summed only when needed (a
        // large tier has millions of files, and configs are loaded at every reload).
        let used = if free < max_bytes && exists {
            held(&path)
        } else {
            0
        };
        if free + used < max_bytes {
            return Err(e.at(
                r.size.as_ref().map(|s| s.span()),
                format!(
                    "key `cache.disk.size`: {} asked but the filesystem of {} has {} free",
                    human(max_bytes),
                    existing.display(),
                    human(free + used)
                ),
            ));
        }
    }
    Ok(DiskConfig {
        path,
        max_bytes,
        max_body,
    })
}

/// The closest ancestor of `path` that exists (where the directory would be created).
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|p| p.as_os_str().is_empty() || p.exists())
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
}

fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn writable(path: &Path) -> bool {
    c_path(path).is_some_and(|p| {
        // SAFETY: `p` is a valid NUL-terminated path for the duration of the call.
        unsafe { libc::access(p.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    })
}

/// Bytes an unprivileged user may still write on `path`'s filesystem.
fn available(path: &Path) -> Option<u64> {
    let p = c_path(path)?;
    // SAFETY: statvfs writes into the zeroed struct we own; `p` is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(p.as_ptr(), &mut s) == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
}

/// Bytes the tier's files already take (they count toward the size asked).
fn held(root: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(root.join("objects")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}
