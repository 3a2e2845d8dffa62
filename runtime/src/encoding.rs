//! `Content-Encoding`: decode gzip, deflate, br and zstd bodies (for ESI and the HTML rewrite),
//! and encode output per the client's `Accept-Encoding` (the rewrite, and compression at
//! delivery), streaming, with a bound on what a small compressed body may expand to.

use std::io::Write;

use http::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING};

/// A content coding this proxy reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding.
    Identity,
    /// `gzip` (RFC 9110 §8.4.1.3).
    Gzip,
    /// `deflate` (zlib, RFC 9110 §8.4.1.2).
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878), with the 8 MiB window RFC 8878 §3 asks of HTTP.
    Zstd,
}

impl Coding {
    /// The coding of a response, or `None` for one this proxy cannot decode (then it leaves
    /// the body alone).
    pub fn of(headers: &HeaderMap) -> Option<Coding> {
        let mut codings = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity");
        let first = codings.next();
        if codings.next().is_some() {
            return None; // stacked codings: not ours to unwrap
        }
        match first.as_deref() {
            None => Some(Coding::Identity),
            Some("gzip" | "x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some("zstd") => Some(Coding::Zstd),
            Some(_) => None,
        }
    }

    /// The best coding the client accepts for output: the highest `q`, and at equal `q` br
    /// (smallest), then zstd, then gzip; identity when it accepts none.
    pub fn preferred(req: &HeaderMap) -> Coding {
        let mut best = (Coding::Identity, 0.0f32);
        for item in req
            .get_all(ACCEPT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
        {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let coding = match name.as_str() {
                "br" => Coding::Brotli,
                "zstd" => Coding::Zstd,
                "gzip" | "x-gzip" => Coding::Gzip,
                _ => continue,
            };
            if q > best.1 || (q == best.1 && q > 0.0 && coding.rank() > best.0.rank()) {
                best = (coding, q);
            }
        }
        best.0
    }

    /// Preference among output codings at equal `q`.
    fn rank(self) -> u8 {
        match self {
            Coding::Identity | Coding::Deflate => 0,
            Coding::Gzip => 1,
            Coding::Zstd => 2,
            Coding::Brotli => 3,
        }
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Deflate => Some("deflate"),
            Coding::Brotli => Some("br"),
            Coding::Zstd => Some("zstd"),
        }
    }
}

/// Replaces a request's `Accept-Encoding` with the one coding this proxy would choose for
/// it (`br`, `zstd` or `gzip`), or removes it: the many ways browsers spell the same preference
/// then share one cache variant where an origin sends `Vary: Accept-Encoding`.
pub fn normalize_accept_encoding(headers: &mut HeaderMap) {
    match Coding::preferred(headers).token() {
        Some(t) => {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(t));
        }
        None => {
            headers.remove(ACCEPT_ENCODING);
        }
    }
}

/// Whether a media type gains from compression (text, JSON, JavaScript, XML, SVG, wasm);
/// images, video, archives and fonts in WOFF are compressed already.
pub fn compressible(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || matches!(
            media.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/manifest+json"
                | "application/ld+json"
                | "application/wasm"
                | "image/svg+xml"
                | "font/ttf"
                | "font/otf"
        )
        || media.ends_with("+json")
        || media.ends_with("+xml")
}

/// Whether a response with these headers is in no coding and of a compressible type.
pub fn compressible_identity(headers: &HeaderMap) -> bool {
    Coding::of(headers) == Some(Coding::Identity)
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(compressible)
}

/// The body expanded past the configured bound, or was not valid for its coding.
#[derive(Debug, thiserror::Error)]
pub enum CodingError {
    /// Decoded output passed the bound (a decompression bomb, or just too big).
    #[error("decoded body larger than {0} bytes")]
    TooLarge(u64),
    /// Corrupt input.
    #[error("cannot decode body: {0}")]
    Corrupt(#[from] std::io::Error),
}

/// A streaming decoder with an output bound.
pub struct Decoder {
    inner: DecoderKind,
    limit: u64,
    produced: u64,
}

enum DecoderKind {
    Identity(Vec<u8>),
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    Deflate(flate2::write::ZlibDecoder<Sink>),
    Brotli(Box<brotli::DecompressorWriter<Sink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Sink>>),
}

/// Where a decompressor writes: it refuses to grow past the decoder's bound, so a bomb is
/// stopped inside the decompressor's own loop. Checking between input slices is not
/// enough: one brotli metablock of a few dozen bytes may expand to 16 MiB, so a 4 KiB
/// slice can expand to gigabytes before `write` returns.
struct Sink {
    buf: Vec<u8>,
    /// Bytes it may still take.
    room: u64,
    /// Set once it refused a write.
    full: bool,
}

impl Sink {
    fn new(room: u64) -> Sink {
        Sink {
            buf: Vec::new(),
            room,
            full: false,
        }
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() as u64 > self.room {
            self.full = true;
            return Err(std::io::Error::other("decoded body over its bound"));
        }
        self.room -= data.len() as u64;
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// zstd frames may ask for windows up to 8 MiB (RFC 8878 §3: what HTTP recipients
/// support); a frame asking for more is refused instead of allocating it.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

impl Decoder {
    /// A decoder for `coding` that refuses more than `limit` decoded bytes.
    pub fn new(coding: Coding, limit: u64) -> Decoder {
        let inner = match coding {
            Coding::Zstd => {
                // Fails only if libzstd cannot allocate its context (as fatal as any failed
                // allocation) or rejects a constant parameter.
                let mut d =
                    zstd::stream::write::Decoder::new(Sink::new(limit)).expect("zstd context");
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .expect("a valid window size");
                DecoderKind::Zstd(Box::new(d))
            }
            Coding::Identity => DecoderKind::Identity(Vec::new()),
            Coding::Gzip => DecoderKind::Gzip(flate2::write::MultiGzDecoder::new(Sink::new(limit))),
            Coding::Deflate => {
                DecoderKind::Deflate(flate2::write::ZlibDecoder::new(Sink::new(limit)))
            }
            Coding::Brotli => DecoderKind::Brotli(Box::new(brotli::DecompressorWriter::new(
                Sink::new(limit),
                8192,
            ))),
        };
        Decoder {
            inner,
            limit,
            produced: 0,
        }
    }

    /// The decompressor's sink (none for identity).
    fn sink(&mut self) -> Option<&mut Sink> {
        match &mut self.inner {
            DecoderKind::Identity(_) => None,
            DecoderKind::Gzip(d) => Some(d.get_mut()),
            DecoderKind::Deflate(d) => Some(d.get_mut()),
            DecoderKind::Brotli(d) => Some(d.get_mut()),
            DecoderKind::Zstd(d) => Some(d.get_mut()),
        }
    }

    /// What a decompressor's error means: its sink refused to grow, or corrupt input.
    fn failed(&mut self, e: std::io::Error) -> CodingError {
        if self.sink().is_some_and(|s| s.full) {
            CodingError::TooLarge(self.limit)
        } else {
            CodingError::Corrupt(e)
        }
    }

    fn take(&mut self) -> Result<Vec<u8>, CodingError> {
        let out = match &mut self.inner {
            DecoderKind::Identity(v) => std::mem::take(v),
            _ => self
                .sink()
                .map(|s| std::mem::take(&mut s.buf))
                .unwrap_or_default(),
        };
        self.produced += out.len() as u64;
        if self.produced > self.limit {
            return Err(CodingError::TooLarge(self.limit));
        }
        Ok(out)
    }

    /// Feeds encoded bytes; returns what decoded so far (plain input is passed on without a
    /// copy).
    pub fn push_bytes(&mut self, data: bytes::Bytes) -> Result<bytes::Bytes, CodingError> {
        if let DecoderKind::Identity(_) = self.inner {
            self.produced += data.len() as u64;
            if self.produced > self.limit {
                return Err(CodingError::TooLarge(self.limit));
            }
            return Ok(data);
        }
        self.push(&data).map(bytes::Bytes::from)
    }

    /// Feeds encoded bytes; returns what decoded so far. Input is fed in small slices so
    /// that a bomb is stopped near the bound, not after expanding a whole chunk.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, CodingError> {
        let mut out = Vec::new();
        // zstd can expand a 4-byte block to 128 KiB: its slices are smaller.
        let slice = if matches!(self.inner, DecoderKind::Zstd(_)) {
            128
        } else {
            4096
        };
        while !data.is_empty() {
            let n = data.len().min(slice);
            let written = match &mut self.inner {
                DecoderKind::Identity(v) => {
                    v.extend_from_slice(&data[..n]);
                    Ok(())
                }
                DecoderKind::Gzip(d) => d.write_all(&data[..n]),
                DecoderKind::Deflate(d) => d.write_all(&data[..n]),
                DecoderKind::Brotli(d) => d.write_all(&data[..n]),
                DecoderKind::Zstd(d) => d.write_all(&data[..n]),
            };
            if let Err(e) = written {
                return Err(self.failed(e));
            }
            data = &data[n..];
            out.extend(self.take()?);
        }
        Ok(out)
    }

    /// Ends the input; returns the last decoded bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, CodingError> {
        let finished = match &mut self.inner {
            DecoderKind::Identity(_) => Ok(()),
            DecoderKind::Gzip(d) => d.try_finish(),
            DecoderKind::Deflate(d) => d.try_finish(),
            DecoderKind::Brotli(d) => d.flush(),
            // Also refuses a stream that stops inside a frame.
            DecoderKind::Zstd(d) => d.do_finish(),
        };
        if let Err(e) = finished {
            return Err(self.failed(e));
        }
        let out = self.take()?;
        if let DecoderKind::Brotli(d) = self.inner {
            // An incomplete brotli stream reports itself only when closed.
            d.into_inner().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated br stream")
            })?;
        }
        Ok(out)
    }
}

/// Decodes a whole body within `limit` bytes.
pub fn decode(body: &[u8], coding: Coding, limit: u64) -> Result<Vec<u8>, CodingError> {
    let mut d = Decoder::new(coding, limit);
    let mut out = d.push(body)?;
    out.extend(d.finish()?);
    Ok(out)
}

/// A streaming encoder.
pub enum Encoder {
    /// Passes bytes through.
    Identity,
    /// gzip.
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// br.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// zstd.
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoder {
    /// An encoder for `coding` (deflate output is not offered: browsers disagree on it).
    pub fn new(coding: Coding) -> Encoder {
        match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(5),
            )),
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                8192,
                5,
                22,
            ))),
            Coding::Zstd => {
                // As for the decoder: only a failed allocation could make this fail.
                let e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd context");
                Encoder::Zstd(Box::new(e))
            }
            Coding::Identity | Coding::Deflate => Encoder::Identity,
        }
    }

    /// Encodes a chunk; returns what is ready (plain output is passed on without a copy).
    pub fn push(&mut self, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Identity => Ok(data),
            Encoder::Gzip(e) => {
                e.write_all(&data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Brotli(e) => {
                e.write_all(&data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Zstd(e) => {
                e.write_all(&data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    /// Ends the stream; returns the trailer.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Identity => Ok(Vec::new()),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Brotli(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8], c: Coding) -> Vec<u8> {
        let mut e = Encoder::new(c);
        let mut out = e.push(data.to_vec()).unwrap();
        out.extend(e.finish().unwrap());
        out
    }

    #[test]
    fn every_coding_round_trips_in_any_chunking() {
        let text = b"<p>hello</p>".repeat(500);
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let enc = encode(&text, c);
            for split in [1, 7, 100, enc.len()] {
                let mut d = Decoder::new(c, 1 << 20);
                let mut out = Vec::new();
                for chunk in enc.chunks(split) {
                    out.extend(d.push(chunk).unwrap());
                }
                out.extend(d.finish().unwrap());
                assert_eq!(out, text, "{c:?} split {split}");
            }
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_bound() {
        let zeros = vec![0u8; 50 << 20];
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let bomb = encode(&zeros, c);
            assert!(bomb.len() < 1 << 20);
            assert!(matches!(
                decode(&bomb, c, 1 << 20),
                Err(CodingError::TooLarge(_))
            ));
        }
        assert!(decode(b"not gzip at all", Coding::Gzip, 1 << 20).is_err());
        for c in [Coding::Brotli, Coding::Zstd] {
            let enc = encode(b"hello world", c);
            assert!(decode(&enc[..enc.len() - 2], c, 1 << 20).is_err(), "{c:?}");
        }
    }

    #[test]
    fn a_bomb_is_stopped_while_it_expands_not_after() {
        // 64 MiB of zeros encodes to a few hundred bytes of brotli: one input slice, which
        // the decompressor expands whole before `write` returns. The sink refuses to grow
        // past the bound inside that expansion, so no more than the bound is ever held.
        let zeros = vec![0u8; 64 << 20];
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let bomb = encode(&zeros, c);
            let mut d = Decoder::new(c, 1 << 20);
            let r = d.push(&bomb);
            assert!(matches!(r, Err(CodingError::TooLarge(_))), "{c:?}: {r:?}");
            let sink = d.sink().expect("a decompressor");
            assert!(
                sink.full,
                "{c:?}: stopped by its sink, inside the expansion"
            );
            let held = sink.buf.len();
            assert!(held <= 1 << 20, "{c:?}: {held} bytes held");
        }
        assert!(encode(&zeros, Coding::Brotli).len() < 4096, "one slice");
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_over_8_mib_is_refused() {
        let big = (0..24u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>();
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(27).unwrap();
        e.write_all(&big).unwrap();
        let frame = e.finish().unwrap();
        let err = decode(&frame, Coding::Zstd, 64 << 20).unwrap_err();
        assert!(matches!(err, CodingError::Corrupt(_)), "{err}");
    }

    #[test]
    fn the_client_preference_picks_br_then_zstd_then_gzip() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(ACCEPT_ENCODING, v.parse().unwrap());
            m
        };
        assert_eq!(Coding::preferred(&h("gzip, deflate, br")), Coding::Brotli);
        assert_eq!(Coding::preferred(&h("gzip")), Coding::Gzip);
        assert_eq!(Coding::preferred(&h("gzip, zstd")), Coding::Zstd);
        assert_eq!(Coding::preferred(&h("br;q=0.5, zstd")), Coding::Zstd);
        assert_eq!(Coding::preferred(&h("br;q=0, gzip;q=0.5")), Coding::Gzip);
        assert_eq!(Coding::preferred(&h("identity")), Coding::Identity);
        assert_eq!(Coding::preferred(&HeaderMap::new()), Coding::Identity);
        let mut r = HeaderMap::new();
        r.insert(CONTENT_ENCODING, "gzip, br".parse().unwrap());
        assert_eq!(Coding::of(&r), None);
    }

    #[test]
    fn accept_encoding_spellings_collapse_to_one_choice() {
        let norm = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT_ENCODING, v.parse().unwrap());
            normalize_accept_encoding(&mut h);
            h.get(ACCEPT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        for v in [
            "gzip, deflate, br",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "BR",
            "gzip, br, zstd",
        ] {
            assert_eq!(norm(v).as_deref(), Some("br"), "{v}");
        }
        for v in ["gzip, deflate", "x-gzip", "gzip;q=1, br;q=0.5"] {
            assert_eq!(norm(v).as_deref(), Some("gzip"), "{v}");
        }
        for v in ["zstd", "gzip, deflate, zstd", "zstd;q=1, br;q=0.9"] {
            assert_eq!(norm(v).as_deref(), Some("zstd"), "{v}");
        }
        for v in ["identity", "deflate", "br;q=0, gzip;q=0", "*"] {
            assert_eq!(norm(v), None, "{v}");
        }
    }

    #[test]
    fn only_what_gains_is_compressed() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "image/svg+xml",
            "application/vnd.api+json",
            "TEXT/CSS",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "video/mp4",
            "application/zip",
            "font/woff2",
            "application/octet-stream",
            "",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }
}
