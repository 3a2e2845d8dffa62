//! Hooks shared by the `stateful` and `stateless` test guests, which differ only in `keep_state`.
//!
//! `on_request` draws a number with the host's randomness, keeps it in a `thread_local!`
//! and sets request header `x-drawn: <n>`; `on_response` sets response header
//! `x-kept: <n>` from the `thread_local!`, or `x-kept: lost` when this instance never
//! ran `on_request` (the host gave the request a fresh instance for its later phase).

use std::cell::Cell;

use tessera_sdk::{random_u64, HeaderEdits, Request, RequestAction, ResponseHead};

/// Request header carrying the drawn number to the origin.
pub const DRAWN_HEADER: &str = "x-drawn";
/// Response header telling what this instance still remembers.
pub const KEPT_HEADER: &str = "x-kept";
/// `x-kept` value when the number is gone.
pub const LOST: &str = "lost";

thread_local! {
    // The number `on_request` drew, while this instance lives.
    static DRAWN: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Draws and keeps a number, and sends it to the origin as `x-drawn`.
pub fn on_request(_req: &Request) -> RequestAction {
    let n = random_u64();
    DRAWN.with(|drawn| drawn.set(Some(n)));
    RequestAction::proceed_with(HeaderEdits::new().set(DRAWN_HEADER, n.to_string()))
}

/// Tells the client the kept number as `x-kept`, or `lost`.
pub fn on_response(_req: &Request, _resp: &ResponseHead) -> HeaderEdits {
    let kept = DRAWN
        .with(Cell::get)
        .map_or_else(|| LOST.to_owned(), |n| n.to_string());
    HeaderEdits::new().set(KEPT_HEADER, kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{request, response, set_random};

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn the_drawn_number_goes_to_the_origin_and_is_kept_by_the_instance() {
        set_random(vec![42]);
        let req = request("/").header("x-drawn", "client").build();
        assert_eq!(
            on_request(&req),
            RequestAction::proceed_with(HeaderEdits::new().set("x-drawn", "42"))
        );
        let edits = on_response(&req, &response(200).build());
        assert_eq!(edits.set, [pair("x-kept", "42")]);
    }

    #[test]
    fn a_fresh_instance_has_lost_it() {
        set_random(vec![7]);
        let _ = on_request(&request("/").build());
        // Another thread has its own thread-locals, as a fresh instance would.
        let edits =
            std::thread::spawn(|| on_response(&request("/").build(), &response(200).build()))
                .join()
                .unwrap();
        assert_eq!(edits.set, [pair("x-kept", "lost")]);
    }
}
