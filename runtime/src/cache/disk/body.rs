//! A large body streamed from its file on a hit, never read whole into memory: chunks are
//! read as the client takes them, and the checksum is verified before the last chunk goes
//! out, so a damaged body never reaches a client complete (the response is cut instead,
//! and the entry dropped).

use std::io::ErrorKind;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncReadExt;

use crate::origin::{BoxError, OutBody};

/// Bytes read at a time.
const CHUNK: usize = 256 << 10;

/// What to do when the body turns out damaged.
pub type OnDamage = Box<dyn FnOnce() + Send + Sync>;

/// A stored body still on disk.
pub struct DiskBody {
    file: std::fs::File,
    len: u64,
    crc: u32,
    on_damage: OnDamage,
}

impl std::fmt::Debug for DiskBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBody").field("len", &self.len).finish()
    }
}

struct Reading {
    file: tokio::fs::File,
    left: u64,
    hasher: crc32fast::Hasher,
    crc: u32,
    on_damage: Option<OnDamage>,
}

impl Reading {
    fn damaged(&mut self, why: &str) -> BoxError {
        if let Some(f) = self.on_damage.take() {
            f();
        }
        format!("disk cache: {why}").into()
    }
}

impl DiskBody {
    /// `len` bytes of `file` from where it stands, whose CRC-32 must be `crc`.
    pub(super) fn new(file: std::fs::File, len: u64, crc: u32, on_damage: OnDamage) -> DiskBody {
        DiskBody {
            file,
            len,
            crc,
            on_damage,
        }
    }

    /// The body's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The response body that reads it.
    pub fn into_body(self) -> OutBody {
        let start = Reading {
            file: tokio::fs::File::from_std(self.file),
            left: self.len,
            hasher: crc32fast::Hasher::new(),
            crc: self.crc,
            on_damage: Some(self.on_damage),
        };
        let chunks = futures_util::stream::unfold(Some(start), |state| async move {
            let mut s = state?;
            if s.left == 0 {
                return None;
            }
            let n = s.left.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            if let Err(e) = s.file.read_exact(&mut buf).await {
                let err = if e.kind() == ErrorKind::UnexpectedEof {
                    s.damaged("a truncated body")
                } else {
                    Box::new(e) as BoxError
                };
                return Some((Err(err), None));
            }
            s.hasher.update(&buf);
            s.left -= n as u64;
            if s.left == 0 && s.hasher.clone().finalize() != s.crc {
                return Some((Err(s.damaged("the body's checksum")), None));
            }
            Some((Ok(Frame::data(Bytes::from(buf))), Some(s)))
        });
        StreamBody::new(chunks).boxed()
    }
}
