//! Test guest without `keep_state`: the `stateful` guest's code, so its number may be lost.
//!
//! | path | hook          | behaviour                                                    |
//! |------|---------------|--------------------------------------------------------------|
//! | any  | `on_request`  | draws `n` with `random_u64`, keeps it, sets `x-drawn: <n>`    |
//! | any  | `on_response` | sets `x-kept: <n>`, or `x-kept: lost` if the instance lost it |
//!
//! The hooks are `tests/guests/stateful/src/common.rs`, shared by `#[path]`. Without
//! `keep_state` the host may give `on_response` a fresh instance once the request has
//! waited on the origin, and then `x-kept` is `lost`.

#[path = "../../stateful/src/common.rs"]
mod common;

use tessera_sdk::{EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};

pub use common::{DRAWN_HEADER, KEPT_HEADER, LOST};

/// The script: `on_request` and `on_response`, without `keep_state`.
pub struct Stateless;

#[tessera_sdk::script]
impl EdgeScript for Stateless {
    fn on_request(req: &Request) -> RequestAction {
        common::on_request(req)
    }

    fn on_response(req: &Request, resp: &ResponseHead) -> HeaderEdits {
        common::on_response(req, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::describe;
    use tessera_sdk::{HookSet, ScriptInfo};

    #[test]
    fn does_not_ask_the_host_to_keep_state() {
        assert_eq!(
            describe::<Stateless>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST | HookSet::ON_RESPONSE,
                keep_state: false,
                reusable: false,
                key_reads: None,
            }
        );
    }
}
