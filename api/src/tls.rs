//! TLS material shared by clients and the coordinator: PEM files read and checked once at
//! start, so a missing or malformed file is one clear error before anything listens or
//! connects, rather than a failed handshake later.
//!
//! [`PemCerts`] keeps both forms a certificate is needed in: the PEM text (tonic's client
//! takes PEM) and the parsed DER (rustls on the server takes DER). [`Identity`] is a
//! certificate chain with its private key; [`ClientTls`] is what a client trusts and who it is.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file was unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// The file could not be read (the cause follows in the error chain).
    #[error("cannot read {what} {path}")]
    Read {
        /// Which flag's file (`--tls-ca`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing usable of the expected kind.
    #[error("{what} {path}: {reason}")]
    Invalid {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One or more PEM certificates (a chain, or the CAs to trust).
#[derive(Clone, Debug)]
pub struct PemCerts {
    /// The file's PEM text.
    pub pem: Vec<u8>,
    /// The certificates it holds, in order.
    pub der: Vec<CertificateDer<'static>>,
}

impl PemCerts {
    /// Reads `path` (`what` names the flag in errors); at least one certificate is required.
    pub fn read(what: &'static str, path: &Path) -> Result<Self, TlsFileError> {
        let pem = read(what, path)?;
        let der = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(what, path, format!("not PEM certificates: {e}")))?;
        if der.is_empty() {
            return Err(invalid(what, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
        }
        Ok(PemCerts { pem, der })
    }
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub struct PemKey {
    /// The file's PEM text.
    pub pem: Vec<u8>,
    /// The parsed key.
    pub der: PrivateKeyDer<'static>,
}

impl PemKey {
    /// Reads `path` (`what` names the flag in errors).
    pub fn read(what: &'static str, path: &Path) -> Result<Self, TlsFileError> {
        let pem = read(what, path)?;
        let der = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| invalid(what, path, format!("holds no PEM private key: {e}")))?;
        Ok(PemKey { pem, der })
    }
}

impl Clone for PemKey {
    fn clone(&self) -> Self {
        PemKey { pem: self.pem.clone(), der: self.der.clone_key() }
    }
}

// Never print key material, not even in debug logs.
impl fmt::Debug for PemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PemKey(..)")
    }
}

/// A certificate chain and its private key: who this side of a connection is.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: PemCerts,
    /// The leaf's key.
    pub key: PemKey,
}

impl Identity {
    /// Reads `--tls-cert` and `--tls-key`.
    pub fn read(cert: &Path, key: &Path) -> Result<Self, TlsFileError> {
        Ok(Identity { certs: PemCerts::read("--tls-cert", cert)?, key: PemKey::read("--tls-key", key)? })
    }
}

/// TLS towards a coordinator: used for `https://` addresses only.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CAs to trust; without one, the platform's trusted roots are used.
    pub ca: Option<PemCerts>,
    /// The client's own certificate, for a coordinator that requires one (mutual TLS).
    pub identity: Option<Identity>,
}

impl ClientTls {
    /// From the `--tls-ca`, `--tls-cert` and `--tls-key` flags; a certificate needs its key.
    pub fn from_files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, TlsFileError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some(Identity::read(c, k)?),
            (None, None) => None,
            (Some(c), None) => return Err(invalid("--tls-cert", c, "needs --tls-key".into())),
            (None, Some(k)) => return Err(invalid("--tls-key", k, "needs --tls-cert".into())),
        };
        Ok(ClientTls { ca: ca.map(|p| PemCerts::read("--tls-ca", p)).transpose()?, identity })
    }

    /// Whether any TLS option was given (they only make sense with `https://`).
    pub fn is_configured(&self) -> bool {
        self.ca.is_some() || self.identity.is_some()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read { what, path: path.to_path_buf(), source })
}

fn invalid(what: &'static str, path: &Path, reason: String) -> TlsFileError {
    TlsFileError::Invalid { what, path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_the_flag_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let e = PemCerts::read("--tls-ca", &f).unwrap_err().to_string();
        assert!(e.contains("--tls-ca") && e.contains("no PEM certificate"), "{e}");
        assert!(PemKey::read("--tls-key", &f).is_err());
        let e = ClientTls::from_files(None, Some(&f), None).unwrap_err().to_string();
        assert!(e.contains("needs --tls-key"), "{e}");
        let missing = PemCerts::read("--tls-ca", &dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("cannot read --tls-ca"), "{missing}");
    }
}
