//! Commands of the `tessera` binary that live in their own files.

pub mod check;
pub mod key;
