//! Key material and template encryption.
//!
//! Hierarchy: a 256-bit **master key** (file or systemd credential) never touches data
//! directly; HKDF derives from it a key-wrapping key and an audit-chain key. Templates are
//! encrypted under **data keys** (one per key version), stored wrapped in the database, and
//! rotated by re-encrypting every template. All key bytes live in zeroizing buffers.

mod master;
mod seal;

pub use master::{create_key_file, key_file_is_open, load_master_key, MasterKey, MasterKeySource};
pub use seal::{
    open_template, seal_template, unwrap_data_key, wrap_data_key, DataKey, Sealed, TemplateAad,
};

use sha2::{Digest, Sha256};

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system random source is available");
    buf
}

/// Hex SHA-256, used to store API keys without keeping them.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why a key or ciphertext could not be used. Messages never contain key or template bytes.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A ciphertext failed authentication: wrong key, wrong row, or tampered bytes.
    #[error("authentication failed for {what}: the ciphertext was altered, moved to another row, or sealed under another key")]
    Authentication {
        /// What was being opened (e.g. `template 0190...`).
        what: String,
    },
    /// The stored data has the wrong length or layout.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}
