//! Certificates for a test run: a CA, the broker's server certificate, client certificates for
//! agents and hubs, and a second, unrelated CA whose clients the broker must refuse.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A certificate authority that signs identities into a directory.
pub struct Authority {
    dir: PathBuf,
    name: String,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate (PEM): the bundle clients and the broker trust.
    pub ca_file: PathBuf,
}

impl Authority {
    /// A new CA called `name`, writing its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).expect("write CA certificate");
        Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            cert,
            key,
            ca_file,
        }
    }

    fn issue(&self, common_name: &str, server: bool) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().expect("DNS name")),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf certificate");
        let stem = format!("{}-{common_name}", self.name);
        let identity = Identity {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&identity.cert, cert.pem()).expect("write certificate");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write key");
        // Mosquitto may drop to its own user; it must still read its files.
        readable_by_all(&identity.cert);
        readable_by_all(&identity.key);
        identity
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Identity {
        self.issue("broker", true)
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(name, false)
    }
}

fn readable_by_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}
