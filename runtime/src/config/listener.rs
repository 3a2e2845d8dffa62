//! `[[listener]]`: more addresses to serve on, in cleartext or TLS with a certificate per
//! SNI name. The certificate files are loaded here too, so `check` and reloads refuse a
//! bad or mismatched pair naming the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::HeaderValue;

use super::raw::RawListener;
use super::units::Errors;
use super::ConfigError;

/// One more listening address.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub address: SocketAddr,
    /// TLS, or `None` for cleartext HTTP/1.1 and h2c.
    pub tls: Option<TlsConfig>,
    /// `Alt-Svc` (RFC 7838) sent on every response from this listener, replacing the origin's.
    pub alt_svc: Option<HeaderValue>,
}

/// A TLS listener's certificates (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Certificate chain, leaf first, for clients whose SNI no `sni` entry names.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Certificates for particular names.
    pub sni: Vec<SniCert>,
}

/// A certificate for some SNI names (`shop.example`, `*.shop.example`).
#[derive(Debug, Clone, PartialEq)]
pub struct SniCert {
    /// Lower-case names; `*.` matches exactly one more label.
    pub names: Vec<String>,
    /// Certificate chain.
    pub certificate: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The listeners, validated, their certificates loaded once to check them.
pub(super) fn listeners(
    raw: Vec<RawListener>,
    base: &Path,
    e: &Errors,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let mut out: Vec<ListenerConfig> = Vec::new();
    for l in raw {
        let address: SocketAddr = l.address.get_ref().parse().map_err(|_| {
            e.at(
                Some(l.address.span()),
                format!(
                    "key `listener.address`: `{}` is not an address like 0.0.0.0:443",
                    l.address.get_ref()
                ),
            )
        })?;
        if address.port() != 0 && out.iter().any(|o| o.address == address) {
            return Err(e.at(
                Some(l.address.span()),
                format!("key `listener.address`: {address} is listed twice"),
            ));
        }
        let tls = match (l.certificate, l.key) {
            (None, None) if l.sni.is_empty() => None,
            (Some(certificate), Some(key)) => {
                let pair = |c: &toml::Spanned<PathBuf>, k: &toml::Spanned<PathBuf>, what: &str| {
                    let (cp, kp) = (base.join(c.get_ref()), base.join(k.get_ref()));
                    crate::tls::load_certified_key(&cp, &kp)
                        .map_err(|why| e.at(Some(c.span()), format!("key `{what}`: {why}")))?;
                    Ok::<_, ConfigError>((cp, kp))
                };
                let (certificate, key) = pair(&certificate, &key, "listener.certificate")?;
                let mut sni = Vec::new();
                for s in l.sni {
                    let names = s
                        .names
                        .get_ref()
                        .iter()
                        .map(|n| sni_name(n).ok_or_else(|| e.at(Some(s.names.span()), format!("key `listener.sni.names`: `{n}` is not a host name or *.wildcard"))))
                        .collect::<Result<Vec<_>, _>>()?;
                    if names.is_empty() {
                        return Err(e.at(Some(s.names.span()), "key `listener.sni.names`: name at least one host".into()));
                    }
                    let (certificate, key) = pair(&s.certificate, &s.key, "listener.sni.certificate")?;
                    sni.push(SniCert { names, certificate, key });
                }
                Some(TlsConfig { certificate, key, sni })
            }
            _ => {
                return Err(e.at(
                    Some(l.address.span()),
                    format!("listener {address}: TLS needs both `certificate` and `key` (and `sni` entries only with them)"),
                ))
            }
        };
        let alt_svc = match l.alt_svc {
            None => None,
            Some(v) => Some(alt_svc(v.get_ref()).map_err(|why| {
                e.at(
                    Some(v.span()),
                    format!(
                        "key `listener.alt_svc`: {why} (e.g. `h3=\":443\"; ma=86400` or `clear`)"
                    ),
                )
            })?),
        };
        out.push(ListenerConfig {
            address,
            tls,
            alt_svc,
        });
    }
    Ok(out)
}

/// A host name or `*.` wildcard, lower-cased; `None` if it is neither.
fn sni_name(n: &str) -> Option<String> {
    let n = n.to_ascii_lowercase();
    let host = n.strip_prefix("*.").unwrap_or(&n);
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(n)
}

/// A valid `Alt-Svc` field value (RFC 7838 §3): `clear`, or alternatives such as
/// `h3=":443"; ma=86400, h2="alt.example:443"`, each `protocol-id="[host]:port"` with
/// `token=value` parameters (`ma` a number of seconds, `persist=1`).
fn alt_svc(value: &str) -> Result<HeaderValue, String> {
    let value = value.trim();
    if value == "clear" {
        return Ok(HeaderValue::from_static("clear"));
    }
    let alternatives = split_unquoted(value, ',').ok_or("an unclosed quote")?;
    for alt in alternatives {
        let mut parts = split_unquoted(alt, ';')
            .ok_or("an unclosed quote")?
            .into_iter();
        let (protocol, authority) = pair(parts.next().unwrap_or_default())
            .ok_or_else(|| format!("`{}` is not protocol-id=\"[host]:port\"", alt.trim()))?;
        let authority = unquote(authority)
            .ok_or_else(|| format!("the authority of `{protocol}` must be quoted"))?;
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("`{authority}` has no :port"))?;
        if port.parse::<u16>().map_or(true, |p| p == 0)
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        {
            return Err(format!("`{authority}` is not [host]:port"));
        }
        for param in parts {
            let (name, v) =
                pair(param).ok_or_else(|| format!("`{}` is not name=value", param.trim()))?;
            let v = unquote(v).unwrap_or(v);
            match name {
                "ma" if v.parse::<u32>().is_err() => {
                    return Err(format!("`ma={v}` is not a number of seconds"))
                }
                "persist" if v != "1" => return Err("`persist` can only be 1".into()),
                _ => {}
            }
        }
    }
    HeaderValue::from_str(value).map_err(|_| "not a valid header value".into())
}

/// `token=value` with `token` an RFC 9110 token; the value unparsed.
fn pair(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.trim().split_once('=')?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!name.is_empty() && name.bytes().all(token) && !value.is_empty()).then_some((name, value))
}

/// The contents of a quoted-string without escapes; `None` if not quoted.
fn unquote(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// `s` split at `sep` outside double quotes; `None` if a quote is left open.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    (!quoted).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::{alt_svc, sni_name};

    #[test]
    fn alt_svc_values_follow_rfc7838() {
        for good in [
            "clear",
            r#"h3=":443"; ma=86400"#,
            r#"h3=":443"; ma=86400, h2="alt.example:8443"; persist=1"#,
            r#"h3-29="[::1]:443""#,
        ] {
            assert_eq!(alt_svc(good).unwrap().to_str().unwrap(), good, "{good}");
        }
        for bad in [
            "",
            "h3",
            "h3=:443",
            r#"h3=":443"#,
            r#"h3="example.org""#,
            r#"h3=":0""#,
            r#"h3=":443"; ma=soon"#,
            r#"h3=":443"; persist=2"#,
            r#"h3=":443"; =1"#,
            "h3=\":443\"\r\nSet-Cookie: x=1",
        ] {
            assert!(alt_svc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sni_names_are_host_names_or_one_level_wildcards() {
        assert_eq!(sni_name("Shop.Example").as_deref(), Some("shop.example"));
        assert_eq!(
            sni_name("*.shop.example").as_deref(),
            Some("*.shop.example")
        );
        for bad in ["", "*", "*.", "a..b", "a b", "*.*.x", "x*.y", "a/b"] {
            assert_eq!(sni_name(bad), None, "{bad}");
        }
    }
}
