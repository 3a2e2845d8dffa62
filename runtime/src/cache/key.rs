//! The default primary cache key: host + path + sorted query without tracking parameters.

/// Query parameters that identify a campaign or click, never content; kept out of keys.
pub const TRACKING_PARAMS: [&str; 12] = [
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl",
    "yclid", "igshid",
];

fn is_tracking(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("utm_") || TRACKING_PARAMS.contains(&n.as_str())
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
            .filter(|p| !is_tracking(p.split('=').next().unwrap_or(p)))
            .collect();
        // Stable sort on the whole pair keeps repeated names in a canonical order too.
        pairs.sort_unstable();
        if !pairs.is_empty() {
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    key
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
}
