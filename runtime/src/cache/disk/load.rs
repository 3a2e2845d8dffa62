//! Reading the disk tier: the scan that finds an earlier run's entries at start, and the
//! checked read of one entry on a memory miss.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::format::{self, Damage, Fixed, Head, PREFIX};
use super::index::{Meta, Name};
use super::{name_of, path_of, reparse_esi};
use crate::cache::store::{Entry, StoreKey};

/// What the start-up scan found.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Entries indexed again.
    pub objects: u64,
    /// Their file bytes.
    pub bytes: u64,
    /// Files that failed their checks (removed).
    pub damaged: u64,
    /// Entries past use (removed).
    pub expired: u64,
    /// How long the scan took.
    pub took: Duration,
}

/// Why a read gave no entry.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is not what it says.
    #[error(transparent)]
    Damaged(#[from] Damage),
    /// The disk failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Creates the tier's directories (private to the user), takes the directory's lock (held
/// as long as the returned file is open: one process per directory) and clears
/// half-written files.
pub fn prepare(root: &Path) -> std::io::Result<File> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true).mode(0o700);
    dirs.create(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    let lock = File::create(root.join("lock"))?;
    // SAFETY: flock on a descriptor we own; no memory is shared with the call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::new(
            ErrorKind::WouldBlock,
            format!("{} is in use by another tessera process", root.display()),
        ));
    }
    let tmp = root.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    dirs.create(&tmp)?;
    for i in 0..=255u8 {
        dirs.create(root.join("objects").join(hex::encode([i])))?;
    }
    Ok(lock)
}

/// Directories read at once: the scan waits on the disk, not the CPU, and a disk answers
/// several reads at a time faster than one after another.
const SCANNERS: usize = 8;

/// Every usable entry under `root`, handed to `sink` a directory at a time; damaged and
/// dead files are removed on the way. Stops early when `stop` is set.
pub fn scan(
    root: &Path,
    now: SystemTime,
    stop: &AtomicBool,
    sink: &(dyn Fn(Vec<(StoreKey, Meta)>) + Sync),
) -> Recovered {
    let start = Instant::now();
    let parts: Vec<Recovered> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..SCANNERS)
            .map(|t| {
                s.spawn(move || {
                    let mut r = Recovered::default();
                    for i in (0..=255u8).filter(|i| usize::from(*i) % SCANNERS == t) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let dir = root.join("objects").join(hex::encode([i]));
                        let Ok(files) = std::fs::read_dir(&dir) else {
                            continue;
                        };
                        let mut found = Vec::new();
                        for f in files.flatten() {
                            scan_one(&f.path(), now, &mut found, &mut r);
                        }
                        sink(found);
                    }
                    r
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut total = Recovered::default();
    for r in parts {
        total.objects += r.objects;
        total.bytes += r.bytes;
        total.damaged += r.damaged;
        total.expired += r.expired;
    }
    total.took = start.elapsed();
    total
}

fn scan_one(path: &Path, now: SystemTime, found: &mut Vec<(StoreKey, Meta)>, r: &mut Recovered) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| hex::decode(n).ok())
        .and_then(|n| Name::try_from(n).ok());
    let read = name
        .ok_or(ReadError::Damaged(Damage("a file name")))
        .and_then(|name| read_head(path).map(|(fixed, head, len)| (name, fixed, head, len)));
    // A file in another shard than its name says would be indexed but never found.
    let in_place = |name: &Name| {
        path.parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
            == Some(&hex::encode(name)[..2])
    };
    let (name, fixed, head, len, vary) = match read {
        Ok((name, fixed, head, len)) => match head.vary_key() {
            Ok(vary) if name_of(&head.key, &vary) == name && in_place(&name) => {
                (name, fixed, head, len, vary)
            }
            _ => return damaged(path, r),
        },
        // A disk that cannot be read now: left alone, not taken for damage.
        Err(ReadError::Io(_)) => return,
        Err(ReadError::Damaged(_)) => return damaged(path, r),
    };
    let until = head.useful_until();
    if until <= now {
        r.expired += 1;
        let _ = std::fs::remove_file(path);
        return;
    }
    let Some((site, key)) = head.key.split_once('\u{1f}') else {
        return damaged(path, r);
    };
    let len = super::on_disk(len);
    r.objects += 1;
    r.bytes += len;
    found.push((
        StoreKey::new(site, key),
        Meta {
            name,
            serial: 0,
            vary,
            uri: Arc::from(head.uri.as_str()),
            tags: head.tags.iter().map(|t| t.as_str().into()).collect(),
            response_time: head.response_time(),
            initial_age: Duration::from_millis(head.initial_age_ms),
            until,
            purged_at_age: fixed.purged_at_age,
            bytes: len,
            body_len: fixed.body_len,
            used: 0,
            written: true,
        },
    ));
}

fn damaged(path: &Path, r: &mut Recovered) {
    r.damaged += 1;
    crate::observe::metrics().storage.disk_damaged.inc();
    let _ = std::fs::remove_file(path);
}

/// The fixed fields and head of a file, checked, and the file's length.
fn read_head(path: &Path) -> Result<(Fixed, Head, u64), ReadError> {
    open_checked(path).map(|(_, fixed, head, len)| (fixed, head, len))
}

/// The file at `path` positioned at its body, with its fixed fields and head checked
/// against its length and checksums.
fn open_checked(path: &Path) -> Result<(File, Fixed, Head, u64), ReadError> {
    // Only regular files: a FIFO or device planted there would hang or flood a read.
    if !std::fs::symlink_metadata(path)?.file_type().is_file() {
        return Err(Damage("not a regular file").into());
    }
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut prefix = [0u8; PREFIX];
    f.read_exact(&mut prefix).map_err(short)?;
    let fixed = Fixed::parse(&prefix)?;
    if fixed.file_len() != len {
        return Err(Damage("its length (truncated?)").into());
    }
    let mut head = vec![0u8; fixed.head_len as usize];
    f.read_exact(&mut head).map_err(short)?;
    let head = format::decode_head(&head, &fixed)?;
    Ok((f, fixed, head, len))
}

/// A file shorter than its fields say is damage, not a failing disk.
fn short(e: std::io::Error) -> ReadError {
    if e.kind() == ErrorKind::UnexpectedEof {
        Damage("a truncated file").into()
    } else {
        e.into()
    }
}

/// An entry read back.
pub enum Loaded {
    /// Whole, every checksum verified.
    Whole(Entry),
    /// Its head (an empty body) and its file positioned at the body, to be streamed and
    /// checked on the way (see [`super::body`]).
    Head(Entry, File, Fixed),
}

/// The entry in file `name` if it is `key`'s (a body above `max_body` is damage): whole, or its head and open file when
/// `stream_from` is at most its body's length and it is a plain 200 (the caller streams
/// it). `Ok(None)`: no such file.
pub fn read(
    root: &Path,
    name: &Name,
    key: &StoreKey,
    stream_from: u64,
    max_body: u64,
) -> Result<Option<Loaded>, ReadError> {
    let (mut f, fixed, head, _) = match open_checked(&path_of(root, name)) {
        Ok(opened) => opened,
        Err(ReadError::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if fixed.body_len > max_body {
        return Err(Damage("a body larger than any stored").into());
    }
    if head.key != key.as_str() || name_of(&head.key, &head.vary_key()?) != *name {
        return Err(Damage("another key's file").into());
    }
    if fixed.body_len >= stream_from && head.status == 200 && !head.esi {
        let entry = head.entry(fixed.purged_at_age)?;
        return Ok(Some(Loaded::Head(entry, f, fixed)));
    }
    // Read straight into the buffer the entry keeps, behind its head: no second copy.
    let entry = head.entry(fixed.purged_at_age)?;
    let mut entry = entry.with_body_read(fixed.body_len as usize, |body| {
        f.read_exact(body).map_err(short)?;
        if crc32fast::hash(body) != fixed.body_crc {
            return Err(Damage("the body's checksum").into());
        }
        Ok::<_, ReadError>(())
    })?;
    reparse_esi(&mut entry, head.esi)?;
    Ok(Some(Loaded::Whole(entry)))
}
