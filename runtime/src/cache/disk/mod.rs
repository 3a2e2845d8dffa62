//! The disk tier: every stored response also kept in a file of its own (nginx's layout),
//! found again after a restart, read back and checked when memory no longer holds it.
//!
//! Memory stays the hot tier (scan-resistant, see `store`); disk is written through, in the
//! background and in order (a purge never overtakes the write it must undo), and is the
//! larger, slower tier that survives restarts. A file is written whole under a temporary
//! name and renamed into place, so a crash leaves the old file or the new one; checksums
//! catch what the disk itself damages.

mod body;
mod format;
mod index;
mod load;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sha2::{Digest, Sha256};

pub use body::DiskBody;
pub use format::Damage;
pub use index::Find;
use index::{Forget, Index, Meta, Name, Placed};
pub use load::{Loaded, Recovered};
use writer::Op;

use super::store::{Entry, Purge, StoreKey};
use super::vary::VaryKey;
use crate::clock::Clock;
use crate::observe::metrics;

/// Bytes of writes waiting for the disk at most; beyond, writes are dropped (a cache may
/// forget), never queued without bound.
const MAX_PENDING: u64 = 64 << 20;
/// How long the tier stays out of use after an I/O error.
const DOWN_FOR: Duration = Duration::from_secs(30);
/// MiB of bodies read whole at once, at most.
const READ_BUDGET_MIB: u64 = 256;
/// A file takes whole blocks: sizes are counted in them, so that many small objects cannot
/// fill the filesystem past the tier's size.
const BLOCK: u64 = 4096;

/// The room a file of `len` bytes takes.
pub(crate) fn on_disk(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Where the disk tier lives and how much it may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskConfig {
    /// Its directory (created private to the user if absent).
    pub path: PathBuf,
    /// Upper bound on file bytes.
    pub max_bytes: u64,
    /// Largest body kept (`cache.max_object_size`): a file claiming more is damage.
    pub max_body: u64,
}

struct Inner {
    root: PathBuf,
    capacity: u64,
    max_body: u64,
    index: Mutex<Index>,
    pending: AtomicU64,
    /// Unix ms (real time) until which the tier is out of use after an error.
    down_until: AtomicU64,
    clock: Clock,
    /// Set by [`Disk::close`]: the start-up scan stops.
    closing: AtomicBool,
    /// What the start-up scan found, once it is done.
    loaded: Mutex<Option<Recovered>>,
    loaded_cv: Condvar,
    /// To the writer; taken by [`Disk::close`]. Operations are sent while the index lock
    /// is held, so the writer applies them in the order the index saw them.
    ops: Mutex<Option<Sender<Op>>>,
}

/// The disk tier of a store.
pub struct Disk {
    inner: Arc<Inner>,
    /// MiB of bodies being read whole at once (Range, revalidation): bounded, so that
    /// requests for large objects cannot make the tier allocate without limit.
    read_budget: tokio::sync::Semaphore,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    loader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Holds the directory's lock while open.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// A variant's file name.
fn name_of(key: &str, vary: &VaryKey) -> Name {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    if let VaryKey::Fields(f) = vary {
        for (n, v) in f.iter() {
            h.update(n.as_str().as_bytes());
            match v {
                Some(v) => {
                    h.update(b"=");
                    h.update(v.as_bytes());
                }
                None => h.update([1]),
            }
            h.update(b"\n");
        }
    }
    h.finalize().into()
}

fn path_of(root: &Path, name: &Name) -> PathBuf {
    let hex = hex::encode(name);
    root.join("objects").join(&hex[..2]).join(hex)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inner {
    fn is_up(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) <= unix_ms_now()
    }

    /// An I/O error: counted, logged, and the tier is left alone for a while (memory keeps
    /// serving; requests never wait on a failing disk).
    fn degrade(&self, op: &'static str, e: &std::io::Error) {
        let m = &metrics().storage;
        m.disk_errors
            .get_or_create(&crate::observe::storage::DiskOp { op })
            .inc();
        let was_up = self.is_up();
        self.down_until.store(
            unix_ms_now() + DOWN_FOR.as_millis() as u64,
            Ordering::Relaxed,
        );
        if was_up {
            tracing::error!(
                path = %self.root.display(),
                "disk cache: {op} failed ({e}); serving from memory only for {} s",
                DOWN_FOR.as_secs()
            );
        }
    }

    /// A file that failed its checks: counted, and, if it is still the one indexed,
    /// forgotten and removed (by the writer, in order: a newer file of the same variant is
    /// never the one removed).
    fn drop_damaged(&self, key: &StoreKey, name: &Name, serial: u64, why: &dyn std::fmt::Display) {
        metrics().storage.disk_damaged.inc();
        tracing::warn!(key = key.key(), "disk cache: {why}; entry dropped");
        let mut index = self.index.lock().expect("disk index");
        if index.remove_serial(key, name, serial) {
            self.send(Op::Remove(vec![*name]));
        }
    }

    fn send(&self, op: Op) {
        if let Some(tx) = self.ops.lock().expect("disk ops").as_ref() {
            let _ = tx.send(op);
        }
    }
}

impl Disk {
    /// Opens (or creates) the tier at `cfg.path` and starts finding what an earlier run
    /// left there, in the background: entries serve as they are found (nginx's cache
    /// loader does the same), and purges made meanwhile reach what is found after them.
    pub fn open(cfg: &DiskConfig, clock: Clock) -> anyhow::Result<Arc<Disk>> {
        let root = cfg.path.clone();
        let lock = load::prepare(&root)?;
        let inner = Arc::new(Inner {
            root,
            capacity: cfg.max_bytes,
            max_body: cfg.max_body,
            index: Mutex::new(Index::loading()),
            pending: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            clock,
            closing: AtomicBool::new(false),
            loaded: Mutex::new(None),
            loaded_cv: Condvar::new(),
            ops: Mutex::new(None),
        });
        let (tx, rx): (Sender<Op>, Receiver<Op>) = std::sync::mpsc::channel();
        *inner.ops.lock().expect("disk ops") = Some(tx);
        let w = inner.clone();
        let writer = std::thread::Builder::new()
            .name("tessera-disk".into())
            .spawn(move || writer::run(&w, rx))?;
        let l = inner.clone();
        let loader = std::thread::Builder::new()
            .name("tessera-disk-load".into())
            .spawn(move || load_all(&l))?;
        Ok(Arc::new(Disk {
            inner,
            read_budget: tokio::sync::Semaphore::new(READ_BUDGET_MIB as usize),
            writer: Mutex::new(Some(writer)),
            loader: Mutex::new(Some(loader)),
            _lock: lock,
        }))
    }

    /// Waits for the start-up scan and says what it found.
    pub fn wait_loaded(&self) -> Recovered {
        let mut done = self.inner.loaded.lock().expect("disk loaded");
        loop {
            if let Some(r) = done.as_ref() {
                return r.clone();
            }
            done = self.inner.loaded_cv.wait(done).expect("disk loaded");
        }
    }

    /// Whether the start-up scan is still running.
    pub fn is_loading(&self) -> bool {
        self.inner.loaded.lock().expect("disk loaded").is_none()
    }

    fn send(&self, op: Op) {
        self.inner.send(op);
    }

    /// Waits until a whole read of `body_len` bytes may start (see `read_budget`).
    pub async fn read_permit(&self, body_len: u64) -> tokio::sync::SemaphorePermit<'_> {
        let mib = (body_len >> 20).clamp(1, READ_BUDGET_MIB) as u32;
        self.read_budget
            .acquire_many(mib)
            .await
            .expect("the read budget is never closed")
    }

    /// Whether the tier is in use (not degraded after an error).
    pub fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Variants and file bytes held.
    pub fn usage(&self) -> (u64, u64) {
        let i = self.inner.index.lock().expect("disk index");
        (i.objects, i.bytes)
    }

    /// Counts `bytes` as queued if they fit under [`MAX_PENDING`].
    fn reserve(&self, bytes: u64) -> bool {
        let before = self.inner.pending.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > MAX_PENDING {
            self.inner.pending.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues `entry` to be written under `key`. Never waits: when the queue is full or the
    /// tier is degraded the write is dropped (and any older copy of the variant removed).
    pub fn store(&self, key: &StoreKey, entry: &Arc<Entry>) {
        let Some(head) = format::Head::of(key.as_str(), entry) else {
            return;
        };
        let name = name_of(key.as_str(), entry.vary());
        let head_bytes = format::encode_head(&head);
        let bytes = on_disk((format::PREFIX + head_bytes.len() + entry.body().len()) as u64);
        // No one object takes more than an eighth of the tier.
        let room = bytes <= self.inner.capacity / 8 && self.is_up() && self.reserve(bytes);
        let mut index = self.inner.index.lock().expect("disk index");
        if !room {
            metrics().storage.disk_writes_dropped.inc();
            // An older copy must not outlive the newer response memory now holds (nor be
            // found by the start-up scan later).
            index.note(Forget::Variant(key.clone(), name));
            if index.remove_name(key, &name).is_some() {
                self.send(Op::Remove(vec![name]));
            }
            return;
        }
        let serial = index.next_serial();
        let displaced = index.insert(
            key,
            Meta {
                name,
                serial,
                vary: entry.vary().clone(),
                uri: entry.uri.clone(),
                tags: entry.tags().iter().map(|t| t.as_str().into()).collect(),
                response_time: entry.response_time.get(),
                initial_age: entry.initial_age.get(),
                until: head.useful_until(),
                purged_at_age: entry.purged_at_age.load(Ordering::Relaxed),
                bytes,
                body_len: entry.body().len() as u64,
                used: 0,
                written: false,
            },
        );
        if let Some(gone) = displaced {
            self.send(Op::Remove(vec![gone]));
        }
        self.send(Op::Write {
            key: key.clone(),
            name,
            serial,
            head: head_bytes,
            // Lent: the queued write keeps the entry alive until it is written (the queue
            // is bounded), rather than making its buffer a shared one for good.
            body: entry.body_to_send(),
        });
        // Sent before the lock goes: see `Inner::ops`.
        drop(index);
    }

    /// The variant of `key` on disk that serves `req`, if any.
    pub fn find(&self, key: &StoreKey, req: &HeaderMap) -> Find {
        if !self.is_up() {
            return Find::Miss;
        }
        let now = self.inner.clock.now();
        self.inner
            .index
            .lock()
            .expect("disk index")
            .find(key, req, now)
    }

    /// Reads `found` back (blocking: call it off the runtime's threads): whole, or, for a
    /// plain 200 whose body is at least `stream_from` bytes, its head and a [`DiskBody`]
    /// that reads the rest as it is sent. `None` when the file is gone (a write still
    /// queued) or failed its checks (then it is dropped).
    pub fn read(
        &self,
        key: &StoreKey,
        found: &Meta,
        stream_from: u64,
    ) -> Option<(Entry, Option<DiskBody>)> {
        let at = &self.inner;
        let loaded = match load::read(&at.root, &found.name, key, stream_from, at.max_body) {
            Ok(loaded) => loaded?,
            Err(load::ReadError::Damaged(why)) => {
                self.inner
                    .drop_damaged(key, &found.name, found.serial, &why);
                return None;
            }
            Err(load::ReadError::Io(e)) => {
                self.inner.degrade("read", &e);
                return None;
            }
        };
        let (mut entry, body) = match loaded {
            Loaded::Whole(entry) => (entry, None),
            Loaded::Head(entry, file, fixed) => {
                let (inner, key, name, serial) =
                    (self.inner.clone(), key.clone(), found.name, found.serial);
                let on_damage = Box::new(move || {
                    inner.drop_damaged(&key, &name, serial, &"the body's checksum")
                });
                let body = DiskBody::new(file, fixed.body_len, fixed.body_crc, on_damage);
                (entry, Some(body))
            }
        };
        let recorded = entry.purged_at_age.get_mut();
        *recorded = (*recorded).min(found.purged_at_age);
        Some((entry, body))
    }

    /// Runs `promote` if the variant read is still the one indexed (no purge or newer write
    /// came meanwhile), under the index's lock so that no purge can pass between the check
    /// and what `promote` does; gives it the soft purge recorded since.
    pub fn confirm(&self, key: &StoreKey, found: &Meta, promote: impl FnOnce(u64)) -> bool {
        let index = self.inner.index.lock().expect("disk index");
        match index.get(key, &found.name) {
            Some(m) if m.serial == found.serial => {
                promote(m.purged_at_age);
                true
            }
            _ => false,
        }
    }

    /// Removes every variant of `key`.
    pub fn remove_key(&self, key: &StoreKey) -> usize {
        let mut index = self.inner.index.lock().expect("disk index");
        index.note(Forget::Key(key.clone()));
        let gone = index.remove_key(key);
        let n = gone.len();
        if n > 0 {
            self.send(Op::Remove(gone.into_iter().map(|m| m.name).collect()));
        }
        n
    }

    /// Purges what `target` names on disk (hard: files removed; soft: marked stale from
    /// now, in the index at once and in the files in order). Returns the variants reached.
    pub fn purge(&self, target: &Purge, soft: bool) -> usize {
        let now = self.inner.clock.now();
        let mut index = self.inner.index.lock().expect("disk index");
        index.note(Forget::Purge {
            target: target.clone(),
            soft,
            at: now,
        });
        let keys = index.keys_for(target);
        if !soft {
            let gone: Vec<Name> = keys
                .iter()
                .flat_map(|k| index.remove_key(k))
                .map(|m| m.name)
                .collect();
            let n = gone.len();
            if n > 0 {
                self.send(Op::Remove(gone));
            }
            return n;
        }
        let mut marks = Vec::new();
        for k in &keys {
            for m in index.variants_mut(k) {
                if let Purge::Tag { tag, .. } = target {
                    if !m.tags.iter().any(|t| **t == **tag) {
                        continue;
                    }
                }
                let age = crate::cache::freshness::current_age(m.initial_age, m.response_time, now);
                let age = age.as_millis().min(u128::from(u64::MAX - 1)) as u64;
                m.purged_at_age = m.purged_at_age.min(age);
                marks.push((m.name, m.purged_at_age));
            }
        }
        let n = marks.len();
        if n > 0 {
            self.send(Op::SoftPurge(marks));
        }
        n
    }

    /// Waits until every queued operation has reached the disk.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Op::Flush(tx));
        let _ = rx.recv();
    }

    /// Stops the start-up scan, finishes queued writes and stops the writer (a clean stop).
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        if let Some(l) = self.loader.lock().expect("disk loader").take() {
            let _ = l.join();
        }
        drop(self.inner.ops.lock().expect("disk ops").take());
        if let Some(w) = self.writer.lock().expect("disk writer").take() {
            let _ = w.join();
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.close();
    }
}

/// The start-up scan: what it finds is indexed a directory at a time, checked against the
/// purges made since the start.
fn load_all(inner: &Inner) {
    let place = |found: Vec<(StoreKey, Meta)>| {
        let (mut dropped, mut softened) = (Vec::new(), Vec::new());
        let mut index = inner.index.lock().expect("disk index");
        for (key, meta) in found {
            let name = meta.name;
            match index.place_found(&key, meta) {
                Placed::Dropped => dropped.push(name),
                Placed::Softened(age) => softened.push((name, age)),
                Placed::Indexed | Placed::Superseded => {}
            }
        }
        if !dropped.is_empty() {
            inner.send(Op::Remove(dropped));
        }
        if !softened.is_empty() {
            inner.send(Op::SoftPurge(softened));
        }
    };
    let found = load::scan(&inner.root, inner.clock.now(), &inner.closing, &place);
    inner.index.lock().expect("disk index").loading = None;
    // Over the bound (the size was lowered since): make room.
    inner.send(Op::Maintain);
    tracing::info!(
        objects = found.objects,
        bytes = found.bytes,
        damaged = found.damaged,
        expired = found.expired,
        "disk cache: {} entries found again in {:.2} s",
        found.objects,
        found.took.as_secs_f64()
    );
    *inner.loaded.lock().expect("disk loaded") = Some(found);
    inner.loaded_cv.notify_all();
}

/// The ESI template of an entry read back, when its head says it is one.
pub fn reparse_esi(entry: &mut Entry, esi: bool) -> Result<(), Damage> {
    if !esi {
        return Ok(());
    }
    entry
        .prepare_esi(u64::MAX)
        .map_err(|_| Damage("an ESI body"))
}
