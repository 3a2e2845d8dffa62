//! Header hygiene: hop-by-hop fields (RFC 9110 §7.6.1) and the fields a proxy adds.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Request fields that make a request conditional or partial (RFC 9110 §13.1, §14.2): a
/// request the cache makes for itself leaves them out to get the whole representation.
pub const CONDITIONAL: [http::header::HeaderName; 6] = [
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::IF_RANGE,
    http::header::RANGE,
];

/// Removes hop-by-hop fields, including every field named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Appends the client address to `X-Forwarded-For`.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

/// Appends this hop to `Forwarded` (RFC 7239 §4) and sets `X-Forwarded-Proto`. A client's
/// own `X-Forwarded-Proto` is replaced: only this node knows how the client reached it.
pub fn append_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str, host: &str) {
    // §6: IPv6 nodes are bracketed and quoted; a host with a port is quoted.
    let node = match client {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    let mut element = format!("for={node};proto={proto}");
    if !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        element.push_str(&format!(";host=\"{host}\""));
    }
    append_list(headers, "forwarded", &element);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
}

/// Appends this node to `Via` (RFC 9110 §7.6.3).
pub fn append_via(headers: &mut HeaderMap, node: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("1.1 {node} (tessera)")) {
        headers.append(http::header::VIA, v);
    }
}

/// Appends `value` to a comma-separated field, creating it if absent.
pub fn append_list(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_named_in_connection_are_removed_rfc9110_7_6_1() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_appends_a_hop_and_x_forwarded_proto_is_ours_rfc7239() {
        let mut h = HeaderMap::new();
        h.insert("forwarded", "for=192.0.2.60;proto=https".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        append_forwarded(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            "http",
            "shop.test:8080",
        );
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.60;proto=https, for=10.0.0.1;proto=http;host=\"shop.test:8080\""
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        let mut h = HeaderMap::new();
        append_forwarded(&mut h, "2001:db8::1".parse().unwrap(), "https", "a\"b");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");
    }
}
