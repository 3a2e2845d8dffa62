//! A stored response: its status, fields, body, lifetimes, tags and what it weighs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;

use super::fields::Fields;
use super::payload::Payload;
use super::store::KEEP;
use super::vary::VaryKey;

/// Bytes charged per entry for the bookkeeping around it: what `bench/memory.rs` measures
/// beyond body, head and key text for an object filled over HTTP under its default key
/// (`http` mode: 279 with a million objects, 280 with 300,000; 263 for entries built by
/// hand), so that `max_size` bounds resident memory rather than payload alone.
const ENTRY_OVERHEAD: usize = 280;
/// Bytes charged besides for an entry in the URI index (a script-made key's): what the
/// memory bench's `keyed` mode measures beyond the default key's cost, its text aside (120).
const INDEXED_OVERHEAD: usize = 120;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Status code.
    pub status: StatusCode,
    /// Header fields as stored (hop-by-hop and per-client ones removed), compactly, and
    /// the complete body: read through [`Entry::headers`] and [`Entry::body`].
    pub payload: Payload,
    /// When the response was received (`response_time`, RFC 9111 §4.2.3).
    pub response_time: Stamp,
    /// Corrected initial age at `response_time`.
    pub initial_age: Span,
    /// Freshness lifetime.
    pub ttl: Secs,
    /// Stale-while-revalidate window after `ttl`.
    pub swr: Secs,
    /// Stale-if-error window after `ttl`.
    pub sie: Secs,
    /// Always revalidate before reuse (`no-cache` without field names).
    pub no_cache: bool,
    /// Never serve stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`, or no explicit
    /// permission to be shared beyond its lifetime: see `admit`).
    pub must_revalidate: bool,
    /// Tags, `Vary` data and ESI template, when it has any (most entries have none).
    pub extras: Option<Box<Extras>>,
    /// The normalised URI (site + default key) of the request that stored it.
    pub uri: Arc<str>,
    /// Set by a soft purge: the entry's age then, in milliseconds (`u64::MAX`: never
    /// purged). Its freshness ends there, so serve-stale windows count from the purge.
    pub purged_at_age: AtomicU64,
    /// Compressed copies of the body, made by the first delivery that needs each.
    pub encoded: once_cell::race::OnceBox<Encoded>,
}

/// A span of time in 8 bytes (whole nanoseconds, up to 584 years; a `Duration` takes 16):
/// an entry's corrected initial age, which counts the response's delay in transit and so is
/// not whole seconds. Ages are capped far below (2^31 seconds, RFC 9111 §1.2.2), so none is
/// ever rounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(u64);

impl Span {
    /// The span as a `Duration`.
    pub fn get(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

impl From<Duration> for Span {
    fn from(d: Duration) -> Span {
        Span(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A lifetime in whole seconds, in 4 bytes (a `Duration` takes 16). Freshness lifetimes
/// and stale windows come in whole seconds: delta-seconds (RFC 9111 §1.2.2, RFC 5861), the
/// guest contract's `u32`s, seconds in the config; a heuristic lifetime is cut to whole
/// seconds where it is computed. Anything finer is dropped, which only shortens a lifetime;
/// anything longer than `u32::MAX` seconds (136 years, far past the 2^31 cap) saturates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(u32);

impl Secs {
    /// The lifetime as a `Duration`.
    pub fn get(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }

    /// The lifetime as a count of seconds.
    pub fn count(self) -> u32 {
        self.0
    }
}

impl From<Duration> for Secs {
    fn from(d: Duration) -> Secs {
        Secs(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }
}

/// A point in time in 8 bytes (nanoseconds since the Unix epoch, until the year 2554; a
/// `SystemTime` takes 16). Times before the epoch read as the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// The point as a `SystemTime`.
    pub fn get(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

impl From<SystemTime> for Stamp {
    fn from(t: SystemTime) -> Stamp {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        Stamp(Span::from(since).0)
    }
}

/// What most stored responses do without, boxed together so that an entry without any of
/// it pays one word, not 40 bytes.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Surrogate keys for purge by tag.
    pub tags: Box<[String]>,
    /// Secondary key.
    pub vary: VaryKey,
    /// The body parsed as an ESI page, when it is one (parsed once, when stored).
    pub esi: Option<Arc<crate::html::esi::Template>>,
}

impl Extras {
    /// The box for an entry with these, or none when they are all empty.
    pub fn boxed(
        tags: Box<[String]>,
        vary: VaryKey,
        esi: Option<Arc<crate::html::esi::Template>>,
    ) -> Option<Box<Extras>> {
        let none = tags.is_empty() && vary == VaryKey::Any && esi.is_none();
        (!none).then(|| Box::new(Extras { tags, vary, esi }))
    }
}

/// The buffer that starts an entry's payload, lent out as `Bytes`: slices of it keep the
/// entry alive, not a handle of the buffer's own.
struct Lent(Arc<Entry>);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.0.payload.front()
    }
}

/// Compressed copies of a stored body (compression at delivery encodes a hit once, not
/// on every request). Their room is reserved in the entry's weight when it is stored.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The body in gzip.
    pub gzip: std::sync::OnceLock<Bytes>,
    /// The body in br.
    pub br: std::sync::OnceLock<Bytes>,
    /// The body in zstd.
    pub zstd: std::sync::OnceLock<Bytes>,
}

impl Encoded {
    /// The copy in `coding`, if it is one that is kept.
    pub fn cell(&self, coding: crate::encoding::Coding) -> Option<&std::sync::OnceLock<Bytes>> {
        use crate::encoding::Coding;
        match coding {
            Coding::Gzip => Some(&self.gzip),
            Coding::Brotli => Some(&self.br),
            Coding::Zstd => Some(&self.zstd),
            Coding::Identity | Coding::Deflate => None,
        }
    }
}

impl Entry {
    /// A response received at `response_time`, fresh for `ttl`, with nothing else to it:
    /// no body yet (see [`Entry::with_body_of`]), stale windows, tags or `Vary`.
    pub fn new(
        status: StatusCode,
        headers: &http::HeaderMap,
        uri: Arc<str>,
        response_time: SystemTime,
        ttl: Duration,
    ) -> Entry {
        Entry {
            status,
            payload: Payload::head(headers),
            response_time: response_time.into(),
            initial_age: Span::default(),
            ttl: ttl.into(),
            swr: Secs::default(),
            sie: Secs::default(),
            no_cache: false,
            must_revalidate: false,
            extras: None,
            uri,
            purged_at_age: AtomicU64::new(u64::MAX),
            encoded: Default::default(),
        }
    }

    /// Surrogate keys for purge by tag.
    pub fn tags(&self) -> &[String] {
        self.extras.as_ref().map_or(&[], |x| &x.tags)
    }

    /// Secondary key.
    pub fn vary(&self) -> &VaryKey {
        static ANY: VaryKey = VaryKey::Any;
        self.extras.as_ref().map_or(&ANY, |x| &x.vary)
    }

    /// The body parsed as an ESI page, when it is one.
    pub fn esi(&self) -> Option<&Arc<crate::html::esi::Template>> {
        self.extras.as_ref().and_then(|x| x.esi.as_ref())
    }

    /// Replaces the tags, `Vary` data and ESI template (before the entry is shared).
    pub fn set_extras(
        &mut self,
        tags: Box<[String]>,
        vary: VaryKey,
        esi: Option<Arc<crate::html::esi::Template>>,
    ) {
        self.extras = Extras::boxed(tags, vary, esi);
    }

    /// Sets the ESI template, keeping tags and `Vary` data.
    pub fn set_esi(&mut self, esi: Option<Arc<crate::html::esi::Template>>) {
        let (tags, vary) = match self.extras.take() {
            Some(x) => (x.tags, x.vary),
            None => (Box::default(), VaryKey::Any),
        };
        self.set_extras(tags, vary, esi);
    }

    /// A copy of everything but the body and its compressed copies: a fill's head, for
    /// requests that read the body as it arrives.
    pub fn clone_head(&self) -> Entry {
        Entry {
            status: self.status,
            payload: self.payload.with_body_of(&[]),
            response_time: self.response_time,
            initial_age: self.initial_age,
            ttl: self.ttl,
            swr: self.swr,
            sie: self.sie,
            no_cache: self.no_cache,
            must_revalidate: self.must_revalidate,
            extras: self.extras.clone(),
            uri: self.uri.clone(),
            purged_at_age: AtomicU64::new(self.purged_at_age.load(Ordering::Relaxed)),
            encoded: Default::default(),
        }
    }

    /// This entry with a freshly fetched body (`pieces`, as they arrived), kept with the
    /// head's fields in one buffer of exactly their size (see [`Payload::with_body_of`]).
    pub fn with_body_of(self, pieces: &[Bytes]) -> Entry {
        debug_assert!(self.body().is_empty(), "a body would be replaced");
        Entry {
            payload: self.payload.with_body_of(pieces),
            ..self
        }
    }

    /// This entry with a body of `len` bytes that `read` writes in place behind the head
    /// (see [`Payload::with_body_read`]).
    pub fn with_body_read<E>(
        self,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Entry, E> {
        debug_assert!(self.body().is_empty(), "a body would be replaced");
        Ok(Entry {
            payload: self.payload.with_body_read(len, read)?,
            ..self
        })
    }

    /// This entry with `body` as it is, shared with whatever else holds it (a refreshed
    /// entry's, a simulation's zeros).
    pub fn with_body(self, body: Bytes) -> Entry {
        debug_assert!(self.body().is_empty(), "a body would be replaced");
        Entry {
            payload: self.payload.with_body(body),
            ..self
        }
    }

    /// The header fields, read in place.
    pub fn headers(&self) -> Fields<'_> {
        self.payload.fields()
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.payload.body()
    }

    /// The header fields as a map (values share the entry's memory).
    pub fn head_map(&self) -> http::HeaderMap {
        self.payload.head_map()
    }

    /// Head and body to send: slices of the stored buffer lent through this entry, so
    /// that a hit neither copies it nor makes it a shared buffer (a 32-byte handle per
    /// object, kept for as long as the object is).
    pub fn parts(self: &Arc<Self>) -> (http::HeaderMap, Bytes) {
        self.payload.split_lent(&self.lend())
    }

    /// The body to send (see [`Entry::parts`]).
    pub fn body_to_send(self: &Arc<Self>) -> Bytes {
        self.payload.body_lent(|| self.lend())
    }

    /// The stored buffer, lent through this entry.
    fn lend(self: &Arc<Self>) -> Bytes {
        Bytes::from_owner(Lent(self.clone()))
    }

    /// Parses the body as an ESI page (once, when it is stored: hits only stitch). A page
    /// the origin compressed is kept decoded, its head saying so.
    pub fn prepare_esi(&mut self, limit: u64) -> Result<(), crate::encoding::CodingError> {
        let mut head = self.headers().to_map();
        let body = self.payload.body_shared();
        let (decoded, template) = crate::html::esi::prepare(body.clone(), &mut head, limit)?;
        // An identity-coded page comes back as it went (head and body): the payload stays
        // joined, and the template's slices share it.
        if decoded.as_ptr() != body.as_ptr() || decoded.len() != body.len() {
            self.payload = Payload::head(&head).with_body(decoded);
        }
        self.set_esi(Some(Arc::new(template)));
        Ok(())
    }

    /// Current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        super::freshness::current_age(self.initial_age.get(), self.response_time.get(), now)
    }

    /// Remaining freshness in whole seconds; negative once stale.
    pub fn remaining_ttl(&self, now: SystemTime) -> i64 {
        self.effective_ttl().as_secs() as i64 - self.age(now).as_secs() as i64
    }

    /// Freshness lifetime, cut short at the age it had when soft-purged.
    pub fn effective_ttl(&self) -> Duration {
        match self.purged_at_age.load(Ordering::Relaxed) {
            u64::MAX => self.ttl.get(),
            ms => self.ttl.get().min(Duration::from_millis(ms)),
        }
    }

    /// Marks the entry stale from `now` on (a soft purge). The first purge wins: a later
    /// one never lends it more freshness.
    pub fn soft_purge(&self, now: SystemTime) {
        let age = self.age(now).as_millis().min(u128::from(u64::MAX - 1)) as u64;
        self.purged_at_age.fetch_min(age, Ordering::Relaxed);
    }

    /// How long after `response_time` the entry may still be of use.
    pub(super) fn useful_for(&self) -> Duration {
        (self.ttl.get() + self.swr.get().max(self.sie.get()) + KEEP)
            .saturating_sub(self.initial_age.get())
    }

    /// Whether this entry's URI is `key`'s own text (stored under the default key).
    pub(super) fn named_by(&self, key: &super::StoreKey) -> bool {
        *self.uri == *key.as_str()
    }

    /// Whether the entry may still be of use at `now` (served, or revalidated).
    pub(super) fn useful_at(&self, now: SystemTime) -> bool {
        self.response_time.get() + self.useful_for() > now
    }

    /// Room for the compressed copies a delivery may add: three quarters of the body (text
    /// compresses to a quarter or less in each of three codings), for bodies compression
    /// at delivery would encode.
    fn encoded_room(&self) -> usize {
        let compressible = self.status == StatusCode::OK && self.esi().is_none() && {
            // The two fields that decide it, not the whole head as a map.
            let mut head = http::HeaderMap::new();
            for name in [http::header::CONTENT_ENCODING, http::header::CONTENT_TYPE] {
                for v in self.headers().get_all(&name) {
                    head.append(name.clone(), v);
                }
            }
            crate::encoding::compressible_identity(&head)
        };
        if compressible {
            self.body().len() / 4 * 3
        } else {
            0
        }
    }

    /// [`Entry::weight`] stored under `key`: its URI costs nothing more when it is the key's
    /// own text, its text and an index entry otherwise.
    pub(super) fn weight_under(&self, key: &super::StoreKey) -> usize {
        let uri = if self.named_by(key) {
            0
        } else {
            self.uri.len() + INDEXED_OVERHEAD
        };
        self.weight() + uri
    }

    /// Bytes this entry costs wherever it is stored: body, head, tags, `Vary` data, ESI
    /// template, room for compressed copies, bookkeeping.
    pub(super) fn weight(&self) -> usize {
        let tags: usize = self.tags().iter().map(|t| t.len() + 24).sum();
        let esi = self.esi().map_or(0, |t| t.weight());
        // The box itself, with malloc's header, when there is one.
        let extras = self
            .extras
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<Extras>() + 16);
        self.payload.size()
            + tags
            + self.vary().weight()
            + esi
            + extras
            + self.encoded_room()
            + ENTRY_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 200 with `head`, fresh for a minute, stored for `uri`.
    fn fresh(head: &http::HeaderMap, uri: &str) -> Entry {
        Entry::new(
            StatusCode::OK,
            head,
            uri.into(),
            SystemTime::now(),
            Duration::from_secs(60),
        )
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_stays_within_its_memory_budget() {
        // A million small objects pay for every word here: 104 bytes puts the entry with
        // its reference counts in a 128-byte allocation (it was 272, then 176). Grow it
        // knowingly.
        let size = std::mem::size_of::<Entry>();
        assert!(size <= 104, "{size}");
        assert_eq!(std::mem::size_of::<VaryKey>(), 16);
    }

    #[test]
    fn extras_are_boxed_only_when_there_are_some_and_each_setter_keeps_the_others() {
        let mut e = fresh(&http::HeaderMap::new(), "u");
        assert!(e.extras.is_none());
        assert!(Extras::boxed(Box::default(), VaryKey::Any, None).is_none());
        assert_eq!((e.tags(), e.vary()), (&[][..], &VaryKey::Any));
        assert!(e.esi().is_none());
        e.set_extras(["t".to_string()].into(), VaryKey::Never, None);
        let template = crate::html::esi::prepare(
            Bytes::from_static(b"<p>x</p>"),
            &mut http::HeaderMap::new(),
            1 << 20,
        )
        .unwrap()
        .1;
        e.set_esi(Some(Arc::new(template)));
        assert_eq!(
            (e.tags(), e.vary()),
            (&["t".to_string()][..], &VaryKey::Never)
        );
        assert!(e.esi().is_some());
        e.set_esi(None);
        assert_eq!(e.tags(), &["t".to_string()][..]);
        assert!(e.esi().is_none());
        e.set_extras(Box::default(), VaryKey::Any, None);
        assert!(e.extras.is_none());
    }

    #[test]
    fn a_filled_body_shares_one_exact_buffer_with_the_head_and_no_read_buffer() {
        let mut head = http::HeaderMap::new();
        head.insert("etag", http::HeaderValue::from_static("\"v1\""));
        head.insert("content-type", http::HeaderValue::from_static("text/plain"));
        // Pieces as hyper hands them out: slices of one larger read buffer.
        let buffer = Bytes::from(vec![b'x'; 8192]);
        let pieces = [buffer.slice(100..150), buffer.slice(200..230)];
        let e = fresh(&head, "a\u{1f}h/p").with_body_of(&pieces);
        assert_eq!(e.body(), [&pieces[0][..], &pieces[1][..]].concat());
        assert_eq!(e.headers().to_map(), head);
        // The body follows the head in one buffer of exactly their size...
        assert!(e.payload.is_joined());
        let all = e.payload.front();
        assert_eq!(all.len(), e.headers().block_len() + 80);
        assert_eq!(all[e.headers().block_len()..].as_ptr(), e.body().as_ptr());
        // ...which is not the read buffer.
        let inside = buffer.as_ptr_range();
        assert!(!inside.contains(&e.body().as_ptr()));
        drop(pieces);
        assert!(
            buffer.is_unique(),
            "the stored entry holds no slice of the read buffer"
        );
    }

    #[test]
    fn a_hit_borrows_the_buffer_through_the_entry_and_never_shares_it() {
        let mut head = http::HeaderMap::new();
        head.insert("etag", http::HeaderValue::from_static("\"v1\""));
        head.append("x-two", http::HeaderValue::from_static("a"));
        head.append("x-two", http::HeaderValue::from_static("b"));
        let e = Arc::new(fresh(&head, "u").with_body_of(&[Bytes::from_static(b"hello")]));
        let (map, body) = e.parts();
        assert_eq!((&map, &body[..]), (&head, &b"hello"[..]));
        // The values and the body are slices of the stored buffer, not copies.
        let stored = e.payload.front().as_ptr_range();
        assert!(stored.contains(&body.as_ptr()));
        assert!(stored.contains(&map["etag"].as_bytes().as_ptr()));
        // They keep the entry alive, not a second handle to its buffer (a clone of it would
        // turn it into a shared buffer, with a 32-byte handle for as long as it is stored).
        assert_eq!(Arc::strong_count(&e), 2);
        let sent = e.body_to_send();
        drop((map, body));
        assert_eq!(Arc::strong_count(&e), 2);
        drop(sent);
        assert_eq!(Arc::strong_count(&e), 1);
    }

    #[test]
    fn a_body_read_in_place_follows_the_head_and_a_failed_read_is_the_error() {
        let mut head = http::HeaderMap::new();
        head.insert("etag", http::HeaderValue::from_static("\"v1\""));
        let new = || fresh(&head, "u");
        let e = new()
            .with_body_read(5, |b| {
                b.copy_from_slice(b"hello");
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(
            (e.body(), e.headers().to_map()),
            (&b"hello"[..], head.clone())
        );
        assert!(e.payload.is_joined());
        assert_eq!(e.payload.size(), e.headers().block_len() + 5);
        assert_eq!(
            new().with_body_read(5, |_| Err("short")).err(),
            Some("short")
        );
    }

    #[test]
    fn a_body_kept_apart_is_shared_and_still_read_and_sent_whole() {
        let zeros = Bytes::from(vec![0u8; 4096]);
        let e = Arc::new(fresh(&http::HeaderMap::new(), "u").with_body(zeros.slice(..100)));
        assert!(!e.payload.is_joined());
        assert_eq!(e.body().as_ptr(), zeros.as_ptr());
        let (map, body) = e.parts();
        assert!(map.is_empty());
        assert_eq!(body.as_ptr(), zeros.as_ptr());
        assert_eq!(e.body_to_send().len(), 100);
    }

    #[test]
    fn spans_and_stamps_keep_every_nanosecond_and_saturate_beyond_range() {
        let d = Duration::new(2_147_483_648, 123_456_789);
        assert_eq!(Span::from(d).get(), d);
        assert_eq!(
            Span::from(Duration::MAX).get(),
            Duration::from_nanos(u64::MAX)
        );
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 987_654_321);
        assert_eq!(Stamp::from(t).get(), t);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Stamp::from(before).get(), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn lifetimes_keep_whole_seconds_drop_fractions_and_saturate() {
        assert_eq!(
            Secs::from(Duration::from_secs(2_147_483_648))
                .get()
                .as_secs(),
            2_147_483_648
        );
        // A fraction only ever shortens a lifetime.
        assert_eq!(
            Secs::from(Duration::from_millis(1_999)).get(),
            Duration::from_secs(1)
        );
        assert_eq!(
            Secs::from(Duration::MAX).get(),
            Duration::from_secs(u64::from(u32::MAX))
        );
    }
}
