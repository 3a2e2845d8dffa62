//! Test guest for memoised keys: `cache_key` declares that it reads the path and `x-user`.
//!
//! | path        | key                                                                  |
//! |-------------|----------------------------------------------------------------------|
//! | `/clock/…`  | as below, after reading the clock (so the answer is never memoised)   |
//! | any other   | `{default_key}#{x-user}#{cookie}`, `-` for a missing field            |
//!
//! The cookie is not declared, so the host never passes it and it is always `-`: whatever
//! a script does, its key depends on what it declared and on nothing else.

use tessera_sdk::{now_ms, EdgeScript, Request};

/// The script: `cache_key` only.
pub struct Memo;

#[tessera_sdk::script(key_reads(path, headers("x-user")))]
impl EdgeScript for Memo {
    fn cache_key(req: &Request, default_key: &str) -> String {
        if req.path.starts_with("/clock/") {
            std::hint::black_box(now_ms());
        }
        let user = req.header("x-user").unwrap_or("-");
        let cookie = req.header("cookie").unwrap_or("-");
        format!("{default_key}#{user}#{cookie}")
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;
    use tessera_sdk::testing::{call_cache_key, request};

    #[test]
    fn the_key_holds_the_user_but_never_the_undeclared_cookie() {
        let req = request("/p")
            .header("x-user", "ann")
            .header("cookie", "s=1")
            .build();
        assert_eq!(call_cache_key::<Memo>(&req, "k"), "k#ann#-");
        assert_eq!(
            call_cache_key::<Memo>(&request("/clock/p").build(), "k"),
            "k#-#-"
        );
    }
}
