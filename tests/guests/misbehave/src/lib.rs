//! Test guest for fault containment: spins, exhausts memory or traps, chosen by request path.
//!
//! | path          | hook          | behaviour                                         |
//! |---------------|---------------|---------------------------------------------------|
//! | `/loop`       | `cache_key`   | spins forever (the epoch deadline must stop it)   |
//! | `/alloc`      | `cache_key`   | allocates and touches 1 MiB chunks without end    |
//! | `/trap`       | `cache_key`   | panics, i.e. traps                                |
//! | `/trap-later` | `on_response` | panics after a normal key (the response is built) |
//! | `/respond`    | `on_request`  | answers 200 `synthetic\n` itself                  |
//! | `/work`       | `cache_key`   | [`WORK_ROUNDS`] rounds of arithmetic, then the default key: real work well inside any budget |
//! | `/grow`       | `cache_key`   | touches and frees [`GROW`] bytes (the memory stays grown), then the default key |
//! | `/html`       | `html_handlers` | asks for `body` elements; `on_element` sets `data-seen` on them (other paths: no rewrite) |
//!
//! A request carrying `x-which-instance` gets response header `x-instance: <n>`, a number
//! drawn once per instance: which responses one instance answered (`instance_reuse`).
//!
//! Every other path gets well-behaved answers. The three hooks are defined (so the host
//! calls each of them for every request, as the end-to-end tests need), and the HTML
//! rewrite; `cache_policy` is not, so the host never calls it. The script declares
//! `reusable`, so sites may reuse its instances (`instance_reuse`).

use std::cell::Cell;
use std::hint::black_box;

use tessera_sdk::{
    random_u64, EdgeScript, Element, HeaderEdits, HtmlHandler, Request, RequestAction,
    ResponseHead, SyntheticResponse,
};

/// Size of each chunk `/alloc` grabs.
pub const CHUNK: usize = 1 << 20;

/// Bytes `/grow` touches.
pub const GROW: usize = 12 << 20;

thread_local! {
    // This instance's number, drawn when first asked for.
    static INSTANCE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The script: `on_request`, `cache_key` and `on_response` are defined.
pub struct Misbehave;

#[tessera_sdk::script(reusable)]
impl EdgeScript for Misbehave {
    fn on_request(req: &Request) -> RequestAction {
        match req.path.as_str() {
            "/respond" => SyntheticResponse::new(200)
                .header("content-type", "text/plain")
                .body("synthetic\n")
                .into(),
            _ => RequestAction::proceed(),
        }
    }

    fn cache_key(req: &Request, default_key: &str) -> String {
        match req.path.as_str() {
            "/loop" => spin(),
            "/alloc" => hoard(),
            "/trap" => panic!("misbehave: trap requested"),
            "/work" => {
                work();
                default_key.to_owned()
            }
            "/grow" => {
                black_box(vec![1u8; GROW]);
                default_key.to_owned()
            }
            _ => default_key.to_owned(),
        }
    }

    fn on_response(req: &Request, _resp: &ResponseHead) -> HeaderEdits {
        match req.path.as_str() {
            "/trap-later" => panic!("misbehave: trap requested in on_response"),
            _ if req.header("x-which-instance").is_some() => {
                HeaderEdits::new().set("x-instance", instance().to_string())
            }
            _ => HeaderEdits::new(),
        }
    }

    fn html_handlers(req: &Request, _resp: &ResponseHead) -> Vec<HtmlHandler> {
        match req.path.as_str() {
            "/html" => vec![HtmlHandler::new("body").element()],
            _ => Vec::new(),
        }
    }

    fn on_element(_handler: u32, el: &mut Element) {
        el.set_attribute("data-seen", "yes");
    }
}

/// This instance's number.
fn instance() -> u64 {
    INSTANCE.with(|n| {
        let v = n.get().unwrap_or_else(random_u64);
        n.set(Some(v));
        v
    })
}

/// Rounds of `/work`: about a millisecond of guest time on this machine's cores.
pub const WORK_ROUNDS: u64 = 1_000_000;

/// A bounded computation the optimiser cannot remove.
fn work() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..WORK_ROUNDS {
        x = black_box(x.rotate_left(5) ^ i).wrapping_mul(0x100_0000_01b3);
    }
    black_box(x);
}

/// Loops forever; `black_box` keeps the optimiser from proving the loop pointless.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Grabs 1 MiB chunks forever, writing to every page so the memory is really used.
fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        kept.push(black_box(chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{
        call_cache_key, call_on_request, call_on_response, describe, request, response,
    };
    use tessera_sdk::{HookSet, ScriptInfo};

    #[test]
    fn the_host_calls_three_hooks_and_the_rewrite_and_may_reuse_instances() {
        assert_eq!(
            describe::<Misbehave>(),
            ScriptInfo {
                hooks: HookSet::ON_REQUEST
                    | HookSet::CACHE_KEY
                    | HookSet::ON_RESPONSE
                    | HookSet::HTML,
                keep_state: false,
                reusable: true,
                key_reads: None,
            }
        );
    }

    #[test]
    fn ordinary_paths_get_harmless_answers() {
        let req = request("/anything").build();
        assert_eq!(call_on_request::<Misbehave>(&req), RequestAction::proceed());
        assert_eq!(
            call_cache_key::<Misbehave>(&req, "example.com/anything"),
            "example.com/anything"
        );
        assert_eq!(
            call_on_response::<Misbehave>(&req, &response(200).build()),
            HeaderEdits::new()
        );
    }

    #[test]
    fn an_instance_tells_its_number_when_asked_and_keeps_it() {
        let ask = request("/a").header("x-which-instance", "1").build();
        let first = call_on_response::<Misbehave>(&ask, &response(200).build());
        assert_eq!(first.set.len(), 1);
        assert_eq!(first.set[0].0, "x-instance");
        let again = call_on_response::<Misbehave>(&ask, &response(200).build());
        assert_eq!(first, again);
    }

    #[test]
    fn grow_keys_normally() {
        let req = request("/grow").build();
        assert_eq!(call_cache_key::<Misbehave>(&req, "k"), "k");
    }

    #[test]
    fn respond_path_answers_synthetically() {
        let RequestAction::Respond(resp) =
            call_on_request::<Misbehave>(&request("/respond").build())
        else {
            panic!("expected a synthetic response")
        };
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, b"synthetic\n".as_slice())
        );
    }

    #[test]
    fn trap_later_keys_normally() {
        let req = request("/trap-later").build();
        assert_eq!(call_cache_key::<Misbehave>(&req, "k"), "k");
    }

    #[test]
    #[should_panic(expected = "misbehave: trap requested")]
    fn trap_path_panics_in_cache_key() {
        call_cache_key::<Misbehave>(&request("/trap").build(), "k");
    }

    #[test]
    #[should_panic(expected = "misbehave: trap requested in on_response")]
    fn trap_later_path_panics_in_on_response() {
        call_on_response::<Misbehave>(&request("/trap-later").build(), &response(200).build());
    }
}
