//! HTML at delivery: ESI assembly (host-native) and the site's scripts' streaming rewrite.

pub mod encoding;
pub mod esi;
pub mod rewrite;
