//! `tessera gen-log`: realistic sample access logs of a shop, reproducible from a seed,
//! to try `simulate` on (and to measure it) without a production log at hand.
//!
//! What makes real logs hard for a cache is modelled, not uniform noise: popularity
//! follows Zipf's law, campaign and click identifiers ride on page URLs, XHR calls carry
//! a cache-busting `_=` timestamp, thousands of browser builds send distinct User-Agents,
//! half the visitors carry session and analytics cookies, and bots crawl the long tail.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::macros::format_description;
use time::OffsetDateTime;

/// Output format of generated lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Apache/nginx Combined Log Format (no host, no cookies).
    Combined,
    /// One JSON object per line with host and cookies (nginx `escape=json` style).
    Json,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Lines to write.
    pub lines: u64,
    /// Seed: the same seed gives the same log.
    pub seed: u64,
    /// Time of the first line.
    pub start: SystemTime,
    /// Log time the lines span.
    pub span: Duration,
    /// The shop's host (JSON lines only).
    pub host: String,
    /// Output format.
    pub format: LogFormat,
}

const PRODUCTS: usize = 5_000;
const CATEGORIES: usize = 40;
const WORDS: &[&str] = &[
    "shoes", "boots", "red", "blue", "jacket", "sale", "linen", "wool", "kids", "running",
    "leather", "bag", "hat", "scarf", "gift", "summer", "winter", "socks", "belt", "denim",
];
const PARTNERS: &[&str] = &["blog", "newsletter", "partner-a", "partner-b", "compare"];
const ASSETS: &[(&str, u64)] = &[
    ("/static/app.3f9a1c2e.js", 182_311),
    ("/static/vendor.91bd07aa.js", 402_118),
    ("/static/site.5e21c9d0.css", 61_904),
    ("/static/fonts/inter.woff2", 48_256),
    ("/favicon.ico", 15_086),
];

/// A sampler of ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// One visitor: the same address, agent and cookies on every request.
struct Visitor {
    ip: String,
    agent: String,
    cookie: Option<String>,
    bot: bool,
}

fn agent(rng: &mut StdRng) -> (String, bool) {
    let chrome = rng.random_range(118..=131);
    let build = rng.random_range(5_000..6_800);
    let patch = rng.random_range(40..200);
    let ios = rng.random_range(15..=18);
    let minor = rng.random_range(0..=6);
    let p: u32 = rng.random_range(0..100);
    let ua = match p {
        0..45 => format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.{build}.{patch} Safari/537.36"),
        45..55 => format!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{ios}.{minor} Safari/605.1.15"),
        55..75 => format!("Mozilla/5.0 (iPhone; CPU iPhone OS {ios}_{minor} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{ios}.{minor} Mobile/15E148 Safari/604.1"),
        75..87 => format!("Mozilla/5.0 (Linux; Android 14; Pixel {}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.{build}.{patch} Mobile Safari/537.36", rng.random_range(6..=9)),
        87..91 => format!("Mozilla/5.0 (iPad; CPU OS {ios}_{minor} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{ios}.{minor} Mobile/15E148 Safari/604.1"),
        91..95 => format!("Mozilla/5.0 (X11; Linux x86_64; rv:{0}.0) Gecko/20100101 Firefox/{0}.0", rng.random_range(120..=133)),
        95..98 => return ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)".into(), true),
        98 => return ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)".into(), true),
        _ if rng.random_bool(0.5) => return ("python-requests/2.32.3".into(), true),
        _ => return ("UptimeMonitor/1.4 (+https://status.example)".into(), true),
    };
    (ua, false)
}

fn visitor(rng: &mut StdRng, n: usize) -> Visitor {
    let (agent, bot) = agent(rng);
    let mut cookies = Vec::new();
    if !bot && rng.random_bool(0.5) {
        cookies.push(format!(
            "_ga=GA1.2.{}.{}",
            rng.random_range(100_000_000..999_999_999u64),
            rng.random_range(1_700_000_000..1_790_000_000u64)
        ));
    }
    if !bot && rng.random_bool(0.35) {
        cookies.push(format!("sid={:016x}", rng.random::<u64>()));
    }
    Visitor {
        ip: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
        agent,
        cookie: (!cookies.is_empty()).then(|| cookies.join("; ")),
        bot,
    }
}

/// A stable size for a URL, so every request of it logs the same body length.
fn size_of(path: &str, lo: u64, hi: u64) -> u64 {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    lo + h % (hi - lo)
}

/// Campaign and click noise that rides on page URLs.
fn noise(rng: &mut StdRng, query: &mut Vec<String>) {
    let p: u32 = rng.random_range(0..100);
    match p {
        0..12 => {
            query.push("utm_source=newsletter".into());
            query.push("utm_medium=email".into());
            query.push(format!("utm_campaign=nov{}", rng.random_range(1..=4)));
        }
        12..18 => query.push(format!("fbclid=IwAR{:016x}", rng.random::<u64>())),
        18..22 => query.push(format!(
            "ref={}",
            PARTNERS[rng.random_range(0..PARTNERS.len())]
        )),
        _ => {}
    }
}

struct Line {
    method: &'static str,
    target: String,
    status: u16,
    bytes: u64,
}

fn request(rng: &mut StdRng, v: &Visitor, products: &Zipf, words: &Zipf, now_ms: u64) -> Line {
    let mut query: Vec<String> = Vec::new();
    let (method, path, mut status, bytes) = match rng.random_range(0..100u32) {
        0..30 => {
            // Crawlers walk the long tail, people the head.
            let id = if v.bot {
                rng.random_range(0..PRODUCTS)
            } else {
                products.sample(rng)
            };
            noise(rng, &mut query);
            let path = format!("/products/{}", 1000 + id);
            let status = if id >= PRODUCTS - 100 { 404 } else { 200 };
            let size = size_of(&path, 28_000, 64_000);
            ("GET", path, status, size)
        }
        30..40 => {
            let mut q = vec![
                format!("page={}", rng.random_range(1..=5)),
                format!(
                    "sort={}",
                    ["price", "new", "popular"][rng.random_range(0..3)]
                ),
            ];
            // Links are built by different code paths: the order varies.
            if rng.random_bool(0.5) {
                q.reverse();
            }
            query.extend(q);
            noise(rng, &mut query);
            let path = format!("/c/{}", rng.random_range(0..CATEGORIES));
            let size = size_of(&path, 40_000, 90_000);
            ("GET", path, 200, size)
        }
        40..48 => {
            noise(rng, &mut query);
            ("GET", "/".to_owned(), 200, 71_204)
        }
        48..73 => {
            if rng.random_bool(0.6) {
                let (p, size) = ASSETS[rng.random_range(0..ASSETS.len())];
                ("GET", p.to_owned(), 200, size)
            } else {
                let path = format!("/img/p{}.jpg", 1000 + products.sample(rng));
                let size = size_of(&path, 12_000, 180_000);
                ("GET", path, 200, size)
            }
        }
        73..83 => {
            query.push(format!("id={}", 1000 + products.sample(rng)));
            if rng.random_bool(0.4) {
                // jQuery's cache: false.
                query.push(format!("_={now_ms}"));
            }
            let status = if rng.random_bool(0.003) { 500 } else { 200 };
            (
                "GET",
                "/api/stock".to_owned(),
                status,
                rng.random_range(180..900),
            )
        }
        83..88 => {
            query.push(format!("q={}", WORDS[words.sample(rng)]));
            (
                "GET",
                "/search".to_owned(),
                200,
                rng.random_range(20_000..50_000),
            )
        }
        88..93 => (
            "GET",
            "/cart".to_owned(),
            200,
            rng.random_range(3_000..9_000),
        ),
        93..95 => ("POST", "/cart/add".to_owned(), 303, 0),
        95..97 => ("HEAD", "/".to_owned(), 200, 0),
        _ => ("GET", "/wp-login.php".to_owned(), 404, 1_204),
    };
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    if method == "GET" && status == 200 && !v.bot && rng.random_bool(0.08) {
        // A revalidation the browser made: no body.
        status = 304;
    }
    let bytes = if status == 304 { 0 } else { bytes };
    Line {
        method,
        target,
        status,
        bytes,
    }
}

/// Writes `spec.lines` lines to `out`.
pub fn generate(spec: &Spec, out: &mut impl Write) -> io::Result<()> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let products = Zipf::new(PRODUCTS, 0.9);
    let words = Zipf::new(WORDS.len(), 1.1);
    let visitors: Vec<Visitor> = (0..(spec.lines / 12).clamp(50, 200_000) as usize)
        .map(|n| visitor(&mut rng, n))
        .collect();
    let by_visitor = Zipf::new(visitors.len(), 0.6);
    let clf = format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    let step = spec.span.as_secs_f64() / spec.lines.max(1) as f64;
    for i in 0..spec.lines {
        let t = spec.start + Duration::from_secs_f64(step * i as f64);
        let now_ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let v = &visitors[by_visitor.sample(&mut rng)];
        let l = request(&mut rng, v, &products, &words, now_ms);
        let at = OffsetDateTime::from(t);
        match spec.format {
            LogFormat::Combined => writeln!(
                out,
                "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
                v.ip,
                at.format(&clf).map_err(io::Error::other)?,
                l.method,
                l.target,
                l.status,
                l.bytes,
                v.agent
            )?,
            LogFormat::Json => {
                let mut obj = serde_json::json!({
                    "time": at.format(&time::format_description::well_known::Rfc3339).map_err(io::Error::other)?,
                    "remote_addr": v.ip,
                    "host": spec.host,
                    "request": format!("{} {} HTTP/1.1", l.method, l.target),
                    "status": l.status,
                    "body_bytes_sent": l.bytes,
                    "http_user_agent": v.agent,
                });
                if let Some(c) = &v.cookie {
                    obj["http_cookie"] = c.clone().into();
                }
                writeln!(out, "{obj}")?;
            }
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::log::parse_line;

    fn spec(format: LogFormat) -> Spec {
        Spec {
            lines: 2_000,
            seed: 7,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200),
            span: Duration::from_secs(3_600),
            host: "shop.example".into(),
            format,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_log_and_every_line_reads_back() {
        for format in [LogFormat::Combined, LogFormat::Json] {
            let mut a = Vec::new();
            let mut b = Vec::new();
            generate(&spec(format), &mut a).unwrap();
            generate(&spec(format), &mut b).unwrap();
            assert_eq!(a, b);
            let text = String::from_utf8(a).unwrap();
            let records: Vec<_> = text
                .lines()
                .map(|l| parse_line(l).unwrap().unwrap())
                .collect();
            assert_eq!(records.len(), 2_000);
            assert!(records.windows(2).all(|w| w[0].time <= w[1].time));
            let last = records.last().unwrap().time;
            assert!(last < spec(format).start + Duration::from_secs(3_600));
            if format == LogFormat::Json {
                assert!(records
                    .iter()
                    .all(|r| r.host.as_deref() == Some("shop.example")));
                assert!(records.iter().any(|r| r.cookie.is_some()));
            }
        }
    }

    #[test]
    fn popular_pages_repeat_and_noise_is_present() {
        let mut out = Vec::new();
        generate(&spec(LogFormat::Combined), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let head = text.matches("\"GET /products/1000").count();
        let tail = text.matches("\"GET /products/5899").count();
        assert!(head > tail + 5, "Zipf: {head} vs {tail}");
        for needle in [
            "utm_source=",
            "fbclid=",
            "&_=",
            "Googlebot",
            "POST /cart/add",
            " 304 0 ",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
    }
}
