//! `jwt-gate`: signed-in users identified at the edge by an HS256 JSON Web Token (RFC 7519)
//! in `Authorization: Bearer …` or the `session` cookie.
//!
//! - no token: anonymous, served from the shared cache; under a protected prefix
//!   (`/account` unless `protected` says otherwise), 401;
//! - a valid token: the request goes **past the shared cache** (`pass`) with
//!   `x-user-id: <sub>` for the origin: personal pages are never stored for others;
//! - any other token (bad signature, `alg` other than HS256, expired, not yet valid, no
//!   `sub`): 401, also on public paths, so a client learns its session is gone.
//!
//! Whatever `x-user-id` a client sends is removed: only this script sets it. The key comes
//! from `[site.script_config] jwt_secret` (e.g. `{ env = "JWT_SECRET" }`); without one no
//! token verifies (fail closed) and an error is logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tessera_sdk::{
    config, log, now_ms, EdgeScript, HeaderEdits, LogLevel, Request, RequestAction,
    SyntheticResponse,
};

/// The header the origin reads the signed-in user from.
pub const USER_HEADER: &str = "x-user-id";
/// Paths that need a signed-in user when `protected` is not configured.
pub const DEFAULT_PROTECTED: &str = "/account";
/// Longest token looked at; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token was refused (logged at debug, never sent to the client).
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts of JSON.
    Malformed,
    /// `alg` is not `HS256` (`none` included).
    Algorithm,
    /// The signature does not match.
    Signature,
    /// `exp` is missing or past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `sub` is missing, empty, too long or not printable ASCII.
    Subject,
    /// No `jwt_secret` is configured.
    NoSecret,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// The token's subject if `token` is an HS256 JWT signed with `secret`, valid at `now_s`.
pub fn verify(token: &str, secret: &[u8], now_s: f64) -> Result<String, Invalid> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| Invalid::Malformed);
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| Invalid::Malformed)?;
    // The algorithm is fixed here, never taken from the token: `none` and RS/HS confusion
    // are the first things an attacker tries.
    if header.alg != "HS256" {
        return Err(Invalid::Algorithm);
    }
    if secret.is_empty() {
        return Err(Invalid::NoSecret);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Invalid::NoSecret)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&decode(sig)?)
        .map_err(|_| Invalid::Signature)?;
    let claims: Claims = serde_json::from_slice(&decode(p)?).map_err(|_| Invalid::Malformed)?;
    match claims.exp {
        Some(exp) if exp > now_s => {}
        _ => return Err(Invalid::Expired),
    }
    if claims.nbf.is_some_and(|nbf| nbf > now_s) {
        return Err(Invalid::NotYetValid);
    }
    match claims.sub {
        Some(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(s)
        }
        _ => Err(Invalid::Subject),
    }
}

/// The bearer token, or the `session` cookie.
pub fn token(req: &Request) -> Option<&str> {
    if let Some(auth) = req.header("authorization") {
        let (scheme, rest) = auth.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim());
    }
    req.cookie("session")
}

/// Whether `path` is under one of the comma-separated `prefixes` (segment-wise).
pub fn is_protected(path: &str, prefixes: &str) -> bool {
    prefixes
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || p.ends_with('/'))
        })
}

fn unauthorized(error: Option<&str>) -> RequestAction {
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"tessera\", error=\"{e}\""),
        None => "Bearer realm=\"tessera\"".to_owned(),
    };
    SyntheticResponse::new(401)
        .header("www-authenticate", challenge)
        .header("cache-control", "no-store")
        .header("content-type", "text/plain")
        .body("sign in first\n")
        .into()
}

/// The script.
pub struct JwtGate;

#[tessera_sdk::script]
impl EdgeScript for JwtGate {
    fn on_request(req: &Request) -> RequestAction {
        let Some(token) = token(req) else {
            let protected = config("protected").unwrap_or_else(|| DEFAULT_PROTECTED.to_owned());
            if is_protected(&req.path, &protected) {
                return unauthorized(None);
            }
            return RequestAction::proceed_with(HeaderEdits::new().remove(USER_HEADER));
        };
        let secret = config("jwt_secret").unwrap_or_default();
        match verify(token, secret.as_bytes(), now_ms() as f64 / 1000.0) {
            Ok(sub) => RequestAction::pass_with(HeaderEdits::new().set(USER_HEADER, sub)),
            Err(why) => {
                if why == Invalid::NoSecret {
                    log(
                        LogLevel::Error,
                        "jwt-gate: no jwt_secret in [site.script_config]",
                    );
                }
                unauthorized(Some("invalid_token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::testing::{self, call_on_request, request};

    const SECRET: &[u8] = b"test-secret-of-enough-length-000";

    /// An HS256 token over `claims` (JSON), signed with `key`.
    pub fn sign(header: &str, claims: &str, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    fn hs256(claims: &str) -> String {
        sign(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET)
    }

    #[test]
    fn a_valid_token_names_its_subject() {
        let t = hs256(r#"{"sub":"ann","exp":2000}"#);
        assert_eq!(verify(&t, SECRET, 1000.0), Ok("ann".into()));
    }

    #[test]
    fn what_an_attacker_tries_first_is_refused() {
        let now = 1000.0;
        // alg none, with and without a signature.
        let none = sign(r#"{"alg":"none"}"#, r#"{"sub":"root","exp":2000}"#, SECRET);
        assert_eq!(verify(&none, SECRET, now), Err(Invalid::Algorithm));
        let p = URL_SAFE_NO_PAD.encode(r#"{"sub":"root","exp":2000}"#);
        let unsigned = format!("{}.{p}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(verify(&unsigned, SECRET, now), Err(Invalid::Algorithm));
        // Another key; a payload swapped under a good signature.
        let other = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"ann","exp":2000}"#,
            b"guess",
        );
        assert_eq!(verify(&other, SECRET, now), Err(Invalid::Signature));
        let good = hs256(r#"{"sub":"ann","exp":2000}"#);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"root","exp":2000}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), SECRET, now),
            Err(Invalid::Signature)
        );
        // Expired, no expiry, not yet valid, no subject, header injection in the subject.
        for (claims, why) in [
            (r#"{"sub":"ann","exp":999}"#, Invalid::Expired),
            (r#"{"sub":"ann"}"#, Invalid::Expired),
            (
                r#"{"sub":"ann","exp":2000,"nbf":1500}"#,
                Invalid::NotYetValid,
            ),
            (r#"{"exp":2000}"#, Invalid::Subject),
            (
                r#"{"sub":"ann\r\nx-admin: 1","exp":2000}"#,
                Invalid::Subject,
            ),
        ] {
            assert_eq!(verify(&hs256(claims), SECRET, now), Err(why), "{claims}");
        }
        // Garbage, and no secret at all (fail closed).
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(verify(t, SECRET, now), Err(Invalid::Malformed), "{t}");
        }
        assert_eq!(verify(&good, b"", now), Err(Invalid::NoSecret));
    }

    #[test]
    fn signed_in_users_pass_anonymous_ones_are_cached_and_protected_paths_need_a_token() {
        testing::set_config(&[("jwt_secret", std::str::from_utf8(SECRET).unwrap())]);
        testing::set_now_ms(1_000_000);
        let token = hs256(r#"{"sub":"ann","exp":2000}"#);
        let signed_in = request("/news")
            .header("authorization", &format!("Bearer {token}"))
            .build();
        let RequestAction::Pass(edits) = call_on_request::<JwtGate>(&signed_in) else {
            panic!("a signed-in user goes past the cache")
        };
        assert_eq!(edits.set, [(USER_HEADER.to_owned(), "ann".to_owned())]);
        let by_cookie = request("/account")
            .header("cookie", &format!("session={token}"))
            .build();
        assert!(matches!(
            call_on_request::<JwtGate>(&by_cookie),
            RequestAction::Pass(_)
        ));

        let anonymous = request("/news").header(USER_HEADER, "root").build();
        let RequestAction::Continue(edits) = call_on_request::<JwtGate>(&anonymous) else {
            panic!("anonymous requests are cached")
        };
        assert_eq!(
            edits.remove,
            [USER_HEADER.to_owned()],
            "a client cannot claim a user"
        );
        for path in ["/account", "/account/orders"] {
            let RequestAction::Respond(r) = call_on_request::<JwtGate>(&request(path).build())
            else {
                panic!("{path} needs a token")
            };
            assert_eq!(r.status, 401);
        }
        assert!(matches!(
            call_on_request::<JwtGate>(&request("/accountant").build()),
            RequestAction::Continue(_)
        ));
        let bad = request("/news")
            .header("authorization", "Bearer x.y.z")
            .build();
        assert!(
            matches!(call_on_request::<JwtGate>(&bad), RequestAction::Respond(r) if r.status == 401)
        );
    }
}
