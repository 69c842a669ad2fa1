//! The key ring in memory: derives the wrapping and audit keys from the master key, unwraps
//! the data keys, seals and opens templates, and carries out data-key rotation.
//!
//! Rotation is online and resumable: a new key becomes active for every new write at once;
//! templates under older keys are re-sealed in small transactions (each row only if it is still
//! under its old key); when none is left, the old keys are retired and their wrapped bytes
//! erased. A crash at any point leaves every template readable, and the next start finishes
//! the job.

use std::collections::BTreeMap;
use std::sync::RwLock;

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{
    open_template, seal_template, unwrap_data_key, wrap_data_key, CryptoError, DataKey, MasterKey,
    Sealed, TemplateAad,
};
use crate::store::data_keys::{self, DataKeyRow};
use crate::store::templates::{self, TemplateRow};
use crate::store::{self, Store, StoreError};

/// Why the key ring could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A data key does not unwrap under this master key.
    #[error("the master key from {source_desc} does not open data key version {version} of database {db}: use the master key this database was created with, or restore a backup made under this key")]
    WrongMasterKey {
        /// Where the master key came from.
        source_desc: String,
        /// Key version.
        version: u32,
        /// Database file.
        db: String,
    },
    /// A template failed to open.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A template refers to a key version that is not in the ring.
    #[error("template {template} is sealed under data key version {version}, which this database no longer holds; restore the template from a backup or re-enroll subject {subject}")]
    UnknownKeyVersion {
        /// Template.
        template: Uuid,
        /// Subject.
        subject: Uuid,
        /// Version.
        version: u32,
    },
}

struct Ring {
    active: u32,
    keys: BTreeMap<u32, DataKey>,
}

/// Derived keys and unwrapped data keys.
pub struct Vault {
    wrapping_key: Zeroizing<[u8; 32]>,
    audit_key: Zeroizing<[u8; 32]>,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("active_version", &self.active_version())
            .finish_non_exhaustive()
    }
}

/// A template sealed for a row.
pub struct SealedTemplate {
    /// Key version (0 for plaintext).
    pub key_version: u32,
    /// Nonce (empty for plaintext).
    pub nonce: Vec<u8>,
    /// Ciphertext (or plaintext when encryption is off).
    pub ciphertext: Vec<u8>,
}

impl Vault {
    /// Unwraps every usable data key; creates version 1 in a new database.
    pub fn open(store: &Store, master: &MasterKey) -> Result<Self, VaultError> {
        let wrapping_key = master.derive("data-key wrapping v1");
        let audit_key = master.derive("audit chain v1");
        if store.read(data_keys::list)?.is_empty() {
            let key = DataKey::generate(1);
            let row = wrapped_row(&wrapping_key, &key);
            store.write(|tx| data_keys::add_active(tx, &row))?;
        }
        let vault = Self {
            wrapping_key,
            audit_key,
            ring: RwLock::new(Ring {
                active: 0,
                keys: BTreeMap::new(),
            }),
        };
        let ring = vault.unwrap_all(store).map_err(|e| match e {
            VaultError::WrongMasterKey { version, db, .. } => VaultError::WrongMasterKey {
                source_desc: master.source().to_string(),
                version,
                db,
            },
            other => other,
        })?;
        *vault.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
        Ok(vault)
    }

    /// Checks that every live data key of another store unwraps under this master key.
    pub fn check_keys_of(&self, store: &Store) -> Result<(), VaultError> {
        self.unwrap_all(store).map(drop)
    }

    /// Re-reads the key ring from the store (after a restore replaced it).
    pub fn reload(&self, store: &Store) -> Result<(), VaultError> {
        let ring = self.unwrap_all(store)?;
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
        Ok(())
    }

    fn unwrap_all(&self, store: &Store) -> Result<Ring, VaultError> {
        let rows = store.read(data_keys::list)?;
        let mut keys = BTreeMap::new();
        let mut active = 0;
        for row in rows.iter().filter(|r| r.state != "retired") {
            let key = unwrap_data_key(&self.wrapping_key, row.version, &to_sealed(row)?).map_err(
                |_| VaultError::WrongMasterKey {
                    source_desc: "this agent's master key".into(),
                    version: row.version,
                    db: store.path().display().to_string(),
                },
            )?;
            if row.state == "active" {
                active = row.version;
            }
            keys.insert(row.version, key);
        }
        if active == 0 {
            return Err(StoreError::Corrupt {
                what: format!("data_keys table of {}", store.path().display()),
                detail: "no active data key".into(),
            }
            .into());
        }
        Ok(Ring { active, keys })
    }

    /// Key for the audit chain's MACs.
    pub fn audit_key(&self) -> &[u8; 32] {
        &self.audit_key
    }

    /// Version new templates are sealed under.
    pub fn active_version(&self) -> u32 {
        self.read_ring().active
    }

    /// Versions still able to open templates (active and retiring).
    pub fn live_versions(&self) -> Vec<u32> {
        self.read_ring().keys.keys().copied().collect()
    }

    fn read_ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals a template for a new row; `encrypt: false` (development only) stores plaintext.
    pub fn seal(
        &self,
        template_id: Uuid,
        subject_id: Uuid,
        modality: &str,
        plaintext: &[u8],
        encrypt: bool,
    ) -> SealedTemplate {
        if !encrypt {
            return SealedTemplate {
                key_version: 0,
                nonce: Vec::new(),
                ciphertext: plaintext.to_vec(),
            };
        }
        let ring = self.read_ring();
        let key = &ring.keys[&ring.active];
        let aad = TemplateAad {
            template_id,
            subject_id,
            modality,
            key_version: key.version,
        };
        let sealed = seal_template(key, &aad, plaintext);
        SealedTemplate {
            key_version: key.version,
            nonce: sealed.nonce.to_vec(),
            ciphertext: sealed.ciphertext,
        }
    }

    /// Opens a stored template.
    pub fn open_row(&self, row: &TemplateRow) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if row.key_version == 0 {
            return Ok(Zeroizing::new(row.ciphertext.clone()));
        }
        let ring = self.read_ring();
        let key = ring
            .keys
            .get(&row.key_version)
            .ok_or(VaultError::UnknownKeyVersion {
                template: row.id,
                subject: row.subject_id,
                version: row.key_version,
            })?;
        let nonce: [u8; 12] =
            row.nonce
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Malformed {
                    what: format!("template {}", row.id),
                    detail: format!("nonce of {} bytes instead of 12", row.nonce.len()),
                })?;
        let aad = TemplateAad {
            template_id: row.id,
            subject_id: row.subject_id,
            modality: &row.modality,
            key_version: row.key_version,
        };
        Ok(open_template(
            key,
            &aad,
            &Sealed {
                nonce,
                ciphertext: row.ciphertext.clone(),
            },
        )?)
    }

    /// Starts a rotation: a new active key for all new writes. Returns the new version.
    pub fn begin_rotation(&self, store: &Store) -> Result<u32, VaultError> {
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        // Versions are never reused, retired ones included.
        let version = store
            .read(data_keys::list)?
            .iter()
            .map(|r| r.version)
            .max()
            .unwrap_or(0)
            + 1;
        let key = DataKey::generate(version);
        let row = wrapped_row(&self.wrapping_key, &key);
        store.write(|tx| data_keys::add_active(tx, &row))?;
        ring.keys.insert(version, key);
        ring.active = version;
        Ok(version)
    }

    /// True when older keys still hold templates or have not been retired.
    pub fn rotation_pending(&self) -> bool {
        self.read_ring().keys.len() > 1
    }

    /// Re-seals up to `batch` templates that are not under the active key and come after
    /// `cursor`, in one transaction, and moves the cursor past them. Returns how many rows were
    /// looked at; 0 means the walk is complete.
    pub fn rotate_batch(
        &self,
        store: &Store,
        batch: u32,
        cursor: &mut Option<Uuid>,
    ) -> Result<usize, VaultError> {
        let active = self.active_version();
        let rows = store.read(|c| templates::not_under_version(c, active, *cursor, batch))?;
        let Some(last) = rows.last() else {
            return Ok(0);
        };
        *cursor = Some(last.id);
        let mut resealed = Vec::with_capacity(rows.len());
        for row in &rows {
            // A row that fails to open is left as it is: it is reported by the gallery load
            // and by `doctor`, and must not block the rotation of all the others.
            match self.open_row(row) {
                Ok(plain) => {
                    let s = self.seal(row.id, row.subject_id, &row.modality, &plain, true);
                    resealed.push((row, s));
                }
                Err(e) => {
                    tracing::error!(template = %row.id, subject = %row.subject_id, error = %e, "Template cannot be re-sealed during key rotation.")
                }
            }
        }
        let now = store::now();
        store.write(|tx| {
            for (row, s) in &resealed {
                // False when the row was deleted or re-sealed meanwhile: nothing to do.
                templates::reseal(
                    tx,
                    row.id,
                    row.key_version,
                    s.key_version,
                    &s.nonce,
                    &s.ciphertext,
                    &now,
                )?;
            }
            Ok::<_, VaultError>(())
        })?;
        Ok(rows.len())
    }

    /// Retires every older key once no template is left under it; returns false (keeping the
    /// old keys) while unreadable templates still need them, so none is ever orphaned.
    pub fn finish_rotation(&self, store: &Store) -> Result<bool, VaultError> {
        let active = self.active_version();
        let remaining = store.read(|c| templates::count_not_under_version(c, active))?;
        if remaining > 0 {
            return Ok(false);
        }
        let now = store::now();
        store.write(|tx| data_keys::retire_retiring(tx, &now))?;
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        ring.keys.retain(|v, _| *v == active);
        Ok(true)
    }
}

fn wrapped_row(wrapping_key: &[u8; 32], key: &DataKey) -> DataKeyRow {
    let sealed = wrap_data_key(wrapping_key, key);
    DataKeyRow {
        version: key.version,
        nonce: sealed.nonce.to_vec(),
        wrapped: sealed.ciphertext,
        state: "active".into(),
        created_at: store::now(),
    }
}

fn to_sealed(row: &DataKeyRow) -> Result<Sealed, VaultError> {
    let nonce: [u8; 12] = row
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt {
            what: format!("data key version {}", row.version),
            detail: format!("nonce of {} bytes", row.nonce.len()),
        })?;
    Ok(Sealed {
        nonce,
        ciphertext: row.wrapped.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeySource;
    use crate::store::subjects::{self, Subject};
    use crate::store::test_support::temp_store;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32], MasterKeySource::File("/test".into()))
    }

    fn add_template(store: &Store, vault: &Vault, subject: Uuid, plain: &[u8]) -> Uuid {
        let id = store::new_id();
        let s = vault.seal(id, subject, "fingerprint", plain, true);
        let row = TemplateRow {
            id,
            subject_id: subject,
            modality: "fingerprint".into(),
            format: "test/1".into(),
            quality: 0.9,
            key_version: s.key_version,
            nonce: s.nonce,
            ciphertext: s.ciphertext,
            origin_agent: "a".into(),
            created_at: store::now(),
        };
        store.write(|tx| templates::insert(tx, &row)).unwrap();
        id
    }

    fn add_subject(store: &Store, name: &str) -> Uuid {
        let s = Subject {
            id: store::new_id(),
            external_id: name.into(),
            display_name: None,
            origin_agent: "a".into(),
            created_at: store::now(),
        };
        store.write(|tx| subjects::insert(tx, &s)).unwrap();
        s.id
    }

    #[test]
    fn a_database_refuses_another_master_key() {
        let (dir, store) = temp_store();
        Vault::open(&store, &master(1)).unwrap();
        let err = Vault::open(&store, &master(2)).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn rotation_reseals_everything_and_erases_the_old_key() {
        let (_dir, store) = temp_store();
        let vault = Vault::open(&store, &master(1)).unwrap();
        let subject = add_subject(&store, "alice");
        for i in 0..25u8 {
            add_template(&store, &vault, subject, &[i; 40]);
        }
        let v2 = vault.begin_rotation(&store).unwrap();
        assert_eq!(v2, 2);
        // New writes already use the new key while old rows are still being re-sealed.
        add_template(&store, &vault, subject, b"new");
        let mut cursor = None;
        while vault.rotate_batch(&store, 10, &mut cursor).unwrap() > 0 {}
        assert!(vault.finish_rotation(&store).unwrap());
        let rows = store.read(|c| templates::by_subject(c, subject)).unwrap();
        assert_eq!(rows.len(), 26);
        assert!(rows.iter().all(|r| r.key_version == 2));
        for row in &rows {
            vault.open_row(row).unwrap();
        }
        let keys = store.read(data_keys::list).unwrap();
        assert_eq!(keys[0].state, "retired");
        assert!(
            keys[0].wrapped.is_empty(),
            "a retired key's bytes are erased"
        );
        // A restart with the same master key opens the rotated database.
        let again = Vault::open(&store, &master(1)).unwrap();
        assert_eq!(again.active_version(), 2);
        assert!(!again.rotation_pending());
    }

    #[test]
    fn an_interrupted_rotation_resumes_after_a_restart() {
        let (_dir, store) = temp_store();
        let vault = Vault::open(&store, &master(1)).unwrap();
        let subject = add_subject(&store, "bob");
        for i in 0..10u8 {
            add_template(&store, &vault, subject, &[i; 8]);
        }
        vault.begin_rotation(&store).unwrap();
        vault.rotate_batch(&store, 4, &mut None).unwrap();
        drop(vault); // "crash"
        let vault = Vault::open(&store, &master(1)).unwrap();
        assert!(vault.rotation_pending());
        for row in store.read(|c| templates::by_subject(c, subject)).unwrap() {
            vault.open_row(&row).unwrap();
        }
        let mut cursor = None;
        while vault.rotate_batch(&store, 4, &mut cursor).unwrap() > 0 {}
        assert!(vault.finish_rotation(&store).unwrap());
    }
}
