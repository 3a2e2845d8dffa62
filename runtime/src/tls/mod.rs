//! TLS: certificates and keys from PEM files, the listeners' server side (certificates by
//! SNI, swapped on reload) and the origin client's side (which CAs to trust).

pub mod client;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto this build uses, for clients and servers alike.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS versions offered and accepted: 1.3 and 1.2, nothing older.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate chain (leaf first) and its private key, checked to belong together.
/// Errors name the file and the problem, for config errors.
pub fn load_certified_key(certificate: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| format!("{}: cannot read: {e}", certificate.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", certificate.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate",
            certificate.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{}: holds no PEM private key", key.display())
        }
        e => format!("{}: cannot read a private key: {e}", key.display()),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "{}: the key does not belong to the certificate in {} ({e})",
            key.display(),
            certificate.display()
        )
    })?;
    Ok(certified)
}
