//! Checking an answer against a step's expectations; the first that fails is reported as
//! expected against got. `Cache-Status` (RFC 9211) is read for its last member, ours.

use super::spec::Expect;
use super::Got;

/// This cache's `Cache-Status` member, read.
#[derive(Debug, Default, PartialEq)]
pub struct Member {
    /// `hit` present.
    pub hit: bool,
    /// `fwd=` value.
    pub fwd: Option<String>,
    /// `stored` present.
    pub stored: bool,
}

/// The last member of a `Cache-Status` value (upstream caches' come first). Commas and
/// semicolons inside quoted strings do not split.
pub fn ours(value: &str) -> Member {
    let mut members = vec![String::new()];
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                members.last_mut().expect("one").push(c);
            }
            ',' if !quoted => members.push(String::new()),
            _ => members.last_mut().expect("one").push(c),
        }
    }
    let last = members.pop().unwrap_or_default();
    let mut m = Member::default();
    let mut params = Vec::new();
    let mut cur = String::new();
    quoted = false;
    for c in last.chars() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => params.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    params.push(cur);
    for p in params.iter().skip(1).map(|p| p.trim()) {
        match p.split_once('=') {
            None if p == "hit" => m.hit = true,
            None if p == "stored" => m.stored = true,
            Some(("fwd", v)) => m.fwd = Some(v.to_owned()),
            _ => {}
        }
    }
    m
}

fn mismatch(what: &str, expected: impl std::fmt::Display, got: impl std::fmt::Display) -> String {
    format!("  expected {what}: {expected}\n       got {what}: {got}")
}

fn cut(s: &str) -> String {
    const SHOWN: usize = 600;
    if s.len() <= SHOWN {
        return format!("{s:?}");
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

/// The first expectation `got` fails, as a message.
pub fn check(
    e: &Expect,
    got: &Got,
    origin_total: u64,
    origin_for: &dyn Fn(&str) -> u64,
) -> Result<(), String> {
    let cache_status = got
        .headers
        .get_all("cache-status")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let member = ours(&cache_status);
    let context = format!("\n  (Cache-Status: {cache_status})");
    let fail = |m: String| Err(format!("{m}{context}"));
    if let Some(s) = e.status {
        if s != got.status {
            return fail(mismatch("status", s, got.status));
        }
    }
    for (name, want) in &e.headers {
        let have = got
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        if *want != have {
            let show = |v: &str| {
                if v.is_empty() {
                    "(absent)".to_owned()
                } else {
                    format!("{v:?}")
                }
            };
            return fail(mismatch(
                &format!("header `{name}`"),
                show(want),
                show(&have),
            ));
        }
    }
    if let Some(h) = e.hit {
        if h != member.hit {
            return fail(mismatch("a hit", h, member.hit));
        }
    }
    if let Some(f) = &e.fwd {
        if Some(f) != member.fwd.as_ref() {
            return fail(mismatch(
                "fwd",
                f,
                member.fwd.as_deref().unwrap_or("(none)"),
            ));
        }
    }
    if let Some(s) = e.stored {
        if s != member.stored {
            return fail(mismatch("stored", s, member.stored));
        }
    }
    if let Some(b) = &e.body {
        if *b != got.body {
            return fail(mismatch("body", cut(b), cut(&got.body)));
        }
    }
    for t in &e.body_contains {
        if !got.body.contains(t.as_str()) {
            return fail(format!(
                "  expected the body to contain {t:?}\n       got body: {}",
                cut(&got.body)
            ));
        }
    }
    for t in &e.body_not_contains {
        if got.body.contains(t.as_str()) {
            return fail(format!(
                "  expected the body not to contain {t:?}\n       got body: {}",
                cut(&got.body)
            ));
        }
    }
    if let Some(n) = e.origin_requests {
        if n != origin_total {
            return fail(mismatch("origin requests so far", n, origin_total));
        }
    }
    for (target, n) in &e.origin_requests_for {
        let have = origin_for(target);
        if *n != have {
            return fail(mismatch(
                &format!("origin requests for {target} so far"),
                n,
                have,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_member_is_the_last_and_quotes_do_not_split() {
        let m = ours(r#"Shield; hit, tessera; fwd=uri-miss; stored; detail="a, b; c"; ttl=60"#);
        assert_eq!(
            m,
            Member {
                hit: false,
                fwd: Some("uri-miss".into()),
                stored: true
            }
        );
        assert!(ours("tessera; hit; ttl=10").hit);
        assert_eq!(ours(""), Member::default());
    }
}
