//! Phase "recv": route the request to a site, build the client's request, run `on_request`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::Uri;

use super::deliver::{self, Answer};
use super::driver::Exchange;
use super::headers::strip_hop_by_hop;
use super::outcome::Refusal;
use super::site::SiteRuntime;
use super::Generation;
use crate::config::GuestErrorPolicy;
use crate::guest::{GuestError, Hook, OnRequest};
use crate::request::{country_from, valid_authority, Client, ClientRequest, DeviceClass};

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The `[[listener]]` it arrived on, by its place in the config; `None`: `listen`.
    pub listener: Option<usize>,
}

/// The client's `X-Request-Id` if it is a sane token, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> Arc<str> {
    headers
        .get("x-request-id")
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.iter().all(u8::is_ascii_graphic))
        .map(|v| Arc::from(String::from_utf8_lossy(v).as_ref()))
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()))
}

/// The site answering this request, and the request as the rest of the path sees it; a
/// request whose Host no site answers, or that is not `host[:port]`, is refused.
pub fn route(
    gen: &Generation,
    mut parts: Parts,
    conn: &ConnInfo,
) -> Result<(Arc<SiteRuntime>, ClientRequest), Refusal> {
    // RFC 9112 §3.2: more than one Host line, or one that is not `host[:port]` (not even
    // text), is refused whatever else the request says.
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) => None,
        (Some(h), None) => Some(
            h.to_str()
                .ok()
                .filter(|h| valid_authority(h))
                .ok_or(Refusal::BadHost)?,
        ),
        (Some(_), Some(_)) => return Err(Refusal::BadHost),
    };
    // §3.2.2: an absolute-form target (and h2's :authority) wins over Host. A Host was
    // checked above; a target's authority is checked here.
    let authority = match parts.uri.authority() {
        Some(a) if valid_authority(a.as_str()) => a.as_str().to_owned(),
        Some(_) => return Err(Refusal::BadHost),
        None => host.unwrap_or_default().to_owned(),
    };
    let host = strip_port(&authority);
    let site = gen
        .sites
        .iter()
        .find(|s| s.cfg.matches(host))
        .ok_or(Refusal::NoSite)?
        .clone();
    strip_hop_by_hop(&mut parts.headers);
    crate::encoding::normalize_accept_encoding(&mut parts.headers);
    let trusted = &gen.config.server.trusted_edges;
    let (edge_ip, edge_country) =
        super::tier::client_from_edge(&mut parts.headers, conn.peer.ip(), trusted);
    let uri = parts
        .uri
        .path_and_query()
        .and_then(|pq| Uri::try_from(pq.as_str()).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let ip = edge_ip.unwrap_or(conn.peer.ip());
    let client = Client {
        ip,
        // A trusted edge's word first, then a trusted upstream's header; the address only
        // when neither says anything.
        // From a trusted edge, the country header is the client's own (the edge passed it
        // on): only the edge's word or the database counts.
        country: edge_country
            .or_else(|| {
                let header = gen.config.server.client_country_header.as_ref();
                country_from(&parts.headers, header.filter(|_| edge_ip.is_none()))
            })
            .or_else(|| gen.config.server.geoip.as_ref()?.country(ip)),
        device: DeviceClass::of(parts.headers.get(header::USER_AGENT).map(|v| v.as_bytes())),
    };
    let req = ClientRequest {
        method: parts.method,
        scheme: conn.scheme,
        authority,
        uri,
        headers: parts.headers,
        client,
        version: 0,
    };
    Ok((site, req))
}

/// Where the request goes after `on_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the cache.
    Cache,
    /// Past the cache to the origin: a script said `pass`.
    Pass,
}

/// Runs the site's `on_request` hooks: the request goes on (`Ok`), or is answered now.
pub async fn hooks(x: &mut Exchange) -> Result<Route, Answer> {
    if !x.chain.implements(Hook::OnRequest) {
        return Ok(Route::Cache);
    }
    match x.chain.on_request(&mut x.req).await {
        Ok(OnRequest::Continue) => Ok(Route::Cache),
        Ok(OnRequest::Pass) => Ok(Route::Pass),
        Ok(OnRequest::Respond(s)) => Err(deliver::synthetic(s)),
        Err(f) if matches!(f.error, GuestError::Busy(_)) => Err(deliver::refused(Refusal::Busy)),
        // Only an explicit opt-in lets a request past a failed on_request: it may have been
        // the access check.
        Err(_) if x.site.cfg.on_guest_error.on_request == GuestErrorPolicy::Fallback => {
            Ok(Route::Cache)
        }
        Err(f) => Err(deliver::refused(Refusal::ScriptFailed(f))),
    }
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_brackets_are_removed_from_hosts() {
        assert_eq!(strip_port("shop.test:8080"), "shop.test");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1"), "::1");
        assert_eq!(strip_port("plain"), "plain");
    }

    #[test]
    fn only_sane_request_ids_are_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(&*request_id(&h), "abc-123");
        h.insert("x-request-id", "has space".parse().unwrap());
        assert_ne!(&*request_id(&h), "has space");
        h.insert("x-request-id", "x".repeat(201).parse().unwrap());
        assert_eq!(request_id(&h).len(), 32);
    }
}
