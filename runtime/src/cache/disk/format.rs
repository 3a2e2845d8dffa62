//! The on-disk form of one stored response: fixed fields, a head and a body, each checksummed.
//!
//! ```text
//!  0  magic "TSRDSK01"
//!  8  purged_at_age u64 (ms; u64::MAX: never purged) · crc32 of those 8 bytes
//! 20  head_len u32 · head crc32 · body_len u64 · body crc32 · crc32 of bytes 20..40
//! 44  head (postcard)   then   body
//! ```
//!
//! The soft-purge field has its own checksum and a fixed place, so a soft purge rewrites 12
//! bytes in place instead of the whole file. Every length is checked against the file's
//! size before anything is allocated: a torn or hostile file costs a read, never memory.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::cache::vary::VaryKey;
use crate::cache::{Entry, Extras};

const MAGIC: &[u8; 8] = b"TSRDSK01";
/// Bytes before the head.
pub const PREFIX: usize = 44;
/// Where the soft-purge field lives.
pub const PURGE_AT: u64 = 8;
/// A head larger than this is damage, not a response (heads are bounded far below).
pub const MAX_HEAD: u32 = 1 << 20;

/// What a stored response is besides its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Head {
    /// The namespaced primary key (site + key).
    pub key: String,
    /// The secondary key: `None` for no `Vary`, else each field and its normalised value.
    pub vary: Option<Vec<(String, Option<String>)>>,
    /// The normalised URI of the request that stored it.
    pub uri: String,
    /// Surrogate keys.
    pub tags: Vec<String>,
    /// Status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// `response_time` since the epoch, in milliseconds.
    pub response_time_ms: u64,
    /// Corrected initial age, ms.
    pub initial_age_ms: u64,
    /// Freshness lifetime, ms.
    pub ttl_ms: u64,
    /// Stale-while-revalidate window, ms.
    pub swr_ms: u64,
    /// Stale-if-error window, ms.
    pub sie_ms: u64,
    /// `no-cache` without field names.
    pub no_cache: bool,
    /// Never serve stale.
    pub must_revalidate: bool,
    /// The body is an ESI template (parsed again when read).
    pub esi: bool,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Head {
    /// The head of `entry` stored under the namespaced key `key`; `None` for what disk does
    /// not keep (`Vary: *` never matches a request).
    pub fn of(key: &str, entry: &Entry) -> Option<Head> {
        let vary = match entry.vary() {
            VaryKey::Any => None,
            VaryKey::Never => return None,
            VaryKey::Fields(f) => Some(
                f.iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                    .collect(),
            ),
        };
        Some(Head {
            key: key.to_owned(),
            vary,
            uri: entry.uri.to_string(),
            tags: entry.tags().to_vec(),
            status: entry.status.as_u16(),
            headers: entry
                .headers()
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                .collect(),
            response_time_ms: ms(entry
                .response_time
                .get()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()),
            initial_age_ms: ms(entry.initial_age.get()),
            ttl_ms: ms(entry.ttl.get()),
            swr_ms: ms(entry.swr.get()),
            sie_ms: ms(entry.sie.get()),
            no_cache: entry.no_cache,
            must_revalidate: entry.must_revalidate,
            esi: entry.esi().is_some(),
        })
    }

    /// The secondary key, checked: a field name that does not parse is damage.
    pub fn vary_key(&self) -> Result<VaryKey, Damage> {
        match &self.vary {
            None => Ok(VaryKey::Any),
            Some(f) => f
                .iter()
                .map(|(n, v)| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map(|n| (n, v.clone()))
                        .map_err(|_| Damage("a Vary field name"))
                })
                .collect::<Result<_, _>>()
                .map(|f| VaryKey::Fields(Box::new(f))),
        }
    }

    /// `response_time` as a time.
    pub fn response_time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.response_time_ms)
    }

    /// How long after `response_time` the response may still be of use (as the store
    /// reckons it: freshness, the longer stale window, and the keep time).
    pub fn useful_until(&self) -> SystemTime {
        let life = Duration::from_millis(
            self.ttl_ms
                .saturating_add(self.swr_ms.max(self.sie_ms))
                .saturating_add(ms(crate::cache::store::KEEP)),
        )
        .saturating_sub(Duration::from_millis(self.initial_age_ms));
        self.response_time() + life
    }

    /// The entry this head makes, without its body yet (see `Entry::with_body_read`; its
    /// ESI template is parsed by the caller).
    pub fn entry(&self, purged_at_age: u64) -> Result<Entry, Damage> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in &self.headers {
            let n = HeaderName::from_bytes(n.as_bytes()).map_err(|_| Damage("a field name"))?;
            let v = HeaderValue::from_bytes(v).map_err(|_| Damage("a field value"))?;
            headers.append(n, v);
        }
        Ok(Entry {
            status: StatusCode::from_u16(self.status).map_err(|_| Damage("the status"))?,
            payload: crate::cache::Payload::head(&headers),
            response_time: self.response_time().into(),
            initial_age: Duration::from_millis(self.initial_age_ms).into(),
            ttl: Duration::from_millis(self.ttl_ms).into(),
            swr: Duration::from_millis(self.swr_ms).into(),
            sie: Duration::from_millis(self.sie_ms).into(),
            no_cache: self.no_cache,
            must_revalidate: self.must_revalidate,
            extras: Extras::boxed(self.tags.clone().into(), self.vary_key()?, None),
            uri: self.uri.as_str().into(),
            purged_at_age: purged_at_age.into(),
            encoded: Default::default(),
        })
    }
}

/// Why a file was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged entry: {0}")]
pub struct Damage(pub &'static str);

/// The fixed fields of a file, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    /// The soft purge recorded (ms of age; `u64::MAX`: none).
    pub purged_at_age: u64,
    /// Head length.
    pub head_len: u32,
    /// Head checksum.
    pub head_crc: u32,
    /// Body length.
    pub body_len: u64,
    /// Body checksum.
    pub body_crc: u32,
}

impl Fixed {
    /// Total file length these fields describe.
    pub fn file_len(&self) -> u64 {
        // Saturating: a hostile body length must not wrap into a plausible one.
        (PREFIX as u64 + u64::from(self.head_len)).saturating_add(self.body_len)
    }

    /// Reads and checks the first [`PREFIX`] bytes.
    pub fn parse(b: &[u8]) -> Result<Fixed, Damage> {
        if b.len() < PREFIX || &b[..8] != MAGIC {
            return Err(Damage("not an entry file"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if crc32fast::hash(&b[20..40]) != u32_at(40) {
            return Err(Damage("the fixed fields' checksum"));
        }
        // A purge field that does not check out is read as "purged at age 0": stale, never
        // fresher than it was.
        let purged_at_age = if crc32fast::hash(&b[8..16]) == u32_at(16) {
            u64_at(8)
        } else {
            0
        };
        let head_len = u32_at(20);
        if head_len > MAX_HEAD {
            return Err(Damage("a head length"));
        }
        Ok(Fixed {
            purged_at_age,
            head_len,
            head_crc: u32_at(24),
            body_len: u64_at(28),
            body_crc: u32_at(36),
        })
    }
}

/// The soft-purge field's 12 bytes for `age_ms`.
pub fn purge_field(age_ms: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&age_ms.to_le_bytes());
    let crc = crc32fast::hash(&age_ms.to_le_bytes());
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Everything before the body, for a head and a body of `body_len` bytes with `body_crc`.
pub fn prefix_and_head(head: &[u8], purged_at_age: u64, body_len: u64, body_crc: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(PREFIX + head.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&purge_field(purged_at_age));
    b.extend_from_slice(&(head.len() as u32).to_le_bytes());
    b.extend_from_slice(&crc32fast::hash(head).to_le_bytes());
    b.extend_from_slice(&body_len.to_le_bytes());
    b.extend_from_slice(&body_crc.to_le_bytes());
    let fixed = crc32fast::hash(&b[20..40]);
    b.extend_from_slice(&fixed.to_le_bytes());
    b.extend_from_slice(head);
    b
}

/// The head's bytes.
pub fn encode_head(head: &Head) -> Vec<u8> {
    postcard::to_allocvec(head).expect("a head always serialises")
}

/// A head from its bytes, checked against its checksum.
pub fn decode_head(bytes: &[u8], fixed: &Fixed) -> Result<Head, Damage> {
    if bytes.len() != fixed.head_len as usize || crc32fast::hash(bytes) != fixed.head_crc {
        return Err(Damage("the head's checksum"));
    }
    postcard::from_bytes(bytes).map_err(|_| Damage("the head's encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            key: "site\u{1f}example.com/p".into(),
            vary: Some(vec![("accept-language".into(), Some("fr".into()))]),
            uri: "site\u{1f}example.com/p".into(),
            tags: vec!["t1".into()],
            status: 200,
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            response_time_ms: 1_700_000_000_000,
            initial_age_ms: 0,
            ttl_ms: 60_000,
            swr_ms: 0,
            sie_ms: 0,
            no_cache: false,
            must_revalidate: false,
            esi: false,
        }
    }

    fn file(body: &[u8]) -> Vec<u8> {
        let h = encode_head(&head());
        let mut f = prefix_and_head(&h, u64::MAX, body.len() as u64, crc32fast::hash(body));
        f.extend_from_slice(body);
        f
    }

    fn read(f: &[u8]) -> Result<(Head, Vec<u8>), Damage> {
        let fixed = Fixed::parse(f)?;
        if f.len() as u64 != fixed.file_len() {
            return Err(Damage("length"));
        }
        let end = PREFIX + fixed.head_len as usize;
        let h = decode_head(&f[PREFIX..end], &fixed)?;
        if crc32fast::hash(&f[end..]) != fixed.body_crc {
            return Err(Damage("body"));
        }
        Ok((h, f[end..].to_vec()))
    }

    #[test]
    fn a_file_reads_back_and_any_flipped_bit_is_caught() {
        let f = file(b"hello world");
        let (h, body) = read(&f).unwrap();
        assert_eq!(h, head());
        assert_eq!(body, b"hello world");
        for i in (0..f.len()).filter(|i| !(8..20).contains(i)) {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(read(&g).is_err(), "bit {bit} of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn a_damaged_purge_field_reads_as_purged_long_ago() {
        let mut f = file(b"x");
        assert_eq!(Fixed::parse(&f).unwrap().purged_at_age, u64::MAX);
        f[PURGE_AT as usize..PURGE_AT as usize + 12].copy_from_slice(&purge_field(5_000));
        assert_eq!(Fixed::parse(&f).unwrap().purged_at_age, 5_000);
        f[9] ^= 0x40;
        assert_eq!(Fixed::parse(&f).unwrap().purged_at_age, 0);
    }

    #[test]
    fn truncation_and_absurd_lengths_are_refused_before_allocating() {
        let f = file(b"hello");
        assert!(read(&f[..f.len() - 1]).is_err());
        assert!(Fixed::parse(&f[..10]).is_err());
        let mut g = prefix_and_head(&[0; 4], u64::MAX, 0, 0);
        g[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let fixed = crc32fast::hash(&g[20..40]);
        g[40..44].copy_from_slice(&fixed.to_le_bytes());
        assert_eq!(Fixed::parse(&g), Err(Damage("a head length")));
        // A body length that would wrap the file's length around is no way past the check.
        let mut h = prefix_and_head(&[0; 4], u64::MAX, 0, 0);
        h[28..36].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
        let fixed = crc32fast::hash(&h[20..40]);
        h[40..44].copy_from_slice(&fixed.to_le_bytes());
        assert_eq!(Fixed::parse(&h).unwrap().file_len(), u64::MAX);
    }
}
