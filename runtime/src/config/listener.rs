//! `[[listener]]`: more addresses to serve on, in cleartext or TLS with a certificate per
//! SNI name. The certificate files are loaded here too, so `check` and reloads refuse a
//! bad or mismatched pair naming the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
        if out.iter().any(|o| o.address == address) {
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
        out.push(ListenerConfig { address, tls });
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

#[cfg(test)]
mod tests {
    use super::sni_name;

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
