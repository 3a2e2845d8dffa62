//! Stored header fields: one compact block per stored response instead of an `HeaderMap`.
//!
//! An `http::HeaderMap` costs about 100 bytes of buckets per field plus its index and one
//! allocation per value; a million small objects paid more for their maps than for their
//! bodies. A stored response's fields never change (a revalidation stores a new entry), so
//! they are kept as text: every name and value back to back in one buffer, after a table
//! of where each ends. A hit turns them back into the `HeaderMap` it sends; values are
//! slices of the block, not copies.

use bytes::{BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The width of the table's numbers for a head of `count` fields and `text` bytes of names
/// and values: the fewest bytes that hold both (every name has a byte, so the text bounds
/// the count). A small API response's head, up to 255 bytes, pays two bytes per field;
/// nearly every other head four; a head past 64 KiB eight.
fn width_for(count: usize, text: usize) -> usize {
    match count.max(text) {
        n if n <= usize::from(u8::MAX) => 1,
        n if n <= usize::from(u16::MAX) => 2,
        _ => 4,
    }
}

/// The block of `map`'s fields, every value of a repeated name included, in a buffer of
/// exactly its size.
///
/// The block: the width of the table's numbers (one byte: 1, 2 or 4), the count, then per
/// field the end of its name and of its value in the text (counted from the start of the
/// text), all little-endian of that width; then the text. An empty map still has its width
/// and count, so that a block's length can always be read from its front.
pub fn encode(map: &HeaderMap) -> Vec<u8> {
    let count = map.len();
    let text: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    let width = width_for(count, text);
    // A map's fields are bounded by what hyper accepts in a head (or what our own code
    // puts there), far below 4 GiB; a larger one would fail its offsets, so refuse it
    // loudly rather than store wrong fields.
    let total = 1 + width + count * 2 * width + text;
    assert!(u32::try_from(total).is_ok(), "header block over 4 GiB");
    let mut block = Vec::with_capacity(total);
    block.put_u8(width as u8);
    // Every number fits its width: `width` was chosen so that the count and the text
    // (which bounds every end) do.
    let mut put = |n: usize| match width {
        1 => block.put_u8(n as u8),
        2 => block.put_u16_le(n as u16),
        _ => block.put_u32_le(n as u32),
    };
    put(count);
    let mut end = 0;
    for (name, value) in map {
        end += name.as_str().len();
        put(end);
        end += value.len();
        put(end);
    }
    for (name, value) in map {
        block.put_slice(name.as_str().as_bytes());
        block.put_slice(value.as_bytes());
    }
    block
}

/// A stored response's header fields, read in place from their block (see [`encode`]), in
/// the order the map they came from iterates them.
#[derive(Clone, Copy, Default)]
pub struct Fields<'a> {
    /// Exactly the block: no byte of what follows it.
    block: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields whose block starts `bytes` (a payload's front), and what follows them.
    /// Bytes that do not start with a block made by [`encode`] read as no fields.
    pub fn split_front(bytes: &'a [u8]) -> (Fields<'a>, &'a [u8]) {
        let whole = Fields { block: bytes };
        let len = match whole.block.first() {
            None => 0,
            Some(_) => match whole.len() {
                0 => whole.table_len(),
                n => whole
                    .table_len()
                    .saturating_add(whole.number(n.saturating_mul(2))),
            },
        };
        match bytes.split_at_checked(len) {
            Some((block, rest)) => (Fields { block }, rest),
            // No fields, and a block that still starts where `bytes` does.
            None => (Fields { block: &bytes[..0] }, bytes),
        }
    }

    /// The block itself (to copy in front of another body).
    pub fn block(&self) -> &'a [u8] {
        self.block
    }

    /// The block's length: its table and text.
    pub fn block_len(&self) -> usize {
        self.block.len()
    }

    /// Bytes of the block before names and values (the table): where the text starts.
    fn table_len(&self) -> usize {
        match self.block.first() {
            None => 0,
            // Saturating: a count read from damaged bytes must not wrap (on 32-bit).
            Some(&width) => usize::from(width)
                .saturating_mul(self.len().saturating_mul(2).saturating_add(1))
                .saturating_add(1),
        }
    }

    /// The fields as a map, each value a copy.
    pub fn to_map(&self) -> HeaderMap {
        self.map_with(|v| HeaderValue::from_bytes(v).ok())
    }

    /// The fields as a map whose values are slices of `shared`, which starts with this
    /// block (the payload it is the front of): no copies, and no allocation per value.
    pub fn to_map_in(&self, shared: &Bytes) -> HeaderMap {
        debug_assert_eq!(shared.as_ptr(), self.block.as_ptr());
        let base = self.block.as_ptr() as usize;
        self.map_with(|v| {
            let at = v.as_ptr() as usize - base;
            HeaderValue::from_maybe_shared(shared.slice(at..at + v.len())).ok()
        })
    }

    fn map_with(&self, value: impl Fn(&[u8]) -> Option<HeaderValue>) -> HeaderMap {
        // `try_`: a map holds at most 32,768 entries; more fields than that (not from hyper,
        // which caps a head at 100) would panic `with_capacity` rather than fail an append.
        let mut map = HeaderMap::try_with_capacity(self.len()).unwrap_or_default();
        for (name, v) in self.iter() {
            // Every name and value here came from a valid map; a block that did not would
            // lose the field rather than panic.
            let Ok(name) = HeaderName::from_bytes(name) else {
                continue;
            };
            let Some(v) = value(v) else {
                continue;
            };
            map.append(name, v);
        }
        map
    }

    /// How many fields (each value of a repeated name counts).
    pub fn len(&self) -> usize {
        if self.block.is_empty() {
            0
        } else {
            self.number(0)
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each field's name and value bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let this = *self;
        this.spans().filter_map(move |(name, value)| {
            // Checked: a block not made by `encode` ends early rather than panics.
            Some((this.block.get(name)?, this.block.get(value)?))
        })
    }

    /// The first value of `name` (a copy).
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order (copies).
    pub fn get_all<'n>(&self, name: &'n HeaderName) -> impl Iterator<Item = HeaderValue> + 'n
    where
        'a: 'n,
    {
        let want = name.as_str().as_bytes();
        self.iter()
            .filter(move |(n, _)| *n == want)
            .filter_map(|(_, v)| HeaderValue::from_bytes(v).ok())
    }

    /// Whether `name` is among them.
    pub fn contains(&self, name: &HeaderName) -> bool {
        let want = name.as_str().as_bytes();
        self.iter().any(|(n, _)| n == want)
    }

    /// The bytes of names and values (what a weight counts as the head's text).
    pub fn text_len(&self) -> usize {
        self.block.len().saturating_sub(self.table_len())
    }

    /// The table's number `i` (0: the count; then each field's two ends).
    fn number(&self, i: usize) -> usize {
        let width = usize::from(self.block[0]);
        let at = i.saturating_mul(width).saturating_add(1);
        // Only `encode` makes blocks; one it did not make reads as no fields, no panic.
        match self.block.get(at..at.saturating_add(width)) {
            Some(&[a]) => usize::from(a),
            Some(&[a, b]) => usize::from(u16::from_le_bytes([a, b])),
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
            _ => 0,
        }
    }

    /// Each field's name and value as ranges of the block.
    fn spans(self) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> + 'a {
        let count = self.len();
        let text = self.table_len();
        let mut start = 0;
        (0..count).map(move |i| {
            let name_end = self.number(1 + 2 * i);
            let value_end = self.number(2 + 2 * i);
            // Saturating: a damaged end must not wrap (on 32-bit); `iter`'s checked reads
            // then skip the field.
            let at = |end: usize| text.saturating_add(end);
            let spans = (at(start)..at(name_end), at(name_end)..at(value_end));
            start = value_end;
            spans
        })
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in fields {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn pairs(m: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        m.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_map_comes_back_field_for_field_in_order_with_repeats() {
        let m = map(&[
            ("content-type", "text/html; charset=utf-8"),
            ("set-cookie", "a=1"),
            ("x-custom-thing", "one"),
            ("set-cookie", "b=2"),
            ("etag", "\"v1\""),
            ("vary", ""),
            ("x-custom-thing", "two"),
        ]);
        let b = encode(&m);
        let f = Fields::split_front(&b).0;
        assert_eq!(f.len(), 7);
        assert_eq!(pairs(&f.to_map()), pairs(&m));
        let expected: Vec<(Vec<u8>, Vec<u8>)> = m
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            f.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn lookups_find_the_first_value_and_only_whole_names() {
        let m = map(&[
            ("etag", "\"v1\""),
            ("x-etag", "\"no\""),
            ("cache-control", "max-age=5"),
            ("cache-control", "public"),
        ]);
        let b = encode(&m);
        let f = Fields::split_front(&b).0;
        assert_eq!(f.get(&header::ETAG).unwrap(), "\"v1\"");
        assert_eq!(f.get(&header::CACHE_CONTROL).unwrap(), "max-age=5");
        assert!(f.get(&header::LAST_MODIFIED).is_none());
        let all: Vec<HeaderValue> = f.get_all(&header::CACHE_CONTROL).collect();
        assert_eq!(all, ["max-age=5", "public"]);
        assert!(f.contains(&header::CACHE_CONTROL));
        assert!(!f.contains(&header::AGE));
    }

    #[test]
    fn an_empty_map_is_a_block_of_no_fields() {
        let b = encode(&HeaderMap::new());
        let f = Fields::split_front(&b).0;
        assert!(f.is_empty());
        assert_eq!(f.text_len(), 0);
        assert!(f.to_map().is_empty());
        assert!(f.get(&header::ETAG).is_none());
        // Width and count still, so that the block's end can be read from its front.
        assert_eq!(f.block_len(), 2);
    }

    #[test]
    fn a_block_in_front_of_a_body_ends_exactly_where_the_body_begins() {
        for m in [
            HeaderMap::new(),
            map(&[("etag", "\"v1\"")]),
            map(&[("etag", "\"v1\""), ("x-long", &"v".repeat(300))]),
            map(&[("etag", "\"v1\""), ("x-long", &"v".repeat(70_000))]),
        ] {
            let mut all = encode(&m);
            let block = all.len();
            all.extend_from_slice(b"\x02body");
            let (f, body) = Fields::split_front(&all);
            assert_eq!((f.block_len(), body), (block, &b"\x02body"[..]));
            assert_eq!(pairs(&f.to_map()), pairs(&m));
        }
    }

    #[test]
    fn bytes_that_are_not_a_block_read_as_no_fields_without_a_panic() {
        // What a damaged buffer might hold: bad widths, counts and ends past the end.
        // The last four have the right length for their table, so what `iter` reads is
        // reached: ends that go backwards, a zero width, ends past the text.
        for junk in [
            &b""[..],
            b"\x00",
            b"\x01\x02\x03\x01\x00\x02ab",
            b"\x01\x01\x05\x02abcd",
            b"\x00\x01\x02\x03",
            b"\x02",
            b"\x02\xff\xff",
            b"\x07\x01\x00\x00",
            b"\x02\x01\x00\x05\x00\x09\x00ab",
            b"\x04\xff\xff\xff\xff",
        ] {
            let (f, _) = Fields::split_front(junk);
            let shared = Bytes::copy_from_slice(junk);
            let (in_shared, _) = Fields::split_front(&shared);
            assert!(in_shared.to_map_in(&shared).is_empty(), "{junk:?}");
            assert!(f.to_map().is_empty(), "{junk:?}");
            assert_eq!(f.iter().count(), 0, "{junk:?}");
        }
    }

    #[test]
    fn a_map_in_shared_bytes_slices_them_instead_of_copying() {
        let m = map(&[("etag", "\"v1\""), ("age", "3")]);
        let shared = Bytes::from(encode(&m));
        let back = Fields::split_front(&shared).0.to_map_in(&shared);
        assert_eq!(pairs(&back), pairs(&m));
        assert!(shared
            .as_ptr_range()
            .contains(&back["etag"].as_bytes().as_ptr()));
    }

    #[test]
    fn text_len_counts_names_and_values() {
        let b = encode(&map(&[("etag", "\"v1\""), ("age", "3")]));
        let f = Fields::split_front(&b).0;
        assert_eq!(f.text_len(), "etag".len() + 4 + "age".len() + 1);
    }

    #[test]
    fn heads_either_side_of_each_table_width_limit_come_back_exactly() {
        // Text of 255 bytes fits one-byte ends, of 65,535 two-byte ones; one byte more
        // needs the next width.
        for (text, width) in [
            (20, 1),
            (255, 1),
            (256, 2),
            (65_535, 2),
            (65_536, 4),
            (70_000, 4),
        ] {
            let long = "v".repeat(text - "etag".len() - "x-long".len() - 4);
            let m = map(&[("etag", "\"v1\""), ("x-long", &long)]);
            let b = encode(&m);
            let f = Fields::split_front(&b).0;
            assert_eq!(f.text_len(), text);
            assert_eq!(b[0] as usize, width, "{text}");
            assert_eq!(pairs(&f.to_map()), pairs(&m));
            assert_eq!(f.get(&header::ETAG).unwrap(), "\"v1\"");
        }
    }

    #[test]
    fn a_small_head_costs_two_bytes_per_field_beyond_its_text_a_larger_one_four() {
        let b = encode(&map(&[("etag", "\"v1\""), ("age", "3"), ("vary", "x")]));
        let f = Fields::split_front(&b).0;
        assert_eq!(f.table_len(), 1 + 1 + 3 * 2);
        assert_eq!(f.block_len(), f.table_len() + f.text_len());
        let long = "v".repeat(300);
        let b = encode(&map(&[("etag", "\"v1\""), ("x-long", &long)]));
        let f = Fields::split_front(&b).0;
        assert_eq!(f.table_len(), 1 + 2 + 2 * 4);
    }

    #[test]
    fn a_head_of_more_fields_than_a_map_presizes_comes_back_without_a_panic() {
        // 25,000 values of one name: a map holds them (repeats are not slots), but
        // `HeaderMap::with_capacity(25_000)` would panic.
        let mut m = HeaderMap::new();
        for i in 0..25_000 {
            m.append("x-many", HeaderValue::from(i));
        }
        let back = Fields::split_front(&encode(&m)).0.to_map();
        assert_eq!(back.get_all("x-many").iter().count(), 25_000);
        assert_eq!(back.get_all("x-many").iter().next_back().unwrap(), "24999");
    }

    #[test]
    fn values_with_obs_text_survive() {
        let mut m = HeaderMap::new();
        m.insert(
            "x-latin",
            HeaderValue::from_bytes(b"caf\xe9 \tau lait").unwrap(),
        );
        let back = Fields::split_front(&encode(&m)).0.to_map();
        assert_eq!(back["x-latin"].as_bytes(), b"caf\xe9 \tau lait");
    }
}
