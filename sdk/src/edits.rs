//! Builders for what hooks return: header edits, synthetic responses, cache decisions.

use crate::{CacheDecision, HeaderEdits, RequestAction, SyntheticResponse};

impl HeaderEdits {
    /// No edits; chain `.set`, `.append` and `.remove` to add some.
    pub fn new() -> Self {
        Self {
            set: Vec::new(),
            append: Vec::new(),
            remove: Vec::new(),
        }
    }

    /// Replaces every value of header `name` with `value` (name lower-cased).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((lower(name), value.into()));
        self
    }

    /// Adds a value for `name` beside existing ones, e.g. another `set-cookie` (name lower-cased).
    pub fn append(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.append.push((lower(name), value.into()));
        self
    }

    /// Removes every value of header `name` (name lower-cased).
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(lower(name));
        self
    }

    /// True when applying these edits would change nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }
}

impl Default for HeaderEdits {
    fn default() -> Self {
        Self::new()
    }
}

impl SyntheticResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response with `body`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A redirect (`status` 301, 302, 303, 307 or 308) to `location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self::new(status).header("location", location)
    }

    /// Adds a header (name lower-cased).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((lower(name), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

impl RequestAction {
    /// Go on to cache and origin unchanged.
    pub fn proceed() -> Self {
        RequestAction::Continue(HeaderEdits::new())
    }

    /// Go on to cache and origin after applying `edits` to the request headers.
    pub fn proceed_with(edits: HeaderEdits) -> Self {
        RequestAction::Continue(edits)
    }

    /// Answer the client with `response` at once, bypassing cache and origin.
    pub fn respond(response: SyntheticResponse) -> Self {
        RequestAction::Respond(response)
    }

    /// Go to the origin past the cache (no lookup, nothing stored) after applying `edits`:
    /// for a request that must get fresh, personal content.
    pub fn pass_with(edits: HeaderEdits) -> Self {
        RequestAction::Pass(edits)
    }
}

impl From<SyntheticResponse> for RequestAction {
    fn from(response: SyntheticResponse) -> Self {
        RequestAction::Respond(response)
    }
}

impl From<HeaderEdits> for RequestAction {
    fn from(edits: HeaderEdits) -> Self {
        RequestAction::Continue(edits)
    }
}

impl CacheDecision {
    /// Store, fresh for `ttl` seconds, with no stale windows and no tags.
    pub fn cache_for(ttl: u32) -> Self {
        Self {
            store: true,
            ttl,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            tags: Vec::new(),
        }
    }

    /// Do not store the response at all (other fields are kept but unused).
    pub fn no_store(mut self) -> Self {
        self.store = false;
        self
    }

    /// Sets the freshness lifetime in seconds; does not change `store`.
    pub fn with_ttl(mut self, secs: u32) -> Self {
        self.ttl = secs;
        self
    }

    /// Sets the RFC 5861 stale-while-revalidate window in seconds.
    pub fn with_stale_while_revalidate(mut self, secs: u32) -> Self {
        self.stale_while_revalidate = secs;
        self
    }

    /// Sets the RFC 5861 stale-if-error window in seconds.
    pub fn with_stale_if_error(mut self, secs: u32) -> Self {
        self.stale_if_error = secs;
        self
    }

    /// Adds a surrogate key for purging, unless already present.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    /// Adds several surrogate keys, skipping ones already present.
    pub fn with_tags<I, T>(self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        tags.into_iter().fold(self, |d, tag| d.with_tag(tag))
    }
}

fn lower(name: impl Into<String>) -> String {
    let mut name = name.into();
    name.make_ascii_lowercase();
    name
}

#[cfg(test)]
mod tests {
    use crate::{CacheDecision, HeaderEdits, RequestAction, SyntheticResponse};

    #[test]
    fn header_edits_collect_in_order_with_lower_case_names() {
        let edits = HeaderEdits::new()
            .set("X-A", "1")
            .append("Set-Cookie", "a=1")
            .append("set-cookie", "b=2")
            .remove("Server");
        assert_eq!(edits.set, [("x-a".to_string(), "1".to_string())]);
        assert_eq!(edits.append.len(), 2);
        assert_eq!(edits.append[1].1, "b=2");
        assert_eq!(edits.remove, ["server"]);
        assert!(!edits.is_empty());
        assert!(HeaderEdits::default().is_empty());
    }

    #[test]
    fn synthetic_text_response_has_type_and_body() {
        let resp = SyntheticResponse::text(403, "blocked\n");
        assert_eq!(resp.status, 403);
        assert_eq!(
            resp.headers,
            [(
                "content-type".to_string(),
                "text/plain; charset=utf-8".to_string()
            )]
        );
        assert_eq!(resp.body, b"blocked\n");
    }

    #[test]
    fn redirect_sets_location() {
        let action = RequestAction::respond(SyntheticResponse::redirect(308, "https://x/"));
        let RequestAction::Respond(resp) = action else {
            panic!("expected respond")
        };
        assert_eq!(resp.status, 308);
        assert_eq!(resp.headers[0], ("location".into(), "https://x/".into()));
    }

    #[test]
    fn proceed_carries_no_edits() {
        assert_eq!(
            RequestAction::proceed(),
            RequestAction::Continue(HeaderEdits::new())
        );
        assert_eq!(
            RequestAction::from(HeaderEdits::new().set("a", "b")),
            RequestAction::proceed_with(HeaderEdits::new().set("a", "b"))
        );
    }

    #[test]
    fn cache_decision_builders_compose() {
        let d = CacheDecision::cache_for(60)
            .with_ttl(300)
            .with_stale_while_revalidate(30)
            .with_stale_if_error(600)
            .with_tags(["a", "b"])
            .with_tag("a");
        assert!(d.store);
        assert_eq!(
            (d.ttl, d.stale_while_revalidate, d.stale_if_error),
            (300, 30, 600)
        );
        assert_eq!(d.tags, ["a", "b"]);
        assert!(!d.no_store().store);
    }
}
