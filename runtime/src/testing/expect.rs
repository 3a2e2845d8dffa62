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
    /// `ttl=` value: seconds of freshness left (negative once stale).
    pub ttl: Option<i64>,
}

/// The last member of a `Cache-Status` value (upstream caches' come first), read as the
/// structured field list it is (RFC 9211, RFC 9651); nothing when it does not parse.
pub fn ours(value: &str) -> Member {
    let mut m = Member::default();
    let Ok(list) = sfv::Parser::new(value).parse::<sfv::List>() else {
        return m;
    };
    let Some(sfv::ListEntry::Item(last)) = list.last() else {
        return m;
    };
    for (key, v) in &last.params {
        match key.as_str() {
            "hit" => m.hit = v.as_boolean() == Some(true),
            "stored" => m.stored = v.as_boolean() == Some(true),
            "fwd" => m.fwd = v.as_token().map(|t| t.as_str().to_owned()),
            "ttl" => m.ttl = v.as_integer().map(i64::from),
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

/// Where body snapshots live, and whether they are being rewritten.
pub struct Snapshots<'a> {
    /// The test file's folder (snapshot paths are relative to it).
    pub dir: &'a std::path::Path,
    /// `--update-snapshots`: write them instead of comparing.
    pub update: bool,
}

/// Expected against got for two bodies: a line diff when either spans lines, else both.
fn body_mismatch(expected: &str, got: &str) -> String {
    if !expected.contains('\n') && !got.contains('\n') || expected.len() + got.len() < 120 {
        return mismatch("body", cut(expected), cut(got));
    }
    let diff = similar::TextDiff::from_lines(expected, got);
    let shown = diff
        .unified_diff()
        .context_radius(2)
        .header("expected", "got")
        .to_string();
    let lines: Vec<&str> = shown.lines().take(60).collect();
    format!("  the body differs:\n    {}", lines.join("\n    "))
}

/// The first expectation `got` fails, as a message.
pub fn check(
    e: &Expect,
    got: &Got,
    origin_total: u64,
    origin_for: &dyn Fn(&str) -> u64,
    snapshots: &Snapshots,
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
    if let Some(t) = e.ttl {
        if Some(t) != member.ttl {
            let have = member.ttl.map_or("(none)".to_owned(), |t| t.to_string());
            return fail(mismatch("ttl", t, have));
        }
    }
    if let Some(b) = &e.body {
        if *b != got.body {
            return fail(body_mismatch(b, &got.body));
        }
    }
    if let Some(rel) = &e.body_snapshot {
        let path = snapshots.dir.join(rel);
        if snapshots.update {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(&path, &got.body)
                .map_err(|err| format!("  cannot write the snapshot {}: {err}", path.display()))?;
        } else {
            let want = std::fs::read_to_string(&path).map_err(|err| {
                format!(
                    "  cannot read the snapshot {}: {err} (`tessera test --update-snapshots` writes it)",
                    path.display()
                )
            })?;
            if want != got.body {
                return fail(format!(
                    "  the body is not the snapshot {} (`--update-snapshots` to accept it):\n{}",
                    rel.display(),
                    body_mismatch(&want, &got.body)
                ));
            }
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
    for sel in &e.select {
        if let Err(m) = select(&got.body, sel) {
            return fail(m);
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

/// One element a selector matched.
#[derive(Debug, Default)]
struct Found {
    attrs: Vec<(String, String)>,
    text: String,
}

/// Every element of `html` that `css` matches, with its attributes and text.
fn matches(html: &str, css: &str) -> Result<Vec<Found>, String> {
    use std::cell::RefCell;
    use std::rc::Rc;
    css.parse::<lol_html::Selector>()
        .map_err(|e| format!("  the selector {css:?} does not parse: {e}"))?;
    let found: Rc<RefCell<Vec<Found>>> = Rc::default();
    let (on_el, on_text) = (found.clone(), found.clone());
    let settings = lol_html::RewriteStrSettings::new()
        .append_element_content_handler(lol_html::element!(css, move |el| {
            on_el.borrow_mut().push(Found {
                attrs: el
                    .attributes()
                    .iter()
                    .map(|a| (a.name(), a.value()))
                    .collect(),
                text: String::new(),
            });
            Ok(())
        }))
        .append_element_content_handler(lol_html::text!(css, move |t| {
            if let Some(last) = on_text.borrow_mut().last_mut() {
                last.text.push_str(t.as_str());
            }
            Ok(())
        }));
    lol_html::rewrite_str(html, settings)
        .map_err(|e| format!("  the body is not HTML lol_html reads: {e}"))?;
    let list = std::mem::take(&mut *found.borrow_mut());
    Ok(list)
}

fn select(html: &str, s: &super::spec::Select) -> Result<(), String> {
    let found = matches(html, &s.css)?;
    let what = |w: &str| format!("{w} of `{}`", s.css);
    if let Some(n) = s.count {
        if n != found.len() {
            return Err(mismatch(&what("elements matching"), n, found.len()));
        }
    }
    let asks_first = s.text.is_some() || s.contains.is_some() || s.attr.is_some();
    let Some(first) = found.first() else {
        return if asks_first {
            Err(format!(
                "  expected an element matching `{}`
       got none in body: {}",
                s.css,
                cut(html)
            ))
        } else {
            Ok(())
        };
    };
    let text = first.text.trim();
    if let Some(t) = &s.text {
        if t != text {
            return Err(mismatch(
                &what("the text"),
                format!("{t:?}"),
                format!("{text:?}"),
            ));
        }
    }
    if let Some(c) = &s.contains {
        if !text.contains(c.as_str()) {
            return Err(format!(
                "  expected the text of `{}` to contain {c:?}
       got {text:?}",
                s.css
            ));
        }
    }
    if let Some(a) = &s.attr {
        let have = first
            .attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(a))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let want = s.equals.as_deref().unwrap_or("");
        if want != have {
            return Err(mismatch(
                &what(&format!("attribute `{a}`")),
                format!("{want:?}"),
                format!("{have:?}"),
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
                stored: true,
                ttl: Some(60),
            }
        );
        assert!(ours("tessera; hit; ttl=10").hit);
        assert_eq!(ours("tessera; fwd=stale; ttl=-5").ttl, Some(-5));
        assert_eq!(ours(""), Member::default());
        assert_eq!(ours("tessera; hit; ttl=\"unclosed"), Member::default());
    }

    fn sel(css: &str) -> super::super::spec::Select {
        super::super::spec::Select {
            css: css.into(),
            count: None,
            text: None,
            contains: None,
            attr: None,
            equals: None,
        }
    }

    #[test]
    fn selectors_count_read_text_and_attributes() {
        let html = r#"<ul><li class="i">One <b>1</b></li><li class="i">Two</li></ul><a id="buy" href="/cart">Buy</a>"#;
        assert!(select(
            html,
            &super::super::spec::Select {
                count: Some(2),
                ..sel("li.i")
            }
        )
        .is_ok());
        let e = select(
            html,
            &super::super::spec::Select {
                count: Some(3),
                ..sel("li.i")
            },
        )
        .unwrap_err();
        assert!(
            e.contains("expected elements matching of `li.i`: 3")
                && e.contains("got elements matching of `li.i`: 2"),
            "{e}"
        );
        assert!(select(
            html,
            &super::super::spec::Select {
                text: Some("One 1".into()),
                ..sel("li")
            }
        )
        .is_ok());
        assert!(select(
            html,
            &super::super::spec::Select {
                contains: Some("On".into()),
                ..sel("li")
            }
        )
        .is_ok());
        assert!(select(
            html,
            &super::super::spec::Select {
                attr: Some("href".into()),
                equals: Some("/cart".into()),
                ..sel("#buy")
            }
        )
        .is_ok());
        assert!(
            select(
                html,
                &super::super::spec::Select {
                    attr: Some("rel".into()),
                    ..sel("#buy")
                }
            )
            .is_ok(),
            "absent is \"\""
        );
        assert!(select(
            html,
            &super::super::spec::Select {
                text: Some("x".into()),
                ..sel("h1")
            }
        )
        .unwrap_err()
        .contains("expected an element matching `h1`"));
        assert!(select(html, &sel("li["))
            .unwrap_err()
            .contains("does not parse"));
    }
}
