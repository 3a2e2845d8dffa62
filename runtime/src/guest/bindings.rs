//! The one `bindgen!` call: generated types for the `tessera:edge` world live here only.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "edge-script",
    anyhow: true,
});

pub use self::tessera::edge::types;
