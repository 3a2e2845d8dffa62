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

/// Bytes of the table per field: where its name ends and where its value ends.
const ENDS: usize = 8;

/// A stored response's header fields, in the order the map they came from iterates them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// `count` (u32), then per field the end of its name and of its value in the text
    /// (u32 each, little-endian, counted from the start of the text), then the text.
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
        // A map's fields are bounded by what hyper accepts in a head (or what our own code
        // puts there), far below 4 GiB; a larger one would fail its offsets, so refuse it
        // loudly rather than store wrong fields.
        let total = 4 + count * ENDS + text;
        assert!(u32::try_from(total).is_ok(), "header block over 4 GiB");
        let mut block = BytesMut::with_capacity(total);
        block.put_u32_le(count as u32);
        let mut end = 0;
        for (name, value) in map {
            end += name.as_str().len();
            block.put_u32_le(end as u32);
            end += value.len();
            block.put_u32_le(end as u32);
        }
        for (name, value) in map {
            block.put_slice(name.as_str().as_bytes());
            block.put_slice(value.as_bytes());
        }
        Fields {
            block: block.freeze(),
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
            self.u32_at(0)
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
        self.block.len().saturating_sub(4 + self.len() * ENDS)
    }

    /// The little-endian u32 at byte `at` of the block.
    fn u32_at(&self, at: usize) -> usize {
        let b = &self.block[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// Each field's name and value as ranges of the block.
    fn spans(&self) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> + '_ {
        let count = self.len();
        let text = 4 + count * ENDS;
        let mut start = 0;
        (0..count).map(move |i| {
            let name_end = self.u32_at(4 + i * ENDS);
            let value_end = self.u32_at(8 + i * ENDS);
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
