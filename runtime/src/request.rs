//! The client's request as the proxy and its scripts see it (host types, not WIT types).

use std::net::IpAddr;

use http::{HeaderMap, Method, Uri};

/// Device class derived from `User-Agent`, coarsely, the way CDNs' device detection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    /// A desktop or laptop browser (also the class of unknown agents).
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// A crawler, monitor or other automated client.
    Bot,
}

impl DeviceClass {
    /// The class's name as scripts see it (`desktop`, `mobile`, `tablet`, `bot`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Bot => "bot",
        }
    }

    /// Classifies a `User-Agent` value; no value is a desktop.
    pub fn of(user_agent: Option<&[u8]>) -> DeviceClass {
        let Some(ua) = user_agent else {
            return DeviceClass::Desktop;
        };
        let l = String::from_utf8_lossy(ua).to_ascii_lowercase();
        const BOTS: [&str; 9] = [
            "bot",
            "crawl",
            "spider",
            "slurp",
            "mediapartners",
            "lighthouse",
            "headlesschrome",
            "monitor",
            "preview",
        ];
        if BOTS.iter().any(|b| l.contains(b)) {
            DeviceClass::Bot
        } else if l.contains("ipad")
            || l.contains("tablet")
            || (l.contains("android") && !l.contains("mobi"))
        {
            DeviceClass::Tablet
        } else if l.contains("mobi")
            || l.contains("iphone")
            || l.contains("ipod")
            || l.contains("android")
        {
            DeviceClass::Mobile
        } else {
            DeviceClass::Desktop
        }
    }
}

/// What the host knows about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The peer address of the connection.
    pub ip: IpAddr,
    /// ISO 3166-1 alpha-2 code from the operator's trusted country header, upper case.
    pub country: Option<String>,
    /// Device class from `User-Agent`.
    pub device: DeviceClass,
}

/// A client request after routing: hop-by-hop fields removed, scripts' edits applied.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// Request method.
    pub method: Method,
    /// `http` or `https`, as the client reached this node.
    pub scheme: &'static str,
    /// Host (and port, if given) the client asked for.
    pub authority: String,
    /// Path and query as received.
    pub uri: Uri,
    /// Header fields.
    pub headers: HeaderMap,
    /// Facts about the client.
    pub client: Client,
    /// Bumped whenever `headers` change, so views built from them can be reused until then.
    pub version: u64,
}

impl ClientRequest {
    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw query, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }
}

/// Reads the client's country from a trusted header: two ASCII letters, upper-cased.
pub fn country_from(headers: &HeaderMap, name: Option<&http::HeaderName>) -> Option<String> {
    let v = headers.get(name?)?.as_bytes();
    (v.len() == 2 && v.iter().all(u8::is_ascii_alphabetic))
        .then(|| String::from_utf8_lossy(v).to_ascii_uppercase())
}

/// Whether an authority (a Host, a target's, an ESI fragment's) is `host[:port]` and nothing
/// else (RFC 9112 §3.2; empty: none given). Sites and cache keys are chosen by it, so
/// `shop.test:8080/account` must not reach them: `/x` would be stored under `/account/x`'s
/// key.
pub fn valid_authority(authority: &str) -> bool {
    if authority.is_empty() {
        return true;
    }
    // What follows the host: nothing, or `:` and a port number.
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, p)| p),
        None => Some(authority.find(':').map_or("", |i| &authority[i..])),
    };
    let port_ok = port.is_some_and(|p| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|n| n.parse::<u16>().is_ok() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    port_ok && !authority.contains('@') && authority.parse::<http::uri::Authority>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_host_and_port_and_nothing_else() {
        for ok in ["shop.test", "shop.test:8080", "[::1]:80", "127.0.0.1", ""] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "shop.test:8080/account",
            "shop.test/x",
            "shop.test?x",
            "shop.test#x",
            "user@shop.test",
            "shop.test:abc",
            "shop.test:",
            "shop test",
            "shop.test\\x",
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }

    #[test]
    fn user_agents_map_to_device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15";
        let tab =
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120 Safari/537.36";
        let phone = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36";
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let desk = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36";
        let of = |s: &str| DeviceClass::of(Some(s.as_bytes()));
        assert_eq!(of(iphone), DeviceClass::Mobile);
        assert_eq!(of(phone), DeviceClass::Mobile);
        assert_eq!(of(ipad), DeviceClass::Tablet);
        assert_eq!(of(tab), DeviceClass::Tablet);
        assert_eq!(of(google), DeviceClass::Bot);
        assert_eq!(of(desk), DeviceClass::Desktop);
        assert_eq!(DeviceClass::of(None), DeviceClass::Desktop);
        assert_eq!(DeviceClass::of(Some(b"Googlebot\x80")), DeviceClass::Bot);
    }

    #[test]
    fn the_country_header_must_be_two_letters() {
        let name = http::HeaderName::from_static("cf-ipcountry");
        let mut h = HeaderMap::new();
        assert_eq!(country_from(&h, Some(&name)), None);
        h.insert("cf-ipcountry", "nl".parse().unwrap());
        assert_eq!(country_from(&h, Some(&name)).as_deref(), Some("NL"));
        assert_eq!(country_from(&h, None), None);
        h.insert("cf-ipcountry", "N1".parse().unwrap());
        assert_eq!(country_from(&h, Some(&name)), None);
        h.insert("cf-ipcountry", "NLD".parse().unwrap());
        assert_eq!(country_from(&h, Some(&name)), None);
    }
}
