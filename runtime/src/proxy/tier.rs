//! Where a fetch goes: one of the site's shields (edge → shield → origin), chosen per key
//! by rendezvous hashing so the shields' capacities add up, or the origin itself.
//!
//! A shield is another Tessera node with the site's origin configured. A shield that fails
//! (refused, unreachable, timed out) is skipped for a back-off that doubles with each
//! failure (1 s up to 60 s); the next shield for the key takes over, and the origin only
//! when none is reachable. After the back-off the next request tries it again: passive
//! health checking, no probe traffic.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use sha2::{Digest, Sha256};

use super::driver::Exchange;
use crate::origin::{OriginBody, OriginClient, OriginError, OutBody};

/// Longest a failing shield is skipped.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One shield of a site, with its connections and health.
pub struct Shield {
    /// Its base URL.
    pub url: Uri,
    client: OriginClient,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

impl Shield {
    /// A shield at `url`, reached through `client`.
    pub fn new(url: Uri, client: OriginClient) -> Shield {
        Shield {
            url,
            client,
            health: Mutex::default(),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it is not in a back-off now.
    pub fn up(&self) -> bool {
        self.health().down_until.is_none_or(|t| Instant::now() >= t)
    }

    fn failed(&self) {
        let mut h = self.health();
        h.failures = h.failures.saturating_add(1);
        let backoff = Duration::from_secs(1 << (h.failures - 1).min(6)).min(MAX_BACKOFF);
        h.down_until = Some(Instant::now() + backoff);
        tracing::warn!(shield = %self.url, failures = h.failures, "shield failed; skipped for {backoff:?}");
    }

    fn succeeded(&self) {
        let mut h = self.health();
        if h.failures > 0 {
            tracing::info!(shield = %self.url, "shield answers again");
        }
        *h = Health::default();
    }
}

/// `shields` in the order `key` tries them (rendezvous hashing: every edge computes the
/// same order, and losing a shield moves only its keys).
pub fn order<'a>(shields: &'a [Shield], key: &str) -> Vec<&'a Shield> {
    let mut scored: Vec<(u64, &Shield)> = shields
        .iter()
        .map(|s| {
            // A hash every build and platform agrees on: edges must pick alike.
            let d = Sha256::new()
                .chain_update(s.url.to_string().as_bytes())
                .chain_update([0])
                .chain_update(key.as_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&d[..8]);
            (u64::from_be_bytes(first), s)
        })
        .collect();
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    scored.into_iter().map(|(_, s)| s).collect()
}

/// Where one attempt goes.
pub struct Target<'a> {
    /// Base URL (scheme and authority).
    pub base: &'a Uri,
    /// A shield, not the origin: it needs the client's Host to find the site.
    pub shield: bool,
}

/// Sends the request `build` makes for each target in turn: the key's shields that are up
/// (all of them only when `retry`: a request with a body can be sent once), then the
/// origin. A request that already came through this node (its `Via` names it) goes to the
/// origin: shields configured in a loop must not bounce a request forever.
pub async fn send(
    x: &Exchange,
    retry: bool,
    build: impl Fn(Target<'_>) -> Request<OutBody>,
) -> Result<Response<OriginBody>, OriginError> {
    let origin = Target {
        base: &x.site.cfg.origin,
        shield: false,
    };
    if x.site.shields.is_empty() || x.looped {
        return x.site.origin.send(build(origin)).await;
    }
    let key = x.key.as_ref().map_or(&*x.uri, |k| k.as_str());
    for shield in order(&x.site.shields, key).into_iter().filter(|s| s.up()) {
        let target = Target {
            base: &shield.url,
            shield: true,
        };
        match shield.client.send(build(target)).await {
            Ok(r) => {
                shield.succeeded();
                return Ok(r);
            }
            Err(e) => {
                shield.failed();
                if !retry {
                    return Err(e);
                }
            }
        }
    }
    x.site.origin.send(build(origin)).await
}

/// Whether a `Via` hop of `headers` is the node `me`: the request already came through
/// this node. From anyone but a trusted edge that is refused (508) before anything else.
pub fn via_names(headers: &http::HeaderMap, me: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| hop.split_whitespace().nth(1) == Some(me))
}

/// Whether `peer` is one of the edges this node believes (`[server] trusted_edges`); an
/// IPv4 edge on a dual-stack listener arrives as `::ffff:a.b.c.d`.
pub fn trusted(peer: std::net::IpAddr, edges: &[ipnetwork::IpNetwork]) -> bool {
    let peer = peer.to_canonical();
    edges.iter().any(|n| n.contains(peer))
}

/// What a shield learns of the client from the edge, in fields only a trusting shield
/// reads (`[server] trusted_edges`); every node removes them from anyone else.
pub const CLIENT_IP: &str = "tessera-client-ip";
/// The client's country, as the edge found it (header or GeoIP database).
pub const CLIENT_COUNTRY: &str = "tessera-client-country";

/// The client's Host for a shield (it routes by it, as this node did), and what the edge
/// knows of the client that the shield cannot see.
pub fn for_shield(headers: &mut http::HeaderMap, authority: &str, client: &crate::request::Client) {
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&client.ip.to_string()) {
        headers.insert(CLIENT_IP, v);
    }
    match client.country.as_deref().map(HeaderValue::from_str) {
        Some(Ok(v)) => {
            headers.insert(CLIENT_COUNTRY, v);
        }
        _ => {
            headers.remove(CLIENT_COUNTRY);
        }
    }
}

/// Takes the client's address and country from a trusted edge's fields, and removes the
/// fields from every request (from a trusted edge once read, from anyone else unread).
pub fn client_from_edge(
    headers: &mut http::HeaderMap,
    peer: std::net::IpAddr,
    trusted: &[ipnetwork::IpNetwork],
) -> (Option<std::net::IpAddr>, Option<String>) {
    let ip = headers.remove(CLIENT_IP);
    let country = headers.remove(CLIENT_COUNTRY);
    if !self::trusted(peer, trusted) {
        return (None, None);
    }
    let ip = ip.and_then(|v| v.to_str().ok()?.parse().ok());
    let country = country
        .filter(|v| v.len() == 2 && v.as_bytes().iter().all(u8::is_ascii_alphabetic))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_uppercase());
    (ip, country)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shields(n: usize) -> Vec<Shield> {
        (0..n)
            .map(|i| {
                let url: Uri = format!("http://10.0.0.{i}:80").parse().unwrap();
                let client =
                    OriginClient::new("t", Duration::from_secs(1), Duration::from_secs(1), None);
                Shield::new(url, client)
            })
            .collect()
    }

    #[test]
    fn keys_spread_over_shields_and_losing_one_moves_only_its_keys() {
        let three = shields(3);
        let firsts: Vec<String> = (0..3000)
            .map(|k| order(&three, &format!("site\u{1f}k{k}"))[0].url.to_string())
            .collect();
        for s in &three {
            let n = firsts.iter().filter(|f| **f == s.url.to_string()).count();
            assert!((700..1300).contains(&n), "{} got {n} of 3000", s.url);
        }
        // Without shield 0, keys it did not own keep their shield.
        let two: Vec<Shield> = shields(3).into_iter().skip(1).collect();
        for (k, before) in firsts.iter().enumerate() {
            let key = format!("site\u{1f}k{k}");
            let after = order(&two, &key)[0].url.to_string();
            if *before != three[0].url.to_string() {
                assert_eq!(*before, after, "{key} moved");
            }
        }
    }

    #[test]
    fn only_trusted_edges_say_who_the_client_is() {
        let trusted: Vec<ipnetwork::IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let claim = || {
            let mut h = http::HeaderMap::new();
            h.insert(CLIENT_IP, "203.0.113.7".parse().unwrap());
            h.insert(CLIENT_COUNTRY, "de".parse().unwrap());
            h
        };
        let mut h = claim();
        let edge = "10.1.2.3".parse().unwrap();
        assert_eq!(
            client_from_edge(&mut h, edge, &trusted),
            (Some("203.0.113.7".parse().unwrap()), Some("DE".into()))
        );
        assert!(h.is_empty(), "read once, then gone");
        let mut h = claim();
        let stranger = "192.0.2.1".parse().unwrap();
        assert_eq!(client_from_edge(&mut h, stranger, &trusted), (None, None));
        assert!(h.is_empty(), "a stranger's claim never reaches the origin");
        let mut h = claim();
        h.insert(CLIENT_COUNTRY, "DEU".parse().unwrap());
        assert_eq!(client_from_edge(&mut h, edge, &trusted).1, None);
    }

    #[test]
    fn a_failing_shield_backs_off_longer_each_time_and_recovers() {
        let s = &shields(1)[0];
        assert!(s.up());
        s.failed();
        assert!(!s.up());
        let first = s.health().down_until.unwrap();
        s.failed();
        assert!(s.health().down_until.unwrap() > first);
        for _ in 0..20 {
            s.failed();
        }
        let cap = s.health().down_until.unwrap() - Instant::now();
        assert!(cap <= MAX_BACKOFF, "{cap:?}");
        s.succeeded();
        assert!(s.up());
    }
}
