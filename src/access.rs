//! Roles, permissions and API keys.
//!
//! Kiosks and integrations call the TCP API with an `X-API-Key`; the key is shown once when
//! created and kept only as a SHA-256 hash. Operators on the machine use the Unix socket,
//! whose file permissions (group `apg-biometric`) are the access control, and act as admin.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::crypto::{random_bytes, sha256_hex};
use crate::store::api_keys::{self, ApiKeyRecord};
use crate::store::{self, Store, StoreError};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// List and read subjects.
    ReadSubjects,
    /// List devices.
    ReadDevices,
    /// Read history and the audit log.
    ReadRecords,
    /// Verify and identify.
    Verify,
    /// Aggregate statistics.
    Analytics,
    /// Enroll, delete, manage keys, backups and devices.
    Admin,
}

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read, verify, analytics.
    SecurityAnalyst,
    /// Verify and read subjects (a kiosk or door controller).
    Operator,
    /// Analytics and read subjects.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Self::Admin,
        Self::SecurityAnalyst,
        Self::Operator,
        Self::Viewer,
    ];

    /// Name as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::SecurityAnalyst => "security_analyst",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// Whether the role grants the permission.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Admin => true,
            Self::SecurityAnalyst => matches!(
                p,
                ReadSubjects | ReadDevices | ReadRecords | Verify | Analytics
            ),
            Self::Operator => matches!(p, ReadSubjects | ReadDevices | Verify),
            Self::Viewer => matches!(p, ReadSubjects | Analytics),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}; use admin, security_analyst, operator or viewer")
            })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name for the audit log: `api-key:<name>` or `cli:uid=<n>`.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Prefix of every API key, so that leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "apgk_";

/// A newly created key: the secret is shown once and never stored.
#[derive(Serialize)]
pub struct NewApiKey {
    /// The key record.
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    /// The secret, to be given to the kiosk.
    pub key: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Creates a key with a role and an optional lifetime.
pub fn create_key(
    store: &Store,
    name: &str,
    role: Role,
    expires_in_days: Option<u32>,
) -> Result<NewApiKey, StoreError> {
    let key = format!("{KEY_PREFIX}{}", hex::encode(random_bytes::<24>()));
    let now = chrono::Utc::now();
    let record = ApiKeyRecord {
        id: store::new_id().to_string(),
        name: name.to_string(),
        role: role.as_str().into(),
        key_hash: sha256_hex(key.as_bytes()),
        created_at: store::timestamp(now),
        expires_at: expires_in_days
            .map(|d| store::timestamp(now + chrono::Duration::days(i64::from(d)))),
        revoked_at: None,
        last_used_at: None,
    };
    store.write(|tx| api_keys::insert(tx, &record))?;
    Ok(NewApiKey { record, key })
}

/// Why a key was refused (the detail goes to the log, never to the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRejection {
    /// No key with that hash.
    Unknown,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// Checks a presented key; records its use.
pub fn authenticate(
    store: &Store,
    presented: &str,
) -> Result<Result<Principal, KeyRejection>, StoreError> {
    let hash = sha256_hex(presented.as_bytes());
    let Some(record) = store.read(|c| api_keys::by_hash(c, &hash))? else {
        return Ok(Err(KeyRejection::Unknown));
    };
    if record.revoked_at.is_some() {
        return Ok(Err(KeyRejection::Revoked));
    }
    let now = chrono::Utc::now();
    if record
        .expires_at
        .as_deref()
        .and_then(store::parse_time)
        .is_some_and(|t| t <= now)
    {
        return Ok(Err(KeyRejection::Expired));
    }
    let Ok(role) = record.role.parse::<Role>() else {
        return Ok(Err(KeyRejection::Unknown));
    };
    store.read(|c| api_keys::touch(c, &record.id, &store::timestamp(now)))?;
    Ok(Ok(Principal {
        name: format!("api-key:{}", record.name),
        role,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn roles_grant_what_the_documentation_says() {
        use Permission::*;
        assert!(Role::Admin.allows(Admin));
        assert!(Role::SecurityAnalyst.allows(Verify) && Role::SecurityAnalyst.allows(ReadRecords));
        assert!(!Role::SecurityAnalyst.allows(Admin));
        assert!(Role::Operator.allows(Verify) && Role::Operator.allows(ReadSubjects));
        assert!(!Role::Operator.allows(Analytics) && !Role::Operator.allows(ReadRecords));
        assert!(Role::Viewer.allows(Analytics) && Role::Viewer.allows(ReadSubjects));
        assert!(!Role::Viewer.allows(Verify));
    }

    #[test]
    fn a_key_works_until_revoked_and_only_its_hash_is_stored() {
        let (_dir, store) = temp_store();
        let new = create_key(&store, "kiosk", Role::Operator, None).unwrap();
        assert!(new.key.starts_with(KEY_PREFIX));
        let p = authenticate(&store, &new.key).unwrap().unwrap();
        assert_eq!(p.role, Role::Operator);
        let stored: Vec<String> = store
            .read(|c| {
                c.prepare("SELECT key_hash FROM api_keys")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap();
        assert!(!stored
            .iter()
            .any(|h| h.contains(&new.key[KEY_PREFIX.len()..])));
        store
            .write(|tx| api_keys::revoke(tx, "kiosk", &store::now()))
            .unwrap();
        assert_eq!(
            authenticate(&store, &new.key).unwrap(),
            Err(KeyRejection::Revoked)
        );
        assert_eq!(
            authenticate(&store, "apgk_nope").unwrap(),
            Err(KeyRejection::Unknown)
        );
    }

    #[test]
    fn an_expired_key_is_refused() {
        let (_dir, store) = temp_store();
        let new = create_key(&store, "old", Role::Viewer, Some(0)).unwrap();
        assert_eq!(
            authenticate(&store, &new.key).unwrap(),
            Err(KeyRejection::Expired)
        );
    }
}
