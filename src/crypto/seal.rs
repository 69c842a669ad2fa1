//! AES-256-GCM sealing of templates and data keys.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{random_bytes, CryptoError};

/// A data key of one key version.
pub struct DataKey {
    /// Key version the templates record.
    pub version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate(version: u32) -> Self {
        Self {
            version,
            key: Zeroizing::new(random_bytes::<32>()),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }
}

/// A nonce and a ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// 96-bit nonce, fresh for every write.
    pub nonce: [u8; 12],
    /// Ciphertext followed by the 128-bit tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// What a template ciphertext is bound to: moving it to another row, subject, modality or key
/// version makes it fail authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateAad<'a> {
    /// Template row id.
    pub template_id: Uuid,
    /// Owner.
    pub subject_id: Uuid,
    /// Modality name.
    pub modality: &'a str,
    /// Data key version.
    pub key_version: u32,
}

impl TemplateAad<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"apg-biometric/template/v1\0");
        aad.extend_from_slice(self.template_id.as_bytes());
        aad.extend_from_slice(self.subject_id.as_bytes());
        aad.push(self.modality.len() as u8);
        aad.extend_from_slice(self.modality.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad
    }
}

/// Encrypts a template under `key`, bound to `aad`.
pub fn seal_template(key: &DataKey, aad: &TemplateAad<'_>, plaintext: &[u8]) -> Sealed {
    debug_assert_eq!(aad.key_version, key.version);
    seal(&key.cipher(), &aad.encode(), plaintext)
}

/// Decrypts a template; fails when the ciphertext, nonce, row binding or key does not match.
pub fn open_template(
    key: &DataKey,
    aad: &TemplateAad<'_>,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open(&key.cipher(), &aad.encode(), sealed).map_err(|_| CryptoError::Authentication {
        what: format!("template {}", aad.template_id),
    })
}

fn wrap_aad(version: u32) -> Vec<u8> {
    let mut aad = b"apg-biometric/data-key/v1\0".to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Encrypts a data key under the key-wrapping key derived from the master key.
pub fn wrap_data_key(wrapping_key: &[u8; 32], key: &DataKey) -> Sealed {
    let cipher = Aes256Gcm::new(wrapping_key.into());
    seal(&cipher, &wrap_aad(key.version), key.key.as_ref())
}

/// Decrypts a wrapped data key; fails under another master key.
pub fn unwrap_data_key(
    wrapping_key: &[u8; 32],
    version: u32,
    sealed: &Sealed,
) -> Result<DataKey, CryptoError> {
    let cipher = Aes256Gcm::new(wrapping_key.into());
    let what = || format!("data key version {version}");
    let plain = open(&cipher, &wrap_aad(version), sealed)
        .map_err(|_| CryptoError::Authentication { what: what() })?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed {
            what: what(),
            detail: format!("{} bytes instead of 32", plain.len()),
        })?;
    Ok(DataKey {
        version,
        key: Zeroizing::new(bytes),
    })
}

fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Sealed {
    let nonce = random_bytes::<12>();
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    Sealed { nonce, ciphertext }
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, ()> {
    cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(template: u128, subject: u128) -> TemplateAad<'static> {
        TemplateAad {
            template_id: Uuid::from_u128(template),
            subject_id: Uuid::from_u128(subject),
            modality: "fingerprint",
            key_version: 1,
        }
    }

    #[test]
    fn a_template_opens_only_with_its_own_binding() {
        let key = DataKey::generate(1);
        let sealed = seal_template(&key, &aad(1, 2), b"minutiae");
        assert_eq!(
            open_template(&key, &aad(1, 2), &sealed).unwrap().as_slice(),
            b"minutiae"
        );
        assert!(
            open_template(&key, &aad(9, 2), &sealed).is_err(),
            "another row"
        );
        assert!(
            open_template(&key, &aad(1, 9), &sealed).is_err(),
            "another subject"
        );
        let mut other_version = aad(1, 2);
        other_version.key_version = 2;
        assert!(
            open_template(&key, &other_version, &sealed).is_err(),
            "another key version"
        );
        assert!(
            open_template(&DataKey::generate(1), &aad(1, 2), &sealed).is_err(),
            "another key"
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let key = DataKey::generate(1);
        let a = seal_template(&key, &aad(1, 2), b"x");
        let b = seal_template(&key, &aad(1, 2), b"x");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_flipped_bit_fails_authentication() {
        let key = DataKey::generate(1);
        let mut sealed = seal_template(&key, &aad(1, 2), b"minutiae");
        sealed.ciphertext[0] ^= 1;
        let err = open_template(&key, &aad(1, 2), &sealed).unwrap_err();
        assert!(
            err.to_string()
                .contains("00000000-0000-0000-0000-000000000001"),
            "{err}"
        );
    }

    #[test]
    fn data_keys_unwrap_only_under_the_same_wrapping_key_and_version() {
        let dk = DataKey::generate(3);
        let wrapped = wrap_data_key(&[5; 32], &dk);
        let back = unwrap_data_key(&[5; 32], 3, &wrapped).unwrap();
        assert_eq!(*back.key, *dk.key);
        assert!(unwrap_data_key(&[6; 32], 3, &wrapped).is_err());
        assert!(unwrap_data_key(&[5; 32], 4, &wrapped).is_err());
    }
}
