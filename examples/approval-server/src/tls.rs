//! Optional TLS for the server itself: the certificate chain and private key named by
//! `tls_cert_file` and `tls_key_file` (PEM), loaded once at start-up into a rustls server
//! configuration (the `ring` provider). A file that cannot be read, holds no certificate or
//! no key, or a key that does not match the certificate stops the start with a
//! [`TlsError`] naming the file. Behind a reverse proxy that terminates TLS, leave both
//! unset.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or the key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read, or is not valid PEM.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{}: no certificate (expected PEM `BEGIN CERTIFICATE` blocks, the server's first)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "{}: no private key (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not usable, or does not match the certificate.
    #[error("{}: {message} (certificate {})", path.display(), cert.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// The certificate file it was paired with.
        cert: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// The TLS acceptor for the certificate chain in `cert` and the private key in `key` (PEM),
/// offering HTTP/1.1 over ALPN (the only protocol the accept loop speaks).
///
/// # Errors
/// A file that cannot be read or parsed, no certificate, no key, or a key that does not
/// match the certificate (or that rustls cannot use), naming the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Read { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(read(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private_key = match PrivateKeyDer::from_pem_file(key) {
        Ok(private_key) => private_key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey { path: key.to_owned() }),
        Err(source) => return Err(read(key)(source)),
    };
    let key_error = |e: rustls::Error| TlsError::Key {
        path: key.to_owned(),
        cert: cert.to_owned(),
        message: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(key_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(key_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
