//! Delivery stage "compress": a compressible response the origin sent uncompressed is
//! encoded (br, zstd or gzip) for a client that accepts it, streaming, after ESI and the
//! rewrite. The cache keeps one identity copy per object (ranges, ESI, the rewrite and
//! purges all work on it) and beside it each coding, made by the first hit that needs it.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::deliver::Answer;
use crate::cache::directives::CacheControl;
use crate::encoding::{compressible_identity, Coding, Encoder};
use crate::origin::{BoxError, OutBody};
use crate::request::ClientRequest;

/// Bodies smaller than this are sent as they are: the coding's overhead would eat the gain.
const MIN_BYTES: u64 = 1024;

fn no_transform(h: &HeaderMap) -> bool {
    CacheControl::from_headers(h).no_transform
}

/// Whether this response may be sent compressed to some client (then it varies by
/// `Accept-Encoding`): a full 200 in no coding, of a compressible type, large enough or of
/// unknown length, and neither side forbids transforming it (RFC 9111 §5.2.1.6, §5.2.2.6).
fn eligible(req: &ClientRequest, status: StatusCode, h: &HeaderMap) -> bool {
    status == StatusCode::OK
        && matches!(req.method, Method::GET | Method::HEAD)
        && compressible_identity(h)
        && !h.contains_key(header::CONTENT_RANGE)
        && h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_none_or(|n| n >= MIN_BYTES)
        && !no_transform(h)
        && !no_transform(&req.headers)
}

/// Compresses `a` for `req`'s client when it is eligible and the client accepts a coding.
pub fn stage(req: &ClientRequest, mut a: Answer) -> Answer {
    let status = a.response.status();
    if !eligible(req, status, a.response.headers()) {
        return a;
    }
    let h = a.response.headers_mut();
    append_vary(h);
    let coding = Coding::preferred(&req.headers);
    let Some(token) = coding.token() else {
        return a;
    };
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    h.remove(header::CONTENT_LENGTH);
    // RFC 9110 §8.8.3: the encoded representation is not the same bytes as the identity
    // one, so its validator may only claim weak equivalence.
    if let Some(tag) = h.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !tag.starts_with("W/") {
            if let Ok(weak) = HeaderValue::from_str(&format!("W/{tag}")) {
                h.insert(header::ETAG, weak);
            }
        }
    }
    if req.method == Method::HEAD {
        return a;
    }
    // A stored body is encoded once per coding and kept beside it; anything else (ESI,
    // rewritten or streamed responses, very large bodies) is encoded as it streams.
    if let Some(entry) = a
        .encodable
        .take()
        .filter(|e| e.body().len() <= MAX_KEPT_BYTES)
    {
        // The copies' holder is made by the first delivery that encodes this entry: most
        // stored objects are never compressed, and an empty holder per object adds up.
        let copies = entry.encoded.get_or_init(Default::default);
        let Some(cell) = copies.cell(coding) else {
            return a;
        };
        let encoded = cell
            .get_or_init(|| encode_whole(entry.body(), coding))
            .clone();
        a.response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.len()));
        *a.response.body_mut() = crate::origin::full(encoded);
        return a;
    }
    let body = std::mem::replace(a.response.body_mut(), crate::origin::empty());
    *a.response.body_mut() = encode(body, coding);
    a
}

/// Stored bodies up to this size have their encodings kept; larger ones stream each time.
const MAX_KEPT_BYTES: usize = 2 << 20;

fn encode_whole(identity: &[u8], coding: Coding) -> Bytes {
    let mut e = Encoder::new(coding);
    let mut out = e.push(identity.to_vec()).expect("encoding into memory");
    out.extend(e.finish().expect("encoding into memory"));
    Bytes::from(out)
}

fn append_vary(h: &mut HeaderMap) {
    let listed = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| {
            let f = f.trim();
            f == "*" || f.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The body encoded chunk by chunk, with the coding's trailer at the end.
fn encode(body: OutBody, coding: Coding) -> OutBody {
    let state = (body, Some(Encoder::new(coding)));
    let stream = futures_util::stream::unfold(state, |(mut body, mut encoder)| async move {
        loop {
            let enc = encoder.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match enc.push(data.to_vec()) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Some((Ok(Bytes::from(out)), (body, encoder))),
                        Err(e) => return Some((Err(Box::new(e) as BoxError), (body, None))),
                    }
                }
                Some(Err(e)) => return Some((Err(e), (body, None))),
                None => {
                    let last = encoder.take()?.finish();
                    return Some((
                        last.map(Bytes::from).map_err(|e| Box::new(e) as BoxError),
                        (body, None),
                    ));
                }
            }
        }
    });
    let frames = futures_util::StreamExt::map(stream, |r| r.map(hyper::body::Frame::data));
    http_body_util::StreamBody::new(frames).boxed()
}
