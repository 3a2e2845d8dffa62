//! Test guest for `keep_state`: a number drawn in `on_request` must still be there in `on_response`.
//!
//! | path | hook          | behaviour                                                    |
//! |------|---------------|--------------------------------------------------------------|
//! | any  | `on_request`  | draws `n` with `random_u64`, keeps it, sets `x-drawn: <n>`    |
//! | any  | `on_response` | sets `x-kept: <n>`, or `x-kept: lost` if the instance lost it |
//!
//! With `keep_state` the host keeps one instance per request, so `x-kept` always equals the
//! `x-drawn` the origin saw. The sibling guest `stateless` is the same code without
//! `keep_state`; there a request that waited on the origin may answer `x-kept: lost`.

#[path = "common.rs"]
mod common;

use tessera_sdk::{EdgeScript, HeaderEdits, Request, RequestAction, ResponseHead};

pub use common::{DRAWN_HEADER, KEPT_HEADER, LOST};

/// The script: `on_request` and `on_response`, with `keep_state`.
pub struct Stateful;

#[tessera_sdk::script(keep_state)]
impl EdgeScript for Stateful {
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
    use tessera_sdk::testing::{
        call_on_request, call_on_response, describe, request, response, set_random,
    };
    use tessera_sdk::{HookSet, ScriptInfo};

    #[test]
    fn asks_the_host_to_keep_state() {
        assert_eq!(
            describe::<Stateful>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST | HookSet::ON_RESPONSE,
                keep_state: true,
                reusable: false,
                key_reads: None,
            }
        );
    }

    #[test]
    fn one_instance_remembers() {
        set_random(vec![9]);
        let req = request("/").build();
        let _ = call_on_request::<Stateful>(&req);
        let edits = call_on_response::<Stateful>(&req, &response(200).build());
        assert_eq!(edits.set, [("x-kept".to_owned(), "9".to_owned())]);
    }
}
