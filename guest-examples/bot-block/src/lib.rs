//! Example script: answer `403 blocked` to vulnerability scanners and crude scrapers.
//!
//! `on_request` looks for any of [`BLOCKED_AGENTS`] in the `User-Agent`, ignoring case, and
//! answers at once with a 403 `text/plain` body `blocked\n`: no cache lookup, no origin
//! request. Everyone else, search-engine crawlers included, goes on unchanged. The list
//! matches tools that announce themselves; it is a cheap first filter, not bot detection.

use tessera_sdk::{EdgeScript, Request, RequestAction, SyntheticResponse};

/// Lower-case `User-Agent` fragments that get a 403.
///
/// Security scanners, site rippers and bare HTTP libraries that scrape without naming a
/// product. `curl/7.1` catches curl 7.10–7.19 (2002–2011), which today means a script
/// on an old box, not a person; current curl passes.
pub const BLOCKED_AGENTS: &[&str] = &[
    "badbot",
    "evilscraper",
    "sqlmap",
    "nikto",
    "nessus",
    "openvas",
    "acunetix",
    "netsparker",
    "wpscan",
    "dirbuster",
    "gobuster",
    "masscan",
    "zgrab",
    "nmap scripting engine",
    "httrack",
    "webcopier",
    "python-requests/",
    "python-urllib/",
    "libwww-perl/",
    "curl/7.1",
];

/// True when `user_agent` contains any of [`BLOCKED_AGENTS`], ignoring ASCII case.
pub fn is_blocked(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    BLOCKED_AGENTS.iter().any(|fragment| ua.contains(fragment))
}

/// The script: only `on_request` is defined.
pub struct BotBlock;

#[tessera_sdk::script]
impl EdgeScript for BotBlock {
    fn on_request(req: &Request) -> RequestAction {
        match req.header("user-agent") {
            Some(ua) if is_blocked(ua) => SyntheticResponse::new(403)
                .header("content-type", "text/plain")
                .body("blocked\n")
                .into(),
            _ => RequestAction::proceed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{call_on_request, describe, request};
    use tessera_sdk::{HookSet, ScriptInfo};

    fn action(ua: Option<&str>) -> RequestAction {
        let mut req = request("/");
        if let Some(ua) = ua {
            req = req.header("user-agent", ua);
        }
        call_on_request::<BotBlock>(&req.build())
    }

    #[test]
    fn scanners_get_a_plain_403() {
        let RequestAction::Respond(resp) = action(Some("sqlmap/1.7.2#stable (https://sqlmap.org)"))
        else {
            panic!("expected a synthetic response")
        };
        assert_eq!(resp.status, 403);
        assert_eq!(
            resp.headers,
            [("content-type".to_string(), "text/plain".to_string())]
        );
        assert_eq!(resp.body, b"blocked\n");
    }

    #[test]
    fn matching_ignores_case() {
        for ua in [
            "Mozilla/5.0 (compatible; BadBot/2.1)",
            "EVILSCRAPER",
            "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
            "python-requests/2.31.0",
            "curl/7.19.7 (x86_64-redhat-linux-gnu)",
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            "libwww-perl/6.67",
        ] {
            assert!(
                matches!(action(Some(ua)), RequestAction::Respond(_)),
                "{ua}"
            );
        }
    }

    #[test]
    fn browsers_current_curl_and_no_user_agent_go_through() {
        for ua in [
            Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"),
            Some("curl/8.5.0"),
            Some("curl/7.88.1"),
            None,
        ] {
            assert_eq!(action(ua), RequestAction::proceed(), "{ua:?}");
        }
    }

    #[test]
    fn search_engine_crawlers_are_not_blocked() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/600.2.5 (KHTML, like Gecko) Version/8.0.2 Safari/600.2.5 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        ] {
            assert_eq!(action(Some(ua)), RequestAction::proceed(), "{ua}");
        }
    }

    #[test]
    fn other_hooks_are_left_to_the_host() {
        assert_eq!(
            describe::<BotBlock>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }
}
