//! Building the script's view of a request or response from hyper's types.

use std::net::IpAddr;

use http::{HeaderMap, StatusCode};

use super::bindings::types::{ClientInfo, DeviceClass, Request, ResponseHead};

/// Classifies a User-Agent the way CDNs' device detection does, coarsely.
pub fn device_class(user_agent: Option<&str>) -> DeviceClass {
    let Some(ua) = user_agent else {
        return DeviceClass::Desktop;
    };
    let l = ua.to_ascii_lowercase();
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

/// Header list with lower-case names, as the WIT promises; non-UTF-8 values are dropped.
pub fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

impl Request {
    /// The script's view of an incoming request.
    pub fn from_parts(parts: &http::request::Parts, authority: &str, client_ip: IpAddr) -> Request {
        let ua = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Request {
            method: parts.method.as_str().to_owned(),
            scheme: "http".into(),
            authority: authority.to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: header_list(&parts.headers),
            client: ClientInfo {
                ip: client_ip.to_string(),
                country: None,
                device: device_class(ua),
            },
        }
    }
}

/// The script's view of a response head.
pub fn response_head(status: StatusCode, headers: &HeaderMap) -> ResponseHead {
    ResponseHead {
        status: status.as_u16(),
        headers: header_list(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_map_to_device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15";
        let tab =
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120 Safari/537.36";
        let phone = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36";
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let desk = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36";
        assert_eq!(device_class(Some(iphone)), DeviceClass::Mobile);
        assert_eq!(device_class(Some(phone)), DeviceClass::Mobile);
        assert_eq!(device_class(Some(ipad)), DeviceClass::Tablet);
        assert_eq!(device_class(Some(tab)), DeviceClass::Tablet);
        assert_eq!(device_class(Some(google)), DeviceClass::Bot);
        assert_eq!(device_class(Some(desk)), DeviceClass::Desktop);
        assert_eq!(device_class(None), DeviceClass::Desktop);
    }
}
