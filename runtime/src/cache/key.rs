//! Cache keys: the default primary key, and keeping unkeyed parameters away from the origin.

/// Query parameters that identify a campaign or click, never content; kept out of keys.
pub const TRACKING_PARAMS: [&str; 12] = [
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl",
    "yclid", "igshid",
];

fn is_tracking(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("utm_") || TRACKING_PARAMS.contains(&n.as_str())
}

/// Whether a `name[=value]` query member is a tracking parameter.
fn is_tracking_pair(pair: &str) -> bool {
    is_tracking(pair.split('=').next().unwrap_or(pair))
}

/// `authority + path [+ ? + sorted query minus tracking parameters]`, authority lower-cased.
pub fn default_key(authority: &str, path: &str, query: Option<&str>) -> String {
    let mut key =
        String::with_capacity(authority.len() + path.len() + query.map_or(0, str::len) + 1);
    key.push_str(&authority.to_ascii_lowercase());
    key.push_str(path);
    if let Some(q) = query {
        let mut pairs: Vec<&str> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| !is_tracking_pair(p))
            .collect();
        // Sorting whole pairs keeps repeated names in a canonical order too.
        pairs.sort_unstable();
        if !pairs.is_empty() {
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    key
}

/// The default key and, in words, each normalisation step that made it (`tessera key
/// --explain`).
pub fn explain_default_key(
    authority: &str,
    path: &str,
    query: Option<&str>,
) -> (String, Vec<String>) {
    let mut steps = Vec::new();
    let lower = authority.to_ascii_lowercase();
    if lower != authority {
        steps.push(format!("authority lower-cased: {authority} → {lower}"));
    }
    if let Some(q) = query {
        let pairs: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
        let (tracking, kept): (Vec<&str>, Vec<&str>) =
            pairs.iter().partition(|p| is_tracking_pair(p));
        if !tracking.is_empty() {
            steps.push(format!(
                "tracking parameters dropped: {}",
                tracking.join(", ")
            ));
        }
        let mut sorted = kept.clone();
        sorted.sort_unstable();
        if sorted != kept {
            steps.push(format!(
                "parameters sorted: {} → {}",
                kept.join("&"),
                sorted.join("&")
            ));
        }
        if pairs.len() < q.split('&').count() {
            steps.push("empty parameters dropped".into());
        }
    }
    let key = default_key(authority, path, query);
    steps.push(format!("default key: {key}"));
    (key, steps)
}

/// The query to send to the origin, keeping only the parameters the cache key kept.
///
/// A parameter is kept when its exact `name=value` text appears as a member of the key's
/// query part (after the key's first `?`, up to its first `#`, split on `&`). Anything else
/// was left out of the key, so the origin must not see it either: an origin that reflects a
/// parameter into the page would otherwise store one visitor's value in the entry everyone
/// shares. Returns `None` when the query is to be sent unchanged.
pub fn origin_query(query: Option<&str>, key: &str) -> Option<Option<String>> {
    let query = query?;
    // A set: a query of thousands of distinct parameters must not cost their square.
    let keyed: std::collections::HashSet<&str> = key
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .map(|q| q.split('&').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let kept: Vec<&str> = pairs
        .iter()
        .copied()
        .filter(|p| keyed.contains(p))
        .collect();
    if kept.len() == pairs.len() {
        return None;
    }
    Some((!kept.is_empty()).then(|| kept.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_parameters_are_dropped_and_the_rest_sorted() {
        assert_eq!(
            default_key(
                "Shop.Example",
                "/p",
                Some("utm_source=x&b=2&fbclid=1&a=1&gclid=z")
            ),
            "shop.example/p?a=1&b=2"
        );
        assert_eq!(default_key("h", "/p", Some("utm_medium=x")), "h/p");
        assert_eq!(default_key("h", "/p", None), "h/p");
    }

    #[test]
    fn parameters_left_out_of_the_key_are_left_out_of_the_origin_request() {
        let key = default_key("h", "/p", Some("b=2&utm_source=mail&a=1"));
        assert_eq!(
            origin_query(Some("b=2&utm_source=mail&a=1"), &key),
            Some(Some("b=2&a=1".into()))
        );
        assert_eq!(
            origin_query(Some("a=1&b=2"), &key),
            None,
            "nothing to strip"
        );
        assert_eq!(origin_query(None, &key), None);
        // A script key with the query after `?` and extras after `#`.
        assert_eq!(
            origin_query(Some("q=shoes&ref=x"), "h/s?q=shoes#mobile"),
            Some(Some("q=shoes".into()))
        );
        // A key that ignores the query entirely: the origin gets none.
        assert_eq!(origin_query(Some("q=1"), "h/s#desktop"), Some(None));
        // Values must match exactly: `q=1` is not kept by a key holding `q=12`.
        assert_eq!(origin_query(Some("q=1"), "h/s?q=12"), Some(None));
    }
}
