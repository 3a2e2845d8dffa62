//! The one `bindgen!` call: generated types for the `tessera:edge` world live here only.
//!
//! Exports are called asynchronously so that a long-running hook yields to other
//! connections at every epoch tick; imports may trap (a script past its host-call budget).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "edge-script",
    imports: { default: trappable },
    exports: { default: async },
    anyhow: true,
});

pub use self::exports::tessera::edge::hooks::HookSet;
pub use self::tessera::edge::types;
