//! Host types → the WIT records a script receives.

use http::{HeaderMap, StatusCode};

use super::bindings::types;
use crate::cache::Decision;
use crate::request::{ClientRequest, DeviceClass};

/// Header fields packed as the WIT's `fields`: names (lower case, as `http` keeps them)
/// and values one after another in one string, with their lengths. Values that are not
/// UTF-8 are passed with U+FFFD in place of the offending bytes rather than dropped: a
/// field the script cannot see would still reach the origin (one 0x80 byte must not hide a
/// `User-Agent` from a bot filter).
pub fn fields(headers: &HeaderMap) -> types::Fields {
    let size = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    let mut text = String::with_capacity(size);
    let mut lengths = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let start = text.len();
        text.push_str(name.as_str());
        let named = text.len();
        match value.to_str() {
            Ok(v) => text.push_str(v),
            Err(_) => text.push_str(&String::from_utf8_lossy(value.as_bytes())),
        }
        // A header section is far below 4 GiB (`max_header_bytes`); saturate regardless.
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        lengths.push((len(named - start), len(text.len() - named)));
    }
    types::Fields { text, lengths }
}

/// The WIT's device class.
pub fn device(d: DeviceClass) -> types::DeviceClass {
    match d {
        DeviceClass::Desktop => types::DeviceClass::Desktop,
        DeviceClass::Mobile => types::DeviceClass::Mobile,
        DeviceClass::Tablet => types::DeviceClass::Tablet,
        DeviceClass::Bot => types::DeviceClass::Bot,
    }
}

/// The script's view of a request.
pub fn request(r: &ClientRequest) -> types::Request {
    types::Request {
        method: r.method.as_str().to_owned(),
        scheme: r.scheme.to_owned(),
        authority: r.authority.clone(),
        path: r.path().to_owned(),
        query: r.query().map(str::to_owned),
        headers: fields(&r.headers),
        client: types::ClientInfo {
            ip: r.client.ip.to_string(),
            country: r.client.country.clone(),
            device: device(r.client.device),
        },
    }
}

/// The script's view of a response head.
pub fn response_head(status: StatusCode, headers: &HeaderMap) -> types::ResponseHead {
    types::ResponseHead {
        status: status.as_u16(),
        headers: fields(headers),
    }
}

fn secs(d: std::time::Duration) -> u32 {
    crate::cache::store::Secs::from(d).count()
}

/// The proposal a script's `cache-policy` starts from.
pub fn decision(d: &Decision) -> types::CacheDecision {
    types::CacheDecision {
        store: d.store,
        ttl: secs(d.ttl),
        stale_while_revalidate: secs(d.swr),
        stale_if_error: secs(d.sie),
        tags: d.tags.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_are_not_ascii_stay_visible() {
        let mut h = HeaderMap::new();
        h.insert(
            "user-agent",
            http::HeaderValue::from_bytes(b"sqlmap/1.7\x80").unwrap(),
        );
        let f = fields(&h);
        assert_eq!(f.lengths.len(), 1);
        let (n, v) = f.lengths[0];
        assert_eq!(&f.text[..n as usize], "user-agent");
        let value = &f.text[n as usize..(n + v) as usize];
        assert!(value.starts_with("sqlmap/1.7"), "{value:?}");
    }

    #[test]
    fn fields_keep_their_order_and_repeats() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("x-empty", "".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        let f = fields(&h);
        assert_eq!(f.text, "cookiea=1cookieb=2x-empty");
        assert_eq!(f.lengths, [(6, 3), (6, 3), (7, 0)]);
    }
}
