//! Loading the master key from a systemd credential or a key file.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Where the master key was read from (for health and doctor output; never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`).
    Credential(PathBuf),
    /// A key file.
    File(PathBuf),
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Self::File(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// The 256-bit master key. Only derived keys leave this type.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    source: MasterKeySource,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Wraps raw key bytes (tests and key generation).
    pub fn from_bytes(bytes: [u8; 32], source: MasterKeySource) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
            source,
        }
    }

    /// Where the key came from.
    pub fn source(&self) -> &MasterKeySource {
        &self.source
    }

    /// Derives a purpose-specific key, so that no two uses share key bytes.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"apg-biometric master key v1"), self.bytes.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(purpose.as_bytes(), out.as_mut())
            .expect("32 bytes is a valid HKDF length");
        out
    }
}

/// Why the master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// Neither a credential nor the file exists.
    #[error("no master key: {file} does not exist and no systemd credential {credential:?} was passed; create one with `apg-biometric keys init --file {file}` (the packages do this on install)")]
    Missing {
        /// Configured key file.
        file: String,
        /// Configured credential name.
        credential: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot read master key {source_desc}: {error}; the service account must own it")]
    Unreadable {
        /// Where.
        source_desc: String,
        /// Cause.
        error: std::io::Error,
    },
    /// The file is readable by others.
    #[error("master key {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}` (group and others must have no access)")]
    TooOpen {
        /// File.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The content is not a key.
    #[error("master key {source_desc} is not 32 raw bytes or 64 hexadecimal characters ({len} bytes found); regenerate it with `apg-biometric keys init`")]
    BadFormat {
        /// Where.
        source_desc: String,
        /// Length found.
        len: usize,
    },
}

/// Loads the master key: the systemd credential when `credentials_dir` holds it, else `file`.
///
/// `strict` (production) refuses a key file that group or others may read; otherwise such a
/// file is accepted and the caller should warn.
pub fn load_master_key(
    file: &Path,
    credential: &str,
    credentials_dir: Option<&Path>,
    strict: bool,
) -> Result<MasterKey, MasterKeyError> {
    if let Some(dir) = credentials_dir {
        let path = dir.join(credential);
        if path.exists() {
            // systemd places credentials on a private, read-only mount: no mode check needed.
            let source = MasterKeySource::Credential(path);
            return read_key(source);
        }
    }
    if !file.exists() {
        return Err(MasterKeyError::Missing {
            file: file.display().to_string(),
            credential: credential.to_string(),
        });
    }
    let meta = std::fs::metadata(file).map_err(|error| MasterKeyError::Unreadable {
        source_desc: file.display().to_string(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if strict && mode & 0o077 != 0 {
        return Err(MasterKeyError::TooOpen {
            path: file.display().to_string(),
            mode,
        });
    }
    read_key(MasterKeySource::File(file.to_path_buf()))
}

/// True when the key file may be read by group or others (a warning outside production).
pub fn key_file_is_open(file: &Path) -> bool {
    std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false)
}

fn read_key(source: MasterKeySource) -> Result<MasterKey, MasterKeyError> {
    let path = match &source {
        MasterKeySource::Credential(p) | MasterKeySource::File(p) => p.clone(),
    };
    let raw = Zeroizing::new(
        std::fs::read(&path).map_err(|error| MasterKeyError::Unreadable {
            source_desc: source.to_string(),
            error,
        })?,
    );
    let bad = || MasterKeyError::BadFormat {
        source_desc: source.to_string(),
        len: raw.len(),
    };
    let mut key = [0u8; 32];
    if raw.len() == 32 {
        key.copy_from_slice(&raw);
    } else {
        let text = std::str::from_utf8(&raw).map_err(|_| bad())?.trim();
        if text.len() != 64 {
            return Err(bad());
        }
        hex::decode_to_slice(text, &mut key).map_err(|_| bad())?;
    }
    let master = MasterKey::from_bytes(key, source);
    zeroize::Zeroize::zeroize(&mut key);
    Ok(master)
}

/// Writes a new random master key to `path` with mode 0600, refusing to overwrite one.
pub fn create_key_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Zeroizing::new(hex::encode(super::random_bytes::<32>()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(key.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_group_readable_key_is_refused_in_strict_mode_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        create_key_file(&path).unwrap();
        assert!(load_master_key(&path, "master.key", None, true).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_master_key(&path, "master.key", None, true).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(load_master_key(&path, "master.key", None, false).is_ok());
    }

    #[test]
    fn a_credential_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("master.key"), [7u8; 32]).unwrap();
        let key = load_master_key(
            Path::new("/nonexistent"),
            "master.key",
            Some(dir.path()),
            true,
        )
        .unwrap();
        assert!(matches!(key.source(), MasterKeySource::Credential(_)));
    }

    #[test]
    fn a_wrong_length_key_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "deadbeef").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_master_key(&path, "x", None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("8 bytes") && !err.contains("deadbeef"),
            "{err}"
        );
    }

    #[test]
    fn create_key_file_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_key_file(&path).unwrap();
        assert!(create_key_file(&path).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_debug_hides_the_key() {
        let key = MasterKey::from_bytes([1; 32], MasterKeySource::File("/k".into()));
        assert_ne!(*key.derive("a"), *key.derive("b"));
        assert!(!format!("{key:?}").contains("1, 1"));
    }
}
