//! Cache-Control, CDN-Cache-Control and Surrogate-Control parsing (RFC 9111 §5.2, RFC 9213, Edge Architecture 1.0).

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL};

/// Largest delta-seconds a cache must be able to represent; bigger values clamp to it (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u32 = 2_147_483_648;

/// Parsed Cache-Control-style directives (RFC 9111 §5.2), from a request or a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheControl {
    /// `max-age` (§5.2.1.1, §5.2.2.1); an invalid value reads as `Some(0)`.
    pub max_age: Option<u32>,
    /// `s-maxage` (§5.2.2.10); an invalid value reads as `Some(0)`.
    pub s_maxage: Option<u32>,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache` (§5.2.2.4): `Some(empty)` unqualified, `Some(fields)` qualified (lower-cased).
    pub no_cache: Option<Vec<String>>,
    /// `private` (§5.2.2.7): same shape as `no_cache`.
    pub private: Option<Vec<String>>,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861 §4), valid in requests and responses.
    pub stale_if_error: Option<u32>,
    /// Request `max-stale` (§5.2.1.2): `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<u32>>,
    /// Request `min-fresh` (§5.2.1.3).
    pub min_fresh: Option<u32>,
    /// Request `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
}

/// A directive value as written, before it is interpreted.
enum Arg<'a> {
    None,
    Text(std::borrow::Cow<'a, str>),
}

impl CacheControl {
    /// Parses every value of the field (all field lines joined as a list).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in values {
            for element in split_list(value) {
                let (name, arg) = split_directive(element);
                if name.is_empty() {
                    continue;
                }
                cc.apply(&name.to_ascii_lowercase(), arg);
            }
        }
        // Qualified lists are gathered, then deduplicated once: per occurrence, thousands
        // of names in one header would cost their square.
        for fields in [&mut cc.no_cache, &mut cc.private].into_iter().flatten() {
            fields.sort_unstable();
            fields.dedup();
        }
        cc
    }

    /// Parses all `Cache-Control` lines of a header map.
    pub fn from_headers(headers: &HeaderMap) -> CacheControl {
        CacheControl::parse(
            headers
                .get_all(CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// True when this is an unqualified `no-cache` (§5.2.2.4): every reuse needs validation.
    pub fn no_cache_unqualified(&self) -> bool {
        matches!(&self.no_cache, Some(f) if f.is_empty())
    }

    /// True when this is an unqualified `private` (§5.2.2.7): a shared cache must not store.
    pub fn private_unqualified(&self) -> bool {
        matches!(&self.private, Some(f) if f.is_empty())
    }

    fn apply(&mut self, name: &str, arg: Arg<'_>) {
        let text = match &arg {
            Arg::None => None,
            Arg::Text(t) => Some(t.as_ref()),
        };
        match name {
            // RFC 9111 §4.2.1: an invalid freshness value is most restrictively read as stale.
            "max-age" => merge_lifetime(&mut self.max_age, delta_seconds(text).unwrap_or(0)),
            "s-maxage" => merge_lifetime(&mut self.s_maxage, delta_seconds(text).unwrap_or(0)),
            // Stale windows: an invalid value grants nothing; duplicates keep the smallest.
            "stale-while-revalidate" => {
                merge_min(&mut self.stale_while_revalidate, delta_seconds(text))
            }
            "stale-if-error" => merge_min(&mut self.stale_if_error, delta_seconds(text)),
            "min-fresh" => {
                // Larger min-fresh is the more restrictive request.
                if let Some(v) = delta_seconds(text) {
                    self.min_fresh = Some(self.min_fresh.map_or(v, |old| old.max(v)));
                }
            }
            "max-stale" => match text {
                None => {
                    if self.max_stale.is_none() {
                        self.max_stale = Some(None);
                    }
                }
                Some(_) => {
                    // RFC 9111 §5.2.1.2: an invalid bound accepts no staleness at all.
                    let v = delta_seconds(text).unwrap_or(0);
                    let merged = match self.max_stale {
                        Some(Some(old)) => old.min(v),
                        _ => v,
                    };
                    self.max_stale = Some(Some(merged));
                }
            },
            "no-cache" => merge_fields(&mut self.no_cache, text),
            "private" => merge_fields(&mut self.private, text),
            "no-store" => self.no_store = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "immutable" => self.immutable = true,
            "no-transform" => self.no_transform = true,
            "must-understand" => self.must_understand = true,
            "only-if-cached" => self.only_if_cached = true,
            // RFC 9111 §5.2.3: unknown extensions are ignored.
            _ => {}
        }
    }
}

/// RFC 9111 §4.2.1: with conflicting duplicates "the response should be considered stale".
fn merge_lifetime(slot: &mut Option<u32>, v: u32) {
    *slot = Some(match *slot {
        Some(old) if old != v => 0,
        _ => v,
    });
}

fn merge_min(slot: &mut Option<u32>, v: Option<u32>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |old| old.min(v)));
    }
}

/// Unqualified beats qualified (it is more restrictive); qualified lists are unioned.
fn merge_fields(slot: &mut Option<Vec<String>>, arg: Option<&str>) {
    let fields: Vec<String> = arg
        .map(|a| {
            a.split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    match slot {
        Some(existing) if existing.is_empty() => {}
        Some(_) if fields.is_empty() => *slot = Some(Vec::new()),
        // Deduplicated once the whole field is read (`CacheControl::parse`).
        Some(existing) => existing.extend(fields),
        None => *slot = Some(fields),
    }
}

/// delta-seconds = 1*DIGIT, clamped to 2^31 (RFC 9111 §1.2.2); `None` when invalid.
fn delta_seconds(text: Option<&str>) -> Option<u32> {
    let t = text?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in t.bytes() {
        v = v * 10 + u64::from(b - b'0');
        if v >= u64::from(DELTA_SECONDS_MAX) {
            return Some(DELTA_SECONDS_MAX);
        }
    }
    Some(v as u32)
}

/// Splits a `#rule` list on commas outside quoted strings, dropping empty elements (RFC 9110 §5.6.1).
fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == b',' {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

/// Splits `name[=value]`, unquoting a quoted-string value (RFC 9110 §5.6.4).
///
/// The grammar `token [ "=" ( token / quoted-string ) ]` (RFC 9111 §5.2) has no whitespace
/// around `=`: `max-age =60` names no known directive and is ignored, `max-age= 60` has an
/// invalid value (for a lifetime: stale). Neither may grant freshness.
fn split_directive(element: &str) -> (&str, Arg<'_>) {
    match element.split_once('=') {
        None => (element.trim(), Arg::None),
        Some((name, value)) => (name.trim_start(), Arg::Text(unquote(value.trim_end()))),
    }
}

fn unquote(value: &str) -> std::borrow::Cow<'_, str> {
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if value.len() >= 2 => inner,
        _ => return value.into(),
    };
    if !inner.contains('\\') {
        return inner.into();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

// ---------------------------------------------------------------------------
// Targeted fields (RFC 9213) and Surrogate-Control (Edge Architecture 1.0)
// ---------------------------------------------------------------------------

/// The `Surrogate-Control` response field (Edge Architecture Specification 1.0 §3).
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// The `CDN-Cache-Control` response field (RFC 9213 §3.1).
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Device token this cache answers to in `Surrogate-Control` targeting when none is configured.
pub const DEFAULT_DEVICE_TOKEN: &str = "tessera";

/// Which fields decide caching for this cache, in precedence order (RFC 9213 §2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    names: Vec<HeaderName>,
    device_token: String,
}

impl Targets {
    /// Targets in precedence order, with the Surrogate-Control device token this cache answers to.
    pub fn new(names: impl IntoIterator<Item = HeaderName>, device_token: &str) -> Targets {
        Targets {
            names: names.into_iter().collect(),
            device_token: device_token.to_owned(),
        }
    }

    /// No targeted fields: only Cache-Control and Expires decide.
    pub fn none() -> Targets {
        Targets::new([], DEFAULT_DEVICE_TOKEN)
    }

    /// The targeted field names, highest precedence first.
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// The Surrogate-Control device token this cache answers to.
    pub fn device_token(&self) -> &str {
        &self.device_token
    }
}

impl Default for Targets {
    fn default() -> Self {
        Targets::new([CDN_CACHE_CONTROL, SURROGATE_CONTROL], DEFAULT_DEVICE_TOKEN)
    }
}

/// Where the effective caching policy of a response came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A targeted field; Cache-Control and Expires are ignored for this cache (RFC 9213 §2.1).
    Targeted(HeaderName),
    /// Cache-Control (together with Expires, which freshness reads).
    CacheControl,
}

/// The caching policy fields chosen for a response.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveControl {
    /// The directives that apply to this cache.
    pub cc: CacheControl,
    /// Which field they came from.
    pub source: Source,
    /// `Surrogate-Control: content="…"` addressed to this cache (e.g. `ESI/1.0`), whatever the source.
    pub surrogate_content: Option<String>,
}

impl EffectiveControl {
    /// True when Expires must be ignored because a targeted field decided (RFC 9213 §2.1).
    pub fn ignores_expires(&self) -> bool {
        matches!(self.source, Source::Targeted(_))
    }
}

/// Picks the first targeted field with a valid, non-empty value; otherwise Cache-Control (+ Expires handled by freshness).
pub fn effective_response_control(headers: &HeaderMap, targets: &Targets) -> EffectiveControl {
    let surrogate = joined(headers, &SURROGATE_CONTROL)
        .map(|v| parse_surrogate_control(&v, &targets.device_token));
    let surrogate_content = surrogate.as_ref().and_then(|s| s.content.clone());
    for name in &targets.names {
        let chosen = if *name == SURROGATE_CONTROL {
            // A Surrogate-Control that only says content="ESI/1.0" sets no caching policy;
            // falling through keeps Cache-Control in charge of freshness.
            surrogate
                .as_ref()
                .filter(|s| s.has_policy)
                .map(|s| s.cc.clone())
        } else {
            // RFC 9213 §2.2: an empty or unparseable targeted field is ignored.
            joined(headers, name).and_then(|v| parse_targeted_dictionary(&v))
        };
        if let Some(cc) = chosen {
            return EffectiveControl {
                cc,
                source: Source::Targeted(name.clone()),
                surrogate_content,
            };
        }
    }
    EffectiveControl {
        cc: CacheControl::from_headers(headers),
        source: Source::CacheControl,
        surrogate_content,
    }
}

/// Removes `Surrogate-Control` before delivery (Edge Architecture 1.0: it is for surrogates only).
pub fn strip_targeted(headers: &mut HeaderMap) {
    headers.remove(SURROGATE_CONTROL);
}

/// All lines of a field joined as one list (RFC 9110 §5.3); `None` when absent or not text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(acc) => {
                acc.push_str(", ");
                acc.push_str(s);
            }
            None => out = Some(s.to_owned()),
        }
    }
    out
}

struct Surrogate {
    cc: CacheControl,
    has_policy: bool,
    content: Option<String>,
}

/// Edge Architecture 1.0 §3: `1#( directive [ ";" device-token ] )`.
fn parse_surrogate_control(value: &str, device_token: &str) -> Surrogate {
    let mut general = Surrogate {
        cc: CacheControl::default(),
        has_policy: false,
        content: None,
    };
    let mut targeted = Surrogate {
        cc: CacheControl::default(),
        has_policy: false,
        content: None,
    };
    for element in split_list(value) {
        let (directive, target) = split_target(element);
        let slot = match target {
            None => &mut general,
            Some(t) if t.eq_ignore_ascii_case(device_token) => &mut targeted,
            Some(_) => continue,
        };
        let (name, arg) = split_directive(directive);
        let text = match &arg {
            Arg::None => None,
            Arg::Text(t) => Some(t.as_ref()),
        };
        match name.to_ascii_lowercase().as_str() {
            // `max-age=N+M`: N is the freshness lifetime; M is extra time the surrogate may keep
            // serving the object when the origin cannot be reached, so it maps to stale-if-error
            // only (serving it to hide latency, i.e. stale-while-revalidate, is not granted).
            "max-age" => {
                let (ttl, extra) = match text.and_then(|t| t.split_once('+')) {
                    Some((n, m)) => (delta_seconds(Some(n.trim())), delta_seconds(Some(m.trim()))),
                    None => (delta_seconds(text), None),
                };
                merge_lifetime(&mut slot.cc.max_age, ttl.unwrap_or(0));
                merge_min(&mut slot.cc.stale_if_error, extra);
                slot.has_policy = true;
            }
            // `no-store-remote` targets surrogates far from the origin; an edge cache is one.
            "no-store" | "no-store-remote" => {
                slot.cc.no_store = true;
                slot.has_policy = true;
            }
            "content" => slot.content = text.map(str::to_owned),
            _ => {}
        }
    }
    // Directives addressed to this device override the untargeted ones.
    let cc = if targeted.has_policy {
        CacheControl {
            max_age: targeted.cc.max_age.or(general.cc.max_age),
            stale_if_error: targeted
                .cc
                .max_age
                .map_or(general.cc.stale_if_error, |_| targeted.cc.stale_if_error),
            no_store: targeted.cc.no_store || general.cc.no_store,
            ..CacheControl::default()
        }
    } else {
        general.cc
    };
    Surrogate {
        cc,
        has_policy: general.has_policy || targeted.has_policy,
        content: targeted.content.or(general.content),
    }
}

/// Splits `directive;target`, ignoring semicolons inside a quoted value.
fn split_target(element: &str) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut split = None;
    for (i, b) in element.bytes().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => split = Some(i),
            _ => {}
        }
    }
    match split {
        Some(i) => (element[..i].trim(), Some(element[i + 1..].trim())),
        None => (element, None),
    }
}

/// An RFC 8941 bare item, as far as cache directives need one.
#[derive(Debug, Clone, PartialEq)]
enum Bare {
    Integer(i64),
    Decimal,
    Str(String),
    Token(String),
    Binary,
    Boolean(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Member {
    Item(Bare),
    InnerList(Vec<Bare>),
}

/// RFC 9213 §2.2: a targeted field is an sf-dictionary; `None` when empty or invalid.
fn parse_targeted_dictionary(value: &str) -> Option<CacheControl> {
    let members = SfParser::new(value).dictionary()?;
    if members.is_empty() {
        return None;
    }
    let mut cc = CacheControl::default();
    for (key, member) in members {
        let duration = matches!(
            key.as_str(),
            "max-age"
                | "s-maxage"
                | "stale-while-revalidate"
                | "stale-if-error"
                | "min-fresh"
                | "max-stale"
        );
        // RFC 9213 §2.2: no value maps to Boolean, a token to Token/Integer/Decimal, a
        // quoted-string to String. `?0` says the directive is absent; a duration that is not a
        // non-negative Integer violates the inferred type and reads as invalid.
        let arg = match member {
            Member::Item(Bare::Boolean(false)) => continue,
            Member::Item(Bare::Boolean(true)) => Arg::None,
            Member::Item(Bare::Integer(i)) if i >= 0 => Arg::Text(i.to_string().into()),
            _ if duration => Arg::Text("invalid".into()),
            Member::Item(Bare::Str(s)) | Member::Item(Bare::Token(s)) => Arg::Text(s.into()),
            Member::InnerList(items) => Arg::Text(
                items
                    .into_iter()
                    .filter_map(|b| match b {
                        Bare::Str(s) | Bare::Token(s) => Some(s),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(",")
                    .into(),
            ),
            Member::Item(_) => Arg::None,
        };
        cc.apply(&key, arg);
    }
    Some(cc)
}

/// A small RFC 8941 §4.2 parser: dictionaries, items, inner lists; parameters are skipped.
struct SfParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> SfParser<'a> {
    fn new(s: &'a str) -> Self {
        SfParser {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// RFC 8941 §4.2: leading and trailing SP are discarded; then §4.2.2.
    fn dictionary(mut self) -> Option<Vec<(String, Member)>> {
        self.skip_sp();
        let mut out: Vec<(String, Member)> = Vec::new();
        if self.peek().is_none() {
            return Some(out);
        }
        loop {
            let key = self.key()?;
            let member = if self.peek() == Some(b'=') {
                self.i += 1;
                self.member_value()?
            } else {
                self.parameters()?;
                Member::Item(Bare::Boolean(true))
            };
            // RFC 8941 §4.2.2: a repeated key overwrites the earlier value.
            out.retain(|(k, _)| *k != key);
            out.push((key, member));
            self.skip_ows();
            match self.peek() {
                None => return Some(out),
                Some(b',') => self.i += 1,
                Some(_) => return None,
            }
            self.skip_ows();
            self.peek()?; // trailing comma is an error
        }
    }

    fn member_value(&mut self) -> Option<Member> {
        if self.peek() == Some(b'(') {
            self.i += 1;
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                match self.peek()? {
                    b')' => {
                        self.i += 1;
                        self.parameters()?;
                        return Some(Member::InnerList(items));
                    }
                    _ => {
                        items.push(self.bare_item()?);
                        self.parameters()?;
                        if !matches!(self.peek()?, b' ' | b')') {
                            return None;
                        }
                    }
                }
            }
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(Member::Item(item))
    }

    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.i += 1,
            _ => return None,
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.i += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip_sp();
            self.key()?;
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'?' => {
                self.i += 1;
                let v = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.i += 1;
                Some(Bare::Boolean(v))
            }
            b':' => {
                self.i += 1;
                while let Some(b) = self.peek() {
                    self.i += 1;
                    if b == b':' {
                        return Some(Bare::Binary);
                    }
                    if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
                        return None;
                    }
                }
                None
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => {
                let start = self.i;
                self.i += 1;
                while let Some(b) = self.peek() {
                    if is_tchar(b) || b == b':' || b == b'/' {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                Some(Bare::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits, or 12.3 for decimals.
    fn number(&mut self) -> Option<Bare> {
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut dot = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => self.i += 1,
                b'.' if dot.is_none() => {
                    dot = Some(self.i);
                    self.i += 1;
                }
                _ => break,
            }
        }
        let digits = &self.s[start..self.i];
        if digits.is_empty() || !digits[0].is_ascii_digit() {
            return None;
        }
        match dot {
            None => {
                if digits.len() > 15 {
                    return None;
                }
                let v: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                Some(Bare::Integer(if neg { -v } else { v }))
            }
            Some(d) => {
                let int_len = d - start;
                let frac_len = self.i - d - 1;
                if int_len > 12 || frac_len == 0 || frac_len > 3 {
                    return None;
                }
                Some(Bare::Decimal)
            }
        }
    }

    fn string(&mut self) -> Option<Bare> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return Some(Bare::Str(out)),
                b'\\' => {
                    let n = self.peek()?;
                    if n != b'"' && n != b'\\' {
                        return None;
                    }
                    self.i += 1;
                    out.push(n as char);
                }
                0x20..=0x7e => out.push(b as char),
                _ => return None,
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(v: &str) -> CacheControl {
        CacheControl::parse([v])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_common_response_directives_rfc9111_5_2_2() {
        let c = cc(
            "public, max-age=60, s-maxage=120, must-revalidate, proxy-revalidate, immutable, no-transform, must-understand, no-store",
        );
        assert!(c.public && c.must_revalidate && c.proxy_revalidate && c.immutable);
        assert!(c.no_transform && c.must_understand && c.no_store);
        assert_eq!((c.max_age, c.s_maxage), (Some(60), Some(120)));
    }

    #[test]
    fn parses_request_directives_rfc9111_5_2_1() {
        let c = cc("max-age=5, max-stale, min-fresh=10, only-if-cached, stale-if-error=30");
        assert_eq!(c.max_age, Some(5));
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(c.min_fresh, Some(10));
        assert!(c.only_if_cached);
        assert_eq!(c.stale_if_error, Some(30));
        assert_eq!(cc("max-stale=7").max_stale, Some(Some(7)));
    }

    #[test]
    fn directive_names_are_case_insensitive_rfc9111_5_2() {
        let c = cc("Max-Age=60, NO-STORE, Private");
        assert_eq!(c.max_age, Some(60));
        assert!(c.no_store);
        assert!(c.private_unqualified());
    }

    #[test]
    fn whitespace_and_empty_list_elements_are_tolerated_rfc9110_5_6_1() {
        let c = cc(" ,, max-age=60 ,\t, public ,");
        assert_eq!(c.max_age, Some(60));
        assert!(c.public);
    }

    #[test]
    fn quoted_delta_seconds_is_accepted_rfc9111_5_2() {
        assert_eq!(cc("max-age=\"60\"").max_age, Some(60));
        assert_eq!(cc("s-maxage=\"5\"").s_maxage, Some(5));
    }

    #[test]
    fn invalid_max_age_is_treated_as_stale_rfc9111_4_2_1() {
        assert_eq!(cc("max-age=abc").max_age, Some(0));
        assert_eq!(cc("max-age=-1").max_age, Some(0));
        assert_eq!(cc("max-age").max_age, Some(0));
        assert_eq!(cc("max-age=").max_age, Some(0));
        assert_eq!(cc("max-age=1.5").max_age, Some(0));
    }

    #[test]
    fn huge_delta_seconds_clamp_to_2_pow_31_rfc9111_1_2_2() {
        assert_eq!(
            cc("max-age=99999999999999999999").max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(cc("max-age=2147483648").max_age, Some(DELTA_SECONDS_MAX));
        assert_eq!(cc("max-age=2147483647").max_age, Some(2_147_483_647));
    }

    #[test]
    fn conflicting_duplicate_max_age_is_considered_stale_rfc9111_4_2_1() {
        assert_eq!(cc("max-age=60, max-age=30").max_age, Some(0));
        assert_eq!(
            CacheControl::parse(["max-age=60", "max-age=60"]).max_age,
            Some(60)
        );
    }

    #[test]
    fn duplicate_stale_windows_keep_the_most_restrictive_rfc9111_4_2_1() {
        let c = cc(
            "stale-while-revalidate=60, stale-while-revalidate=10, stale-if-error=5, stale-if-error=50",
        );
        assert_eq!(c.stale_while_revalidate, Some(10));
        assert_eq!(c.stale_if_error, Some(5));
        assert_eq!(cc("min-fresh=5, min-fresh=20").min_fresh, Some(20));
        assert_eq!(cc("max-stale, max-stale=9").max_stale, Some(Some(9)));
    }

    #[test]
    fn qualified_no_cache_keeps_lowercased_fields_with_commas_in_quotes_rfc9111_5_2_2_4() {
        let c = cc("no-cache=\"Set-Cookie, X-Foo\", max-age=10");
        assert_eq!(c.no_cache, Some(vec!["set-cookie".into(), "x-foo".into()]));
        assert_eq!(c.max_age, Some(10));
        assert!(!c.no_cache_unqualified());
    }

    #[test]
    fn token_form_of_qualified_private_is_accepted_rfc9111_5_2_2_7() {
        assert_eq!(cc("private=x-user").private, Some(vec!["x-user".into()]));
    }

    #[test]
    fn unqualified_no_cache_wins_over_qualified_rfc9111_4_2_1() {
        let c = cc("no-cache=\"a\", no-cache");
        assert!(c.no_cache_unqualified());
        let c = cc("private, private=\"a\"");
        assert!(c.private_unqualified());
    }

    #[test]
    fn unknown_directives_are_ignored_rfc9111_5_2_3() {
        let c = cc("community=\"UCI\", foo=\"a,b\", max-age=3");
        assert_eq!(
            c,
            CacheControl {
                max_age: Some(3),
                ..Default::default()
            }
        );
    }

    #[test]
    fn all_field_lines_are_joined_rfc9110_5_3() {
        let h = headers(&[("cache-control", "max-age=60"), ("cache-control", "public")]);
        let c = CacheControl::from_headers(&h);
        assert_eq!(c.max_age, Some(60));
        assert!(c.public);
    }

    #[test]
    fn stale_extensions_parse_rfc5861() {
        let c = cc("max-age=1, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(c.stale_while_revalidate, Some(30));
        assert_eq!(c.stale_if_error, Some(600));
        assert_eq!(cc("stale-if-error=x").stale_if_error, None);
    }

    #[test]
    fn cdn_cache_control_overrides_cache_control_rfc9213_2_1() {
        let h = headers(&[
            ("cache-control", "no-store"),
            (
                "cdn-cache-control",
                "max-age=600, stale-while-revalidate=30",
            ),
        ]);
        let e = effective_response_control(&h, &Targets::default());
        assert_eq!(e.source, Source::Targeted(CDN_CACHE_CONTROL));
        assert!(e.ignores_expires());
        assert!(!e.cc.no_store);
        assert_eq!(e.cc.max_age, Some(600));
        assert_eq!(e.cc.stale_while_revalidate, Some(30));
    }

    #[test]
    fn invalid_cdn_cache_control_falls_back_to_cache_control_rfc9213_2_2() {
        for bad in [
            "max-age=60,",
            "Max-Age=60",
            "max-age=\"unterminated",
            "max-age=60 private",
            "",
        ] {
            let h = headers(&[("cdn-cache-control", bad), ("cache-control", "max-age=5")]);
            let e = effective_response_control(&h, &Targets::default());
            assert_eq!(e.source, Source::CacheControl, "{bad:?}");
            assert_eq!(e.cc.max_age, Some(5));
        }
    }

    #[test]
    fn cdn_cache_control_dictionary_values_map_to_directives_rfc9213_2_2() {
        let h = headers(&[(
            "cdn-cache-control",
            "max-age=60;foo=1, no-store=?0, private=?1, no-cache=(\"set-cookie\" x-a), s-maxage=9, stale-if-error=100, must-revalidate, public",
        )]);
        let e = effective_response_control(&h, &Targets::default());
        let c = e.cc;
        assert_eq!(c.max_age, Some(60));
        assert!(!c.no_store);
        assert!(c.private_unqualified());
        assert_eq!(c.no_cache, Some(vec!["set-cookie".into(), "x-a".into()]));
        assert_eq!(c.s_maxage, Some(9));
        assert_eq!(c.stale_if_error, Some(100));
        assert!(c.must_revalidate && c.public);
    }

    #[test]
    fn cdn_cache_control_wrongly_typed_max_age_is_stale_rfc9213_2_2() {
        for v in ["max-age=\"60\"", "max-age=1.5", "max-age=-3"] {
            let h = headers(&[("cdn-cache-control", v)]);
            let e = effective_response_control(&h, &Targets::default());
            assert_eq!(e.cc.max_age, Some(0), "{v}");
        }
    }

    #[test]
    fn sf_dictionary_accepts_strings_tokens_binary_and_params_rfc8941_4_2_2() {
        let p = SfParser::new("a=\"x\\\"y\", b=tok/en:1, c=:aGk=:, d;q=1;r, e=(1 2);z=?0, *f=?1")
            .dictionary()
            .unwrap();
        let keys: Vec<_> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "*f"]);
        assert_eq!(p[0].1, Member::Item(Bare::Str("x\"y".into())));
        assert_eq!(p[1].1, Member::Item(Bare::Token("tok/en:1".into())));
        assert!(SfParser::new("a=1234567890123456").dictionary().is_none());
        assert!(SfParser::new("a=\"\\n\"").dictionary().is_none());
    }

    #[test]
    fn targets_are_tried_in_configured_order_rfc9213_2_1() {
        let h = headers(&[
            ("cdn-cache-control", "max-age=10"),
            ("surrogate-control", "max-age=20"),
        ]);
        let t = Targets::new([SURROGATE_CONTROL, CDN_CACHE_CONTROL], "tessera");
        let e = effective_response_control(&h, &t);
        assert_eq!(e.source, Source::Targeted(SURROGATE_CONTROL));
        assert_eq!(e.cc.max_age, Some(20));
        let e = effective_response_control(&h, &Targets::none());
        assert_eq!(e.source, Source::CacheControl);
    }

    #[test]
    fn surrogate_control_max_age_plus_extension_maps_to_stale_if_error_edge_arch_1_0() {
        let h = headers(&[("surrogate-control", "max-age=300+60")]);
        let e = effective_response_control(&h, &Targets::default());
        assert_eq!(e.source, Source::Targeted(SURROGATE_CONTROL));
        assert_eq!(e.cc.max_age, Some(300));
        assert_eq!(e.cc.stale_if_error, Some(60));
        assert_eq!(e.cc.stale_while_revalidate, None);
    }

    #[test]
    fn surrogate_control_device_targeting_edge_arch_1_0() {
        let h = headers(&[(
            "surrogate-control",
            "max-age=10, max-age=99;tessera, no-store;other, content=\"ESI/1.0\";tessera",
        )]);
        let e = effective_response_control(&h, &Targets::default());
        assert_eq!(e.cc.max_age, Some(99));
        assert!(!e.cc.no_store);
        assert_eq!(e.surrogate_content.as_deref(), Some("ESI/1.0"));
        let other = Targets::new([SURROGATE_CONTROL], "other");
        let e = effective_response_control(&h, &other);
        assert_eq!(e.cc.max_age, Some(10));
        assert!(e.cc.no_store);
        assert_eq!(e.surrogate_content, None);
    }

    #[test]
    fn surrogate_control_no_store_remote_is_no_store_edge_arch_1_0() {
        let h = headers(&[("surrogate-control", "no-store-remote")]);
        assert!(
            effective_response_control(&h, &Targets::default())
                .cc
                .no_store
        );
    }

    #[test]
    fn surrogate_content_alone_leaves_cache_control_in_charge_edge_arch_1_0() {
        let h = headers(&[
            ("surrogate-control", "content=\"ESI/1.0\""),
            ("cache-control", "max-age=42"),
        ]);
        let e = effective_response_control(&h, &Targets::default());
        assert_eq!(e.source, Source::CacheControl);
        assert_eq!(e.cc.max_age, Some(42));
        assert_eq!(e.surrogate_content.as_deref(), Some("ESI/1.0"));
    }

    #[test]
    fn strip_targeted_removes_surrogate_control_before_delivery() {
        let mut h = headers(&[
            ("surrogate-control", "max-age=1"),
            ("cache-control", "max-age=2"),
        ]);
        strip_targeted(&mut h);
        assert!(h.get(SURROGATE_CONTROL).is_none());
        assert!(h.get(CACHE_CONTROL).is_some());
    }
}
