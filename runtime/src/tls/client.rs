//! TLS to origins: which certificate authorities an `https://` origin is checked against.
//!
//! Verification is never optional: the system's roots by default, or only the CA file a
//! site names for a private origin. There is no plaintext fallback; the origin's URL scheme
//! alone decides.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates of a PEM file, or what is wrong with it (for config errors).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

/// The system's roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no system CA certificates found ({}); install ca-certificates or name the \
                     origin's CA with `origin_ca`",
                    found
                        .errors
                        .first()
                        .map_or("none in the usual places".into(), |e| e.to_string())
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// A client config for one site's https origin: TLS 1.2 and 1.3 (the connector sets ALPN).
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let roots = match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in read_ca_file(path).map_err(anyhow::Error::msg)? {
                roots.add(c)?;
            }
            Arc::new(roots)
        }
        None => system_roots().map_err(anyhow::Error::msg)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Whether an error chain comes from TLS (a handshake or certificate failure).
///
/// `io::Error` hides the error it wraps from `source()` (it skips to that error's own
/// source), and the connector wraps rustls' error in two of them: so look inside each.
pub fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    false
}
