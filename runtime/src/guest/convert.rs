//! Host types → the WIT records a script receives.

use http::{HeaderMap, StatusCode};

use super::bindings::types;
use crate::cache::Decision;
use crate::request::{ClientRequest, DeviceClass};

/// Header list with lower-case names, as the WIT promises. Values that are not UTF-8 are
/// passed with U+FFFD in place of the offending bytes rather than dropped: a field the
/// script cannot see would still reach the origin (one 0x80 byte must not hide a
/// `User-Agent` from a bot filter).
pub fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let value = match v.to_str() {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (n.as_str().to_owned(), value)
        })
        .collect()
}

fn device(d: DeviceClass) -> types::DeviceClass {
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
        headers: header_list(&r.headers),
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
        headers: header_list(headers),
    }
}

fn secs(d: std::time::Duration) -> u32 {
    d.as_secs().min(u64::from(u32::MAX)) as u32
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
        let list = header_list(&h);
        assert_eq!(list.len(), 1);
        assert!(list[0].1.starts_with("sqlmap/1.7"), "{:?}", list[0].1);
    }
}
