//! The one `wit_bindgen::generate!` call: raw bindings for the `tessera:edge/edge-script` world.
//!
//! Nothing else in the SDK or in scripts should need these directly; the crate root
//! re-exports the types under friendly names and `#[tessera_sdk::script]` wires the hooks.

wit_bindgen::generate!({
    path: "../wit",
    world: "edge-script",
    pub_export_macro: true,
    export_macro_name: "__export_edge_script",
    default_bindings_module: "tessera_sdk::bindings",
    additional_derives: [PartialEq, Eq],
});
