//! Secondary keys from `Vary` (RFC 9111 §4.1), with header-value normalisation.

use http::{HeaderMap, HeaderName};

/// The request header values a stored response was selected by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VaryKey {
    /// No `Vary`: matches every request.
    #[default]
    Any,
    /// `Vary: *`: never matches (§4.1).
    Never,
    /// Normalised values (None = header absent) for each named header. Boxed so that the
    /// key takes 16 bytes in every stored entry, most of which vary on nothing.
    Fields(Box<Vec<(HeaderName, Option<String>)>>),
}

impl VaryKey {
    /// The secondary key of a response's `Vary` against the request that caused it.
    pub fn of(resp: &HeaderMap, req: &HeaderMap) -> VaryKey {
        let mut names: Vec<HeaderName> = Vec::new();
        for v in resp.get_all(http::header::VARY) {
            let Ok(v) = v.to_str() else {
                return VaryKey::Never;
            };
            for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if n == "*" {
                    return VaryKey::Never;
                }
                match HeaderName::from_bytes(n.as_bytes()) {
                    Ok(n) if !names.contains(&n) => names.push(n),
                    Ok(_) => {}
                    Err(_) => return VaryKey::Never,
                }
            }
        }
        if names.is_empty() {
            return VaryKey::Any;
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        VaryKey::Fields(Box::new(
            names
                .into_iter()
                .map(|n| {
                    let v = normalized(req, &n);
                    (n, v)
                })
                .collect(),
        ))
    }

    /// The field names this key varies on (`Vary: *` has none that could match).
    pub fn names(&self) -> Vec<HeaderName> {
        match self {
            VaryKey::Fields(f) => f.iter().map(|(n, _)| n.clone()).collect(),
            VaryKey::Any | VaryKey::Never => Vec::new(),
        }
    }

    /// Bytes of request data this key keeps.
    pub fn weight(&self) -> usize {
        match self {
            VaryKey::Fields(f) => f
                .iter()
                .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, String::len) + 16)
                .sum(),
            VaryKey::Any | VaryKey::Never => 0,
        }
    }

    /// Whether a new request selects the response stored under this key.
    pub fn matches(&self, req: &HeaderMap) -> bool {
        match self {
            VaryKey::Any => true,
            VaryKey::Never => false,
            VaryKey::Fields(f) => f.iter().all(|(n, v)| normalized(req, n) == *v),
        }
    }
}

/// Names the variant a request asks for among responses varying on `names`: requests with
/// the same id select the same stored response (used to coalesce per variant).
pub fn variant_id(names: &[HeaderName], req: &HeaderMap) -> String {
    let mut id = String::new();
    for n in names {
        id.push('\n');
        id.push_str(n.as_str());
        id.push(':');
        if let Some(v) = normalized(req, n) {
            id.push_str(&v);
        }
    }
    id
}

/// All lines of a field joined as one list, whitespace around elements removed; for
/// `Accept-Encoding`, codings lower-cased and sorted since their order carries no meaning.
pub fn normalized(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut elems: Vec<String> = Vec::new();
    let mut any = false;
    for v in headers.get_all(name) {
        any = true;
        let s = String::from_utf8_lossy(v.as_bytes());
        elems.extend(
            s.split(',')
                .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                .map(|e| e.replace(" ;", ";").replace("; ", ";"))
                .filter(|e| !e.is_empty()),
        );
    }
    if !any {
        return None;
    }
    if name == http::header::ACCEPT_ENCODING {
        for e in elems.iter_mut() {
            e.make_ascii_lowercase();
        }
        elems.sort();
        elems.dedup();
    }
    Some(elems.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn whitespace_and_line_folding_do_not_split_variants_rfc9111_4_1() {
        let resp = h(&[("vary", "Accept-Language")]);
        let k = VaryKey::of(&resp, &h(&[("accept-language", "en,  fr")]));
        assert!(k.matches(&h(&[("accept-language", "en"), ("accept-language", "fr")])));
        assert!(!k.matches(&h(&[("accept-language", "de")])));
        assert!(!k.matches(&h(&[])));
    }

    #[test]
    fn accept_encoding_order_and_case_are_normalised() {
        let k = VaryKey::of(
            &h(&[("vary", "accept-encoding")]),
            &h(&[("accept-encoding", "gzip, br")]),
        );
        assert!(k.matches(&h(&[("accept-encoding", "BR,gzip")])));
    }

    #[test]
    fn vary_star_never_matches_rfc9111_4_1() {
        let k = VaryKey::of(&h(&[("vary", "accept, *")]), &h(&[]));
        assert!(!k.matches(&h(&[])));
    }

    #[test]
    fn absent_header_matches_only_absent() {
        let k = VaryKey::of(&h(&[("vary", "x-device")]), &h(&[]));
        assert!(k.matches(&h(&[])));
        assert!(!k.matches(&h(&[("x-device", "m")])));
    }
}
