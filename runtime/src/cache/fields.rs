//! Stored header fields: one compact block per stored response instead of an `HeaderMap`.
//!
//! An `http::HeaderMap` costs about 100 bytes of buckets per field plus its index and one
//! allocation per value; a million small objects paid more for their maps than for their
//! bodies. A stored response's fields never change (a revalidation stores a new entry), so
//! they are kept as text: every name and value back to back in one buffer, after a table
//! of where each ends. A hit turns them back into the `HeaderMap` it sends; values are
//! slices of the block, not copies.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Bytes of each number in the table while the text is at most 65,535 bytes and the
/// fields at most 65,535 (nearly every head); larger heads use four.
const NARROW: usize = 2;

/// A stored response's header fields, in the order the map they came from iterates them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// Empty when there are no fields. Else: the width of the table's numbers (one byte,
    /// 2 or 4), the count, then per field the end of its name and of its value in the text
    /// (counted from the start of the text), all little-endian of that width; then the
    /// text.
    block: Bytes,
}

impl Fields {
    /// The fields of `map`, every value of a repeated name included.
    pub fn from_map(map: &HeaderMap) -> Fields {
        let count = map.len();
        let text: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        if count == 0 {
            return Fields::default();
        }
        let width = if text <= usize::from(u16::MAX) && count <= usize::from(u16::MAX) {
            NARROW
        } else {
            4
        };
        // A map's fields are bounded by what hyper accepts in a head (or what our own code
        // puts there), far below 4 GiB; a larger one would fail its offsets, so refuse it
        // loudly rather than store wrong fields.
        let total = 1 + width + count * 2 * width + text;
        assert!(u32::try_from(total).is_ok(), "header block over 4 GiB");
        let mut block = BytesMut::with_capacity(total);
        block.put_u8(width as u8);
        // Every number fits its width: `width` was chosen so that the count and the text
        // (which bounds every end) do.
        let mut put = |n: usize| match width {
            NARROW => block.put_u16_le(n as u16),
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
        Fields {
            block: block.freeze(),
        }
    }

    /// The block itself, to keep in one allocation with a body (see `Entry::with_body_of`).
    pub(crate) fn block(&self) -> &Bytes {
        &self.block
    }

    /// Fields from a copy of another's block (`Fields::block`).
    pub(crate) fn from_block(block: Bytes) -> Fields {
        debug_assert!(block.first().is_none_or(|w| matches!(w, 2 | 4)));
        Fields { block }
    }

    /// Bytes of the block before names and values (the table): where the text starts.
    pub fn table_len(&self) -> usize {
        match self.block.first() {
            None => 0,
            Some(&width) => 1 + usize::from(width) * (1 + 2 * self.len()),
        }
    }

    /// The fields as a map, to send or to inspect with the usual tools. Values share the
    /// block's memory.
    pub fn to_map(&self) -> HeaderMap {
        // `try_`: a map holds at most 32,768 entries; more fields than that (not from hyper,
        // which caps a head at 100) would panic `with_capacity` rather than fail an append.
        let mut map = HeaderMap::try_with_capacity(self.len()).unwrap_or_default();
        for (name, value) in self.spans() {
            // Every name and value here came from a valid map; a block that did not would
            // lose the field rather than panic.
            let Ok(name) = HeaderName::from_bytes(&self.block[name]) else {
                continue;
            };
            let Ok(value) = HeaderValue::from_maybe_shared(self.block.slice(value)) else {
                continue;
            };
            map.append(name, value);
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
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans()
            .map(|(name, value)| (&self.block[name], &self.block[value]))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = HeaderValue> + 'a {
        let want = name.as_str().as_bytes();
        self.spans()
            .filter(move |(n, _)| &self.block[n.clone()] == want)
            .filter_map(|(_, v)| HeaderValue::from_maybe_shared(self.block.slice(v)).ok())
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
        let at = 1 + i * width;
        // Only `from_map` makes blocks; one it did not make reads as no fields, no panic.
        match self.block.get(at..at + width) {
            Some(&[a, b]) => usize::from(u16::from_le_bytes([a, b])),
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
            _ => 0,
        }
    }

    /// Each field's name and value as ranges of the block.
    fn spans(&self) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> + '_ {
        let count = self.len();
        let text = self.table_len();
        let mut start = 0;
        (0..count).map(move |i| {
            let name_end = self.number(1 + 2 * i);
            let value_end = self.number(2 + 2 * i);
            let spans = (
                text + start..text + name_end,
                text + name_end..text + value_end,
            );
            start = value_end;
            spans
        })
    }
}

impl From<&HeaderMap> for Fields {
    fn from(map: &HeaderMap) -> Fields {
        Fields::from_map(map)
    }
}

impl std::fmt::Debug for Fields {
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
        let f = Fields::from_map(&m);
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
        let f = Fields::from(&m);
        assert_eq!(f.get(&header::ETAG).unwrap(), "\"v1\"");
        assert_eq!(f.get(&header::CACHE_CONTROL).unwrap(), "max-age=5");
        assert!(f.get(&header::LAST_MODIFIED).is_none());
        let all: Vec<HeaderValue> = f.get_all(&header::CACHE_CONTROL).collect();
        assert_eq!(all, ["max-age=5", "public"]);
        assert!(f.contains(&header::CACHE_CONTROL));
        assert!(!f.contains(&header::AGE));
    }

    #[test]
    fn an_empty_map_is_an_empty_block() {
        let f = Fields::from_map(&HeaderMap::new());
        assert!(f.is_empty());
        assert_eq!(f.text_len(), 0);
        assert!(f.to_map().is_empty());
        assert!(f.get(&header::ETAG).is_none());
        assert_eq!(f, Fields::default());
    }

    #[test]
    fn text_len_counts_names_and_values() {
        let f = Fields::from(&map(&[("etag", "\"v1\""), ("age", "3")]));
        assert_eq!(f.text_len(), "etag".len() + 4 + "age".len() + 1);
    }

    #[test]
    fn heads_either_side_of_the_narrow_table_limit_come_back_exactly() {
        // Text of 65,535 bytes fits two-byte ends; one byte more needs four.
        for text in [65_535, 65_536, 70_000] {
            let long = "v".repeat(text - "etag".len() - "x-long".len() - 4);
            let m = map(&[("etag", "\"v1\""), ("x-long", &long)]);
            let f = Fields::from_map(&m);
            assert_eq!(f.text_len(), text);
            assert_eq!(f.block[0] as usize, if text <= 65_535 { 2 } else { 4 });
            assert_eq!(pairs(&f.to_map()), pairs(&m));
            assert_eq!(f.get(&header::ETAG).unwrap(), "\"v1\"");
        }
    }

    #[test]
    fn a_small_head_costs_four_bytes_per_field_beyond_its_text() {
        let f = Fields::from(&map(&[("etag", "\"v1\""), ("age", "3"), ("vary", "x")]));
        assert_eq!(f.table_len(), 1 + 2 + 3 * 4);
        assert_eq!(f.block.len(), f.table_len() + f.text_len());
    }

    #[test]
    fn a_head_of_more_fields_than_a_map_presizes_comes_back_without_a_panic() {
        // 25,000 values of one name: a map holds them (repeats are not slots), but
        // `HeaderMap::with_capacity(25_000)` would panic.
        let mut m = HeaderMap::new();
        for i in 0..25_000 {
            m.append("x-many", HeaderValue::from(i));
        }
        let back = Fields::from(&m).to_map();
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
        let back = Fields::from(&m).to_map();
        assert_eq!(back["x-latin"].as_bytes(), b"caf\xe9 \tau lait");
    }
}
