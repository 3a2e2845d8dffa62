//! What a simulation counts as requests go by: outcomes, bytes, keys, and the components
//! of keys that tend to explode (raw User-Agent, cookies, query parameters).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::time::SystemTime;

use super::log::LogRecord;
use super::report::{thousands, Bucket, Report, Served as ServedCounts, TopKey, Warning};
use crate::proxy::{Replayed, Served};

/// Query parameter names tracked per simulation; a log of made-up names stops there.
const MAX_PARAMS: usize = 256;
/// Cookie values and agents shorter than this are too common to tell apart inside a key.
const MIN_NEEDLE: usize = 8;

#[derive(Default)]
struct KeyStat {
    requests: u32,
    hits: u32,
}

/// Distinct values of one key component, as hashes, with the requests that had it.
#[derive(Default)]
struct Component {
    requests: u64,
    hits: u64,
    values: HashSet<u64>,
}

impl Component {
    fn add(&mut self, value_hash: u64, hit: bool) {
        self.requests += 1;
        self.hits += u64::from(hit);
        self.values.insert(value_hash);
    }
}

/// The running counts of one simulation.
pub struct Tally {
    label: String,
    cache_bytes: u64,
    served: ServedCounts,
    bytes: u64,
    bytes_from_cache: u64,
    origin_requests: u64,
    stored: u64,
    keys: HashMap<Box<str>, KeyStat>,
    urls: HashSet<u64>,
    minutes: BTreeMap<u64, (u64, u64)>,
    agent: Component,
    cookie: Component,
    params: HashMap<String, Component>,
    hasher: std::collections::hash_map::RandomState,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new(label: String, cache_bytes: u64) -> Tally {
        Tally {
            label,
            cache_bytes,
            served: ServedCounts::default(),
            bytes: 0,
            bytes_from_cache: 0,
            origin_requests: 0,
            stored: 0,
            keys: HashMap::new(),
            urls: HashSet::new(),
            minutes: BTreeMap::new(),
            agent: Component::default(),
            cookie: Component::default(),
            params: HashMap::new(),
            hasher: Default::default(),
        }
    }

    fn hash(&self, v: impl Hash) -> u64 {
        self.hasher.hash_one(v)
    }

    /// A line whose host no site serves, or whose target is not a URI.
    pub fn unroutable(&mut self) {
        self.served.unroutable += 1;
    }

    /// One replayed request.
    pub fn record(&mut self, rec: &LogRecord, now: SystemTime, done: &Replayed) {
        let hit = matches!(done.served, Served::Hit | Served::StaleHit);
        match done.served {
            Served::Hit => self.served.hit += 1,
            Served::StaleHit => self.served.stale += 1,
            Served::Miss => self.served.miss += 1,
            Served::Pass => self.served.pass += 1,
            Served::Edge => self.served.edge += 1,
            Served::Refused => self.served.refused += 1,
        }
        if !matches!(done.served, Served::Edge | Served::Refused) {
            self.bytes += rec.bytes;
            if hit {
                self.bytes_from_cache += rec.bytes;
            }
        }
        self.origin_requests += u64::from(done.origin_requests);
        self.stored += u64::from(done.stored);
        let minute = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let m = self.minutes.entry(minute).or_default();
        m.0 += 1;
        m.1 += u64::from(done.origin_requests);
        let url = self.hash((&rec.host, &rec.target));
        self.urls.insert(url);
        let Some(key) = &done.key else { return };
        match self.keys.get_mut(key.as_str()) {
            Some(k) => {
                k.requests += 1;
                k.hits += u32::from(hit);
            }
            None => {
                self.keys.insert(
                    key.as_str().into(),
                    KeyStat {
                        requests: 1,
                        hits: u32::from(hit),
                    },
                );
            }
        }
        self.components(rec, key, hit);
    }

    /// Which hostile-to-caching components this key carries.
    fn components(&mut self, rec: &LogRecord, key: &str, hit: bool) {
        if let Some(ua) = rec.user_agent.as_deref() {
            if ua.len() >= MIN_NEEDLE && key.contains(ua) {
                let h = self.hash(ua);
                self.agent.add(h, hit);
            }
        }
        if let Some(cookie) = rec.cookie.as_deref() {
            let whole = cookie.len() >= MIN_NEEDLE && key.contains(cookie);
            let value = cookie
                .split(';')
                .filter_map(|c| c.split_once('=').map(|(_, v)| v.trim()))
                .find(|v| v.len() >= MIN_NEEDLE && key.contains(v));
            if let Some(v) = whole.then_some(cookie).or(value) {
                let h = self.hash(v);
                self.cookie.add(h, hit);
            }
        }
        let Some((_, query)) = key.split_once('?') else {
            return;
        };
        let query = query.split(['#', '|', ' ']).next().unwrap_or("");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let h = self.hash(value);
            if let Some(c) = self.params.get_mut(name) {
                c.add(h, hit);
            } else if self.params.len() < MAX_PARAMS {
                let mut c = Component::default();
                c.add(h, hit);
                self.params.insert(name.to_owned(), c);
            }
        }
    }

    /// The report of what was counted; `objects` is what the store holds at the end.
    pub fn report(&self, top: usize, objects: u64) -> Report {
        let served = self.served.clone();
        let from_cache = served.hit + served.stale;
        let needed = from_cache + served.miss + served.pass;
        let mut ranked: Vec<(&Box<str>, &KeyStat)> = self.keys.iter().collect();
        let top = top.min(ranked.len());
        if top > 0 {
            ranked.select_nth_unstable_by(top - 1, |a, b| {
                b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0))
            });
            ranked.truncate(top);
            ranked.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        } else {
            ranked.clear();
        }
        let once = self.keys.values().filter(|k| k.requests == 1).count() as u64;
        Report {
            label: self.label.clone(),
            cache_bytes: self.cache_bytes,
            requests: served.total(),
            served,
            hit_ratio: ratio(from_cache, needed),
            byte_hit_ratio: ratio(self.bytes_from_cache, self.bytes),
            origin_requests: self.origin_requests,
            stored: self.stored,
            objects_at_end: objects,
            keys: self.keys.len() as u64,
            urls: self.urls.len() as u64,
            keys_requested_once: once,
            top_keys: ranked
                .into_iter()
                .map(|(k, s)| TopKey {
                    key: k.to_string(),
                    requests: u64::from(s.requests),
                    hit_ratio: ratio(u64::from(s.hits), u64::from(s.requests)),
                })
                .collect(),
            timeline: self.timeline(),
            warnings: self.warnings(once),
        }
    }

    /// Requests and origin requests over time, in at most 24 rows of a round width.
    fn timeline(&self) -> Vec<Bucket> {
        let (Some(first), Some(last)) = (self.minutes.keys().next(), self.minutes.keys().last())
        else {
            return Vec::new();
        };
        let span = last - first + 1;
        let width = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440]
            .into_iter()
            .find(|w| span.div_ceil(*w) <= 24)
            .unwrap_or(span.div_ceil(24));
        let start = first - first % width;
        let mut rows: BTreeMap<u64, Bucket> = BTreeMap::new();
        for (m, (req, origin)) in &self.minutes {
            let at = start + (m - start) / width * width;
            let b = rows.entry(at).or_insert_with(|| Bucket {
                start: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at * 60),
                minutes: width,
                requests: 0,
                origin_requests: 0,
            });
            b.requests += req;
            b.origin_requests += origin;
        }
        rows.into_values().collect()
    }

    fn warnings(&self, once: u64) -> Vec<Warning> {
        let mut w = Vec::new();
        let share = |c: &Component| ratio(c.hits, c.requests);
        if self.agent.values.len() >= 2 {
            w.push(Warning {
                component: "user-agent".into(),
                message: format!(
                    "the key holds the raw User-Agent: {} distinct values in {} requests (their hit ratio {:.1}%); key on the device class instead",
                    thousands(self.agent.values.len() as u64),
                    thousands(self.agent.requests),
                    share(&self.agent) * 100.0
                ),
            });
        }
        if self.cookie.values.len() >= 2 {
            w.push(Warning {
                component: "cookie".into(),
                message: format!(
                    "the key holds cookie values: {} distinct in {} requests (their hit ratio {:.1}%); key on a class of visitor, or pass signed-in traffic",
                    thousands(self.cookie.values.len() as u64),
                    thousands(self.cookie.requests),
                    share(&self.cookie) * 100.0
                ),
            });
        }
        let mut params: Vec<(&String, &Component)> = self
            .params
            .iter()
            .filter(|(_, c)| c.requests >= 20 && c.values.len() as f64 >= 0.8 * c.requests as f64)
            .collect();
        params.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        for (name, c) in params {
            w.push(Warning {
                component: format!("query:{name}"),
                message: format!(
                    "query parameter `{name}` in the key: {} distinct values in {} requests ({:.0}% unique, their hit ratio {:.1}%); drop it in cache_key if it does not change the content",
                    thousands(c.values.len() as u64),
                    thousands(c.requests),
                    c.values.len() as f64 * 100.0 / c.requests as f64,
                    share(c) * 100.0
                ),
            });
        }
        let keys = self.keys.len() as u64;
        let urls = self.urls.len() as u64;
        if urls > 0 && keys as f64 > 1.5 * urls as f64 {
            w.push(Warning {
                component: "fragmentation".into(),
                message: format!(
                    "{} keys for {} distinct URLs ({:.1} per URL): each copy is fetched and stored on its own",
                    thousands(keys),
                    thousands(urls),
                    keys as f64 / urls as f64
                ),
            });
        }
        if keys >= 100 && once as f64 >= 0.8 * keys as f64 {
            w.push(Warning {
                component: "one-hit keys".into(),
                message: format!(
                    "{} of {} keys ({:.0}%) were requested only once: those requests cannot hit",
                    thousands(once),
                    thousands(keys),
                    once as f64 * 100.0 / keys as f64
                ),
            });
        }
        w
    }
}

/// `part / whole`, 0 for an empty whole.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(i: u64, ua: &str, cookie: &str) -> LogRecord {
        LogRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200 + i),
            client: None,
            method: "GET".into(),
            host: None,
            target: "/p".into(),
            status: 200,
            bytes: 100,
            user_agent: Some(ua.into()),
            cookie: Some(cookie.into()),
            content_type: None,
            country: None,
        }
    }

    fn replayed(key: String) -> Replayed {
        Replayed {
            served: Served::Miss,
            key: Some(key),
            origin_requests: 1,
            stored: true,
        }
    }

    fn components(report: &Report) -> Vec<&str> {
        report
            .warnings
            .iter()
            .map(|w| w.component.as_str())
            .collect()
    }

    #[test]
    fn agents_cookies_and_unique_parameters_in_keys_are_named() {
        let mut t = Tally::new("x".into(), 1 << 20);
        for i in 0..40 {
            let ua = format!("Mozilla/5.0 Chrome/{i}.0");
            let cookie = format!("theme=dark; sid=session{i:04}");
            let r = rec(i, &ua, &cookie);
            let key = format!("h/p?page=1&cb={i}|{ua}|session{i:04}");
            t.record(&r, r.time, &replayed(key));
        }
        let report = t.report(3, 0);
        let named = components(&report);
        assert!(named.contains(&"user-agent"), "{named:?}");
        assert!(named.contains(&"cookie"), "{named:?}");
        assert!(named.contains(&"query:cb"), "{named:?}");
        assert!(
            !named.contains(&"query:page"),
            "a constant parameter is fine: {named:?}"
        );
        assert!(
            named.contains(&"fragmentation"),
            "40 keys for 1 URL: {named:?}"
        );
        assert_eq!(report.top_keys.len(), 3);
        assert_eq!(report.keys, 40);
        assert_eq!(report.urls, 1);
    }

    #[test]
    fn a_key_of_device_class_and_path_raises_nothing() {
        let mut t = Tally::new("x".into(), 1 << 20);
        for i in 0..100 {
            let mut r = rec(i, "Mozilla/5.0 (iPhone) Mobile", "sid=abcdefgh12345");
            r.target = format!("/p{}?page={}", i % 5, i % 3);
            let key = format!("h/p{}?page={}#mobile", i % 5, i % 3);
            t.record(&r, r.time, &replayed(key));
        }
        let report = t.report(10, 0);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(report.requests, 100);
        assert_eq!(
            report.timeline.len(),
            2,
            "100 s over two minutes, 1 min rows"
        );
    }
}
