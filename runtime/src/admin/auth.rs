//! The admin token: where it comes from, and checking a request's credentials against it
//! in constant time.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminConfig;

/// Shortest token accepted: anything shorter could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin token, kept only as its SHA-256 so that comparing a candidate takes the same
/// time whatever its length and however much of it matches.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl Token {
    /// A token from its text.
    pub fn new(text: &str) -> anyhow::Result<Token> {
        let t = text.trim();
        anyhow::ensure!(
            t.len() >= MIN_TOKEN_LEN,
            "the admin token is shorter than {MIN_TOKEN_LEN} characters"
        );
        anyhow::ensure!(
            t.bytes().all(|b| b.is_ascii_graphic()),
            "the admin token must be printable ASCII without spaces"
        );
        Ok(Token(digest(t.as_bytes())))
    }

    /// The token the config names: the file `admin.token_file` (first line) if set, else
    /// the environment variable `admin.token_env`. `None` when neither holds one.
    pub fn from_config(cfg: &AdminConfig) -> anyhow::Result<Option<Token>> {
        if let Some(path) = &cfg.token_file {
            let meta = std::fs::metadata(path)
                .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", path.display()))?;
            // Like ssh with private keys: a secret others can read is not a secret.
            anyhow::ensure!(
                meta.permissions().mode() & 0o077 == 0,
                "admin.token_file {}: readable or writable by others (chmod 600 it)",
                path.display()
            );
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", path.display()))?;
            let first = text.lines().next().unwrap_or("");
            return Token::new(first)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", path.display()));
        }
        match std::env::var(&cfg.token_env) {
            Ok(v) if !v.trim().is_empty() => Token::new(&v)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("environment variable {}: {e}", cfg.token_env)),
            _ => Ok(None),
        }
    }

    /// Whether `candidate` is the token.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        digest(candidate).ct_eq(&self.0).into()
    }

    /// Whether the request carries the token: `Authorization: Bearer <token>`, or HTTP
    /// Basic with the token as the password (what a browser's login prompt sends).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return false;
        };
        let v = value.as_bytes();
        let Some(space) = v.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, rest) = (&v[..space], v[space + 1..].trim_ascii());
        if scheme.eq_ignore_ascii_case(b"bearer") {
            return self.matches(rest);
        }
        if scheme.eq_ignore_ascii_case(b"basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            return match decoded.iter().position(|b| *b == b':') {
                Some(colon) => self.matches(&decoded[colon + 1..]),
                None => false,
            };
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_carry_the_token_and_nothing_else_does() {
        let t = Token::new("correct-horse-battery").unwrap();
        assert!(t.admits(&with("Bearer correct-horse-battery")));
        assert!(t.admits(&with("bearer   correct-horse-battery")));
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:correct-horse-battery");
        assert!(t.admits(&with(&format!("Basic {basic}"))));
        for wrong in [
            "Bearer correct-horse-batter",
            "Bearer correct-horse-battery2",
            "Bearer ",
            "Bearer",
            "correct-horse-battery",
            "Token correct-horse-battery",
            "Basic !!!",
            "Basic Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5", // no colon
        ] {
            assert!(!t.admits(&with(wrong)), "{wrong}");
        }
        assert!(!t.admits(&HeaderMap::new()));
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in the middle").is_err());
        assert!(Token::new("  padded-but-long-enough  ").is_ok());
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let cfg = AdminConfig {
            token_file: Some(path.clone()),
            ..AdminConfig::default()
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::from_config(&cfg).unwrap().unwrap();
        assert!(t.matches(b"0123456789abcdef0123"));
    }
}
