//! Where a stored response's head (its field block) and body live: for a fill, one
//! allocation of exactly their size that is never split into two shared handles.
//!
//! Two `Bytes` into one buffer (head and body) cost 64 bytes in the entry and turn the
//! buffer into a shared one, with a 32-byte handle allocated beside it: 96 bytes per
//! object, more than a small object's body. A payload is one `Bytes` (32), whose buffer
//! stays solely owned: a hit borrows it through the entry (see `Entry::parts`) instead of
//! cloning it.

use bytes::Bytes;
use http::HeaderMap;

use super::fields::{self, Fields};

/// A stored response's field block and body. Not `Clone`: a clone of a joined buffer's
/// handle is what makes it a shared one.
pub struct Payload(Repr);

enum Repr {
    /// The block, then the body, in one buffer (a fill's, a head's before its body).
    Joined(Bytes),
    /// The block and a body that is not this payload's alone: one a revalidated entry
    /// shares with the entry it refreshed, an ESI page's decoded one its template
    /// slices, a simulation's zeros that cost no memory.
    Apart(Box<[Bytes; 2]>),
}

impl Payload {
    /// `head` with no body yet.
    pub fn head(head: &HeaderMap) -> Payload {
        join(fields::encode(head), &[])
    }

    /// This payload's head and the body `pieces` make, copied into one buffer of exactly
    /// their size: a fill's pieces are slices of hyper's read buffers (8 KiB or more, other
    /// responses' bytes in them), which a stored slice would keep alive as long as the
    /// object stays.
    pub fn with_body_of(&self, pieces: &[Bytes]) -> Payload {
        join(self.block_with_room(total(pieces)), pieces)
    }

    /// This payload's head and a body of `len` bytes that `read` writes in place, in one
    /// exact buffer (a body read back from disk: no second copy).
    pub fn with_body_read<E>(
        &self,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Payload, E> {
        let mut all = self.block_with_room(len);
        let start = all.len();
        all.resize(start + len, 0);
        read(&mut all[start..])?;
        Ok(join(all, &[]))
    }

    /// A copy of the block in a buffer with room for exactly `len` more bytes.
    fn block_with_room(&self, len: usize) -> Vec<u8> {
        let block = self.fields().block();
        let mut all = Vec::with_capacity(block.len() + len);
        all.extend_from_slice(block);
        all
    }

    /// This payload's head, which has no body yet, with `body` as it is: shared, not copied.
    pub fn with_body(self, body: Bytes) -> Payload {
        let head = match self.0 {
            Repr::Joined(all) => {
                debug_assert_eq!(Fields::split_front(&all).0.block_len(), all.len());
                all
            }
            Repr::Apart(parts) => {
                let [head, _] = *parts;
                head
            }
        };
        Payload(Repr::Apart(Box::new([head, body])))
    }

    /// The header fields.
    pub fn fields(&self) -> Fields<'_> {
        Fields::split_front(self.front()).0
    }

    /// The buffer that starts with the block: the joined one, or the block's own.
    pub fn front(&self) -> &Bytes {
        match &self.0 {
            Repr::Joined(all) => all,
            Repr::Apart(parts) => &parts[0],
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match &self.0 {
            Repr::Joined(all) => Fields::split_front(all).1,
            Repr::Apart(parts) => &parts[1],
        }
    }

    /// The fields as a map whose values share this payload's memory (which makes it a
    /// shared buffer: for heads not yet stored, or stored apart from their body).
    pub fn head_map(&self) -> HeaderMap {
        self.fields().to_map_in(self.front())
    }

    /// Map and body for `lent`, a loan of [`Payload::front`]'s bytes: slices of it (and the
    /// body kept apart, when it is), nothing copied.
    pub fn split_lent(&self, lent: &Bytes) -> (HeaderMap, Bytes) {
        let body = self.body_lent(|| lent.clone());
        (Fields::split_front(lent).0.to_map_in(lent), body)
    }

    /// The body as a handle of its own: a slice of `lend()` (a loan of
    /// [`Payload::front`]'s bytes, asked for only then) when it follows the block, the
    /// body kept apart otherwise.
    pub fn body_lent(&self, lend: impl FnOnce() -> Bytes) -> Bytes {
        match &self.0 {
            Repr::Joined(_) => lend().slice(self.fields().block_len()..),
            Repr::Apart(parts) => parts[1].clone(),
        }
    }

    /// The body as a handle of its own, sharing this payload's memory (for keeping it
    /// elsewhere: a joined buffer becomes a shared one, with its 32-byte handle).
    pub fn body_shared(&self) -> Bytes {
        match &self.0 {
            Repr::Joined(all) => all.slice(self.fields().block_len()..),
            Repr::Apart(parts) => parts[1].clone(),
        }
    }

    /// Bytes of the block and the body as stored, and of the box that keeps them apart
    /// when there is one, with malloc's header (what the weight counts).
    pub fn size(&self) -> usize {
        match &self.0 {
            Repr::Joined(all) => all.len(),
            Repr::Apart(parts) => {
                parts[0].len() + parts[1].len() + std::mem::size_of::<[Bytes; 2]>() + 16
            }
        }
    }

    /// Whether block and body share one buffer.
    pub fn is_joined(&self) -> bool {
        matches!(self.0, Repr::Joined(_))
    }
}

fn total(pieces: &[Bytes]) -> usize {
    pieces.iter().map(Bytes::len).sum()
}

/// `all` (a block, with room for exactly `pieces`) and `pieces` as one joined payload. The
/// room must be exact: a `Vec` with spare capacity becomes a shared buffer, with a handle
/// allocated beside it, as it turns into `Bytes`.
fn join(mut all: Vec<u8>, pieces: &[Bytes]) -> Payload {
    for p in pieces {
        all.extend_from_slice(p);
    }
    debug_assert_eq!(all.len(), all.capacity());
    Payload(Repr::Joined(Bytes::from(all)))
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("fields", &self.fields())
            .field("body_len", &self.body().len())
            .field("joined", &self.is_joined())
            .finish()
    }
}
