//! Tessera: a caching reverse proxy scripted by sandboxed WebAssembly components.

pub mod admin;
pub mod builder;
pub mod cache;
pub mod clock;
pub mod config;
pub mod demo;
pub mod encoding;
pub mod fleet;
pub mod geoip;
pub mod guest;
pub mod html;
pub mod observe;
pub mod origin;
pub mod proxy;
pub mod reload;
pub mod request;
pub mod scaffold;
pub mod simulate;
pub mod testing;
pub mod tls;
