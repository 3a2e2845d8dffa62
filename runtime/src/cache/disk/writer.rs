//! The disk tier's one writer thread: writes, removals and soft purges applied in the order
//! they were made, then room made (least recently used out) and dead entries cleared.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use bytes::Bytes;

use super::format::{self, PURGE_AT};
use super::index::Name;
use super::{path_of, Inner};
use crate::cache::store::StoreKey;
use crate::observe::metrics;
use crate::observe::storage::DISK;

/// How often dead entries are cleared when nothing else happens.
const MAINTAIN_EVERY: Duration = Duration::from_secs(10);

/// One thing for the disk to do.
pub(super) enum Op {
    /// Write a variant's file (unless a purge or a newer write replaced it meanwhile).
    Write {
        key: StoreKey,
        name: Name,
        serial: u64,
        head: Vec<u8>,
        body: Bytes,
    },
    /// Remove files.
    Remove(Vec<Name>),
    /// Record soft purges: (file, age in ms at the purge).
    SoftPurge(Vec<(Name, u64)>),
    /// Answer once everything before has been done.
    Flush(SyncSender<()>),
    /// Make room and clear dead entries now.
    Maintain,
}

/// Applies operations until every sender is gone and the queue is empty.
pub(super) fn run(inner: &Inner, ops: Receiver<Op>) {
    let mut expired = std::time::Instant::now();
    loop {
        match ops.recv_timeout(MAINTAIN_EVERY) {
            Ok(Op::Flush(done)) => {
                let _ = done.send(());
            }
            Ok(Op::Maintain) | Err(RecvTimeoutError::Timeout) => {
                expire(inner);
                expired = std::time::Instant::now();
            }
            Ok(op) => apply(inner, op),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Under steady load the queue is never idle: dead entries go on schedule anyway.
        if expired.elapsed() >= MAINTAIN_EVERY {
            expire(inner);
            expired = std::time::Instant::now();
        }
        make_room(inner);
    }
}

fn apply(inner: &Inner, op: Op) {
    match op {
        Op::Write {
            key,
            name,
            serial,
            head,
            body,
        } => {
            // As `Disk::store` reserved it: in whole blocks.
            let bytes = super::on_disk((format::PREFIX + head.len() + body.len()) as u64);
            inner.pending.fetch_sub(bytes, Ordering::AcqRel);
            write(inner, &key, &name, serial, &head, &body);
        }
        Op::Remove(names) => {
            for n in names {
                remove(inner, &n);
            }
        }
        Op::SoftPurge(marks) => {
            for (n, age) in marks {
                if let Err(e) = mark(inner, &n, age) {
                    // Fail closed: a purge that cannot be recorded removes the file, so a
                    // restart never brings back as fresh what was purged.
                    inner.degrade("purge", &e);
                    remove(inner, &n);
                }
            }
        }
        Op::Flush(_) | Op::Maintain => unreachable!("handled by run"),
    }
}

fn write(inner: &Inner, key: &StoreKey, name: &Name, serial: u64, head: &[u8], body: &[u8]) {
    // What the index says now: gone (purged, replaced) means the write is moot; a soft
    // purge recorded meanwhile goes into the file.
    let purged = {
        let index = inner.index.lock().expect("disk index");
        match index.get(key, name) {
            Some(m) if m.serial == serial => m.purged_at_age,
            _ => return,
        }
    };
    if !inner.is_up() {
        metrics().storage.disk_writes_dropped.inc();
        forget(inner, key, name, serial);
        return;
    }
    let path = path_of(&inner.root, name);
    let tmp = inner
        .root
        .join("tmp")
        .join(format!("{}.{serial}", hex::encode(name)));
    let prefix = format::prefix_and_head(head, purged, body.len() as u64, crc32fast::hash(body));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&prefix)?;
        f.write_all(body)?;
        std::fs::rename(&tmp, &path)
    });
    match written {
        // Findable from now on (if it is still the variant's latest write).
        Ok(()) => inner
            .index
            .lock()
            .expect("disk index")
            .mark_written(key, name, serial),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            inner.degrade("write", &e);
            forget(inner, key, name, serial);
        }
    }
}

/// A write that did not happen: its index entry goes, and so does any older file of the
/// variant (it would be read in place of the response memory now holds).
fn forget(inner: &Inner, key: &StoreKey, name: &Name, serial: u64) {
    if inner
        .index
        .lock()
        .expect("disk index")
        .remove_serial(key, name, serial)
    {
        remove(inner, name);
    }
}

fn remove(inner: &Inner, name: &Name) {
    match std::fs::remove_file(path_of(&inner.root, name)) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => inner.degrade("remove", &e),
    }
}

/// Lowers the soft-purge age recorded in a file to `age` (the first purge wins).
fn mark(inner: &Inner, name: &Name, age: u64) -> std::io::Result<()> {
    let mut f = match OpenOptions::new()
        .read(true)
        .write(true)
        .open(path_of(&inner.root, name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut fixed = [0u8; format::PREFIX];
    f.read_exact(&mut fixed)?;
    let before = format::Fixed::parse(&fixed).map_or(0, |f| f.purged_at_age);
    f.seek(SeekFrom::Start(PURGE_AT))?;
    f.write_all(&format::purge_field(before.min(age)))
}

/// Over the bound: the least recently used tenth goes.
fn make_room(inner: &Inner) {
    let gone = {
        let mut index = inner.index.lock().expect("disk index");
        if index.bytes <= inner.capacity {
            return;
        }
        index.evict_to(inner.capacity / 10 * 9)
    };
    metrics()
        .storage
        .evictions
        .get_or_create(&DISK)
        .inc_by(gone.len() as u64);
    for n in &gone {
        remove(inner, n);
    }
}

fn expire(inner: &Inner) {
    let now = inner.clock.now();
    let dead = inner.index.lock().expect("disk index").expire(now);
    for n in &dead {
        remove(inner, n);
    }
}
