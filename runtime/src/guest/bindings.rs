//! The one `bindgen!` call: generated types for the `tessera:edge` world live here only.
//!
//! The hooks are called asynchronously so that a long-running hook yields to other
//! connections at every epoch tick; the `html` callbacks are called synchronously from
//! inside lol_html's handlers. Imports may trap (a script past its host-call budget).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "edge-script",
    imports: { default: trappable },
    exports: { "tessera:edge/hooks": async },
    anyhow: true,
});

pub use self::exports::tessera::edge::hooks::HookSet;
pub use self::tessera::edge::{html_types, types};
