//! rustls client configuration for mutual TLS from PEM files.

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore,
};

use crate::config::TlsFiles;

/// A certificate or key file that cannot be used, naming the file and the config key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read or holds no usable PEM item.
    #[error("sync.{key} {path}: {reason}")]
    File {
        /// Config key of the file.
        key: &'static str,
        /// The path.
        path: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// rustls refuses the combination (for example a key that does not match the certificate).
    #[error("sync.client_cert_file and sync.client_key_file cannot be used together: {0}")]
    Rejected(String),
}

fn file_error(key: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, format!("cannot read PEM certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            key,
            path,
            "holds no PEM certificate (BEGIN CERTIFICATE)",
        ));
    }
    Ok(certs)
}

/// Builds the client configuration: trust only `ca_file`, present the agent's certificate.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("ca_file", &files.ca_file)? {
        roots.add(cert).map_err(|e| {
            file_error(
                "ca_file",
                &files.ca_file,
                format!("unusable CA certificate: {e}"),
            )
        })?;
    }
    let chain = read_certs("client_cert_file", &files.client_cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.client_key_file).map_err(|e| {
        file_error(
            "client_key_file",
            &files.client_key_file,
            format!("holds no usable PEM private key: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))
}
