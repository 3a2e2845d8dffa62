//! ESI 1.0 (W3C ESI Language Specification, Edge Architecture Specification): pages cached
//! once as templates, assembled per request from fragments that have their own cache keys.

mod assemble;
pub mod expr;
pub mod parse;
pub mod template;
pub mod vars;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH};

pub use assemble::stage;
pub use template::Template;

use crate::config::EsiConfig;
use crate::encoding::{self, Coding, CodingError};

/// What Tessera says to origins it can do (Edge Architecture 1.0 §2.1), device token `tessera`.
pub const SURROGATE_CAPABILITY: &str = "tessera=\"Surrogate/1.0 ESI/1.0\"";

/// Whether a response is to be processed: the origin asked for ESI/1.0 in
/// `Surrogate-Control: content="…"`, or the site enables it for the request's path.
pub fn active(cfg: &EsiConfig, surrogate_content: Option<&str>, path: &str) -> bool {
    surrogate_content.is_some_and(|c| {
        c.split_whitespace()
            .any(|t| t.eq_ignore_ascii_case("ESI/1.0"))
    }) || cfg.paths.iter().any(|p| path.starts_with(p.as_str()))
}

/// Turns a complete body into a template: decodes it if the origin compressed it (the stored
/// copy is then kept decoded and its headers say so), then parses it.
pub fn prepare(
    body: Bytes,
    headers: &mut HeaderMap,
    limit: u64,
) -> Result<(Bytes, Template), CodingError> {
    let body = match Coding::of(headers) {
        Some(Coding::Identity) => body,
        Some(c) => {
            let decoded = Bytes::from(encoding::decode(&body, c, limit)?);
            headers.remove(CONTENT_ENCODING);
            headers.remove(CONTENT_LENGTH);
            decoded
        }
        None => {
            return Err(CodingError::Corrupt(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "unsupported content-encoding",
            )))
        }
    };
    let template = parse::parse(body.clone());
    Ok((body, template))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activated_by_surrogate_control_or_a_configured_path() {
        let cfg = EsiConfig {
            paths: vec!["/esi/".into()],
            ..Default::default()
        };
        assert!(active(&cfg, Some("ESI/1.0"), "/p"));
        assert!(active(&cfg, Some("Foo/1 esi/1.0"), "/p"));
        assert!(!active(&cfg, Some("ESI/2.0"), "/p"));
        assert!(active(&cfg, None, "/esi/page"));
        assert!(!active(&cfg, None, "/page"));
    }
}
