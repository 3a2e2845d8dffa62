//! The listeners' TLS: a certificate per SNI name (exact or `*.` wildcard) with a default,
//! TLS 1.2/1.3, ALPN h2 and http/1.1; certificates swapped in place when a reload loads
//! new files, so connections that follow use them and no listener restarts.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::TlsConfig;

/// The certificates of one listener.
#[derive(Debug)]
struct Certs {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `.example.com`: matches one more label on the left.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

impl Certs {
    fn load(cfg: &TlsConfig) -> Result<Certs, String> {
        let default = Arc::new(super::load_certified_key(&cfg.certificate, &cfg.key)?);
        let mut certs = Certs {
            default,
            exact: HashMap::new(),
            wildcard: Vec::new(),
        };
        for sni in &cfg.sni {
            let key = Arc::new(super::load_certified_key(&sni.certificate, &sni.key)?);
            for name in &sni.names {
                match name.strip_prefix('*') {
                    Some(suffix) => certs.wildcard.push((suffix.to_owned(), key.clone())),
                    None => {
                        certs.exact.insert(name.clone(), key.clone());
                    }
                }
            }
        }
        Ok(certs)
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        let wild = self.wildcard.iter().find(|(suffix, _)| {
            name.strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
        });
        wild.map_or_else(|| self.default.clone(), |(_, k)| k.clone())
    }
}

/// A listener's certificates, loaded and checked, ready to install.
#[derive(Debug)]
pub struct Loaded(Arc<Certs>);

/// Chooses a listener's certificate by SNI; [`Resolver::install`] swaps the set.
#[derive(Debug)]
pub struct Resolver {
    certs: ArcSwap<Certs>,
}

impl Resolver {
    /// Loads the listener's certificates; errors name the file and the problem.
    pub fn new(cfg: &TlsConfig) -> Result<Arc<Resolver>, String> {
        Ok(Arc::new(Resolver {
            certs: ArcSwap::from_pointee(Certs::load(cfg)?),
        }))
    }

    /// Loads `cfg`'s files for [`Resolver::install`]; errors name the file and the problem.
    pub fn load(cfg: &TlsConfig) -> Result<Loaded, String> {
        Ok(Loaded(Arc::new(Certs::load(cfg)?)))
    }

    /// Uses `loaded` for the connections that follow (those open keep theirs).
    pub fn install(&self, loaded: Loaded) {
        self.certs.store(loaded.0);
    }

    /// The server config for this listener's acceptor.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(super::VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certs.load().pick(hello.server_name()))
    }
}
