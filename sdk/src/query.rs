//! `Query`: an ordered, encoding-preserving view of a raw query string.

use std::fmt;

/// The parameters of a query string, in order, exactly as the client encoded them.
///
/// Names and values are compared and written back raw (no percent-decoding), so a
/// rebuilt query only differs from the original where the script changed it. A bare
/// flag (`a`) and an empty value (`a=`) are kept apart and written back as they came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, Option<String>)>,
}

impl Query {
    /// Parses a raw query string (without the leading `?`); empty pieces (`a=1&&b=2`) are dropped.
    pub fn parse(raw: &str) -> Self {
        let params = raw
            .split('&')
            .filter(|piece| !piece.is_empty())
            .map(|piece| match piece.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (piece.to_owned(), None),
            })
            .collect();
        Self { params }
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Number of parameters, repeated names counted each time.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Raw value of the first parameter called `name`; a bare flag (`a`) gives `""`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// True when a parameter called `name` is present (as a flag or with a value).
    pub fn contains(&self, name: &str) -> bool {
        self.params.iter().any(|(n, _)| n == name)
    }

    /// Iterates over `(name, value)` pairs in order; a bare flag's value is `""`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref().unwrap_or("")))
    }

    /// Appends `name=value` (raw: the caller encodes).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.params.push((name.into(), Some(value.into())));
        self
    }

    /// Removes every parameter called `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.params.retain(|(n, _)| n != name);
        self
    }

    /// Removes every parameter whose name starts with `prefix` (e.g. `utm_`).
    pub fn remove_prefix(&mut self, prefix: &str) -> &mut Self {
        self.params.retain(|(n, _)| !n.starts_with(prefix));
        self
    }

    /// Keeps only the parameters for which `keep(name, value)` is true; a bare flag's value is `""`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) -> &mut Self {
        self.params
            .retain(|(n, v)| keep(n, v.as_deref().unwrap_or("")));
        self
    }

    /// Sorts by name, then value (a bare flag before `a=`); stable, so equal pairs keep their order.
    pub fn sort(&mut self) -> &mut Self {
        self.params.sort();
        self
    }
}

impl fmt::Display for Query {
    /// Writes `a=1&b=2` (no leading `?`); nothing at all when there are no parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            f.write_str(name)?;
            if let Some(value) = value {
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

impl From<&str> for Query {
    fn from(raw: &str) -> Self {
        Self::parse(raw)
    }
}

impl std::str::FromStr for Query {
    type Err = std::convert::Infallible;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn round_trips_order_encoding_flags_and_empty_values() {
        let raw = "b=2&a&c=&d=%2Fx+y&a=1";
        assert_eq!(Query::parse(raw).to_string(), raw);
    }

    #[test]
    fn empty_query_renders_as_empty_string() {
        assert!(Query::parse("").is_empty());
        assert_eq!(Query::parse("").to_string(), "");
        assert_eq!(Query::parse("&&").to_string(), "");
    }

    #[test]
    fn empty_pieces_are_dropped() {
        assert_eq!(Query::parse("a=1&&b=2&").to_string(), "a=1&b=2");
    }

    #[test]
    fn flag_and_empty_value_read_the_same_but_are_written_back_distinctly() {
        let q = Query::parse("flag&empty=");
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("empty"), Some(""));
        assert!(q.contains("flag"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(q.to_string(), "flag&empty=");
    }

    #[test]
    fn get_returns_first_of_repeated_names() {
        assert_eq!(Query::parse("a=1&a=2").get("a"), Some("1"));
    }

    #[test]
    fn value_may_contain_equals_signs() {
        let q = Query::parse("token=abc==&x=1");
        assert_eq!(q.get("token"), Some("abc=="));
        assert_eq!(q.to_string(), "token=abc==&x=1");
    }

    #[test]
    fn remove_drops_every_occurrence() {
        let mut q = Query::parse("a=1&ref=x&b=2&ref");
        q.remove("ref");
        assert_eq!(q.to_string(), "a=1&b=2");
    }

    #[test]
    fn remove_prefix_drops_tracking_parameters() {
        let mut q = Query::parse("utm_source=x&id=7&utm_medium=y&utmost=1");
        q.remove_prefix("utm_");
        assert_eq!(q.to_string(), "id=7&utmost=1");
    }

    #[test]
    fn names_are_matched_raw_not_decoded() {
        let mut q = Query::parse("utm%5Fsource=x");
        q.remove_prefix("utm_");
        assert_eq!(q.to_string(), "utm%5Fsource=x");
    }

    #[test]
    fn retain_sees_name_and_value() {
        let mut q = Query::parse("a=1&b=2&c&d=4");
        q.retain(|name, value| name != "b" && value != "4");
        assert_eq!(q.to_string(), "a=1&c");
    }

    #[test]
    fn sort_orders_by_name_then_value_with_flag_first() {
        let mut q = Query::parse("b=2&a=2&a=1&a=&a&c");
        q.sort();
        assert_eq!(q.to_string(), "a&a=&a=1&a=2&b=2&c");
    }

    #[test]
    fn push_appends_and_chains() {
        let mut q = Query::parse("a=1");
        q.push("b", "2").push("c", "3");
        assert_eq!(q.len(), 3);
        assert_eq!(q.to_string(), "a=1&b=2&c=3");
    }

    #[test]
    fn iter_yields_pairs_in_order() {
        let q: Query = "x=1&y".parse().unwrap();
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![("x", "1"), ("y", "")]);
    }
}
