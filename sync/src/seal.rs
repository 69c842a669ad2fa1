//! Site-key sealing of templates and deletions (AES-256-GCM).
//!
//! A template enrolled at one agent travels to the other agents of its site through the hub,
//! which must not be able to read or alter it. The enrolling agent seals it under the site key
//! with associated data binding every field that gives the bytes their meaning (site, template
//! and subject ids, modality, format and version, origin agent, key version, enrolment time);
//! an importing agent opens it with the same key and refuses it if any of those differ. A
//! deletion is authenticated the same way over an empty plaintext.
//!
//! Associated data is a fixed label followed by length-prefixed fields, so no two different
//! field lists can produce the same bytes.

use std::{collections::BTreeMap, fmt};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use apg_wire::{Modality, SealedDeletion, SealedTemplate, WIRE_VERSION};
use chrono::{DateTime, Utc};
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

const TEMPLATE_LABEL: &[u8] = b"apg/v1 site template\0";
const DELETION_LABEL: &[u8] = b"apg/v1 site deletion\0";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// One version of a site key. The bytes are zeroized on drop and never printed.
#[derive(Clone)]
pub struct SiteKey {
    key_id: u32,
    key: Zeroizing<[u8; 32]>,
}

impl SiteKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(key_id: u32, bytes: &[u8]) -> Result<Self, OpenError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| OpenError::KeyLength {
            key_id,
            len: bytes.len(),
        })?;
        Ok(Self {
            key_id,
            key: Zeroizing::new(key),
        })
    }

    /// A fresh random key, for provisioning a site.
    pub fn generate(key_id: u32) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self { key_id, key }
    }

    /// The key version.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }
}

impl fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteKey {{ key_id: {}, key: <redacted> }}", self.key_id)
    }
}

/// The site keys an agent holds: it seals with the current one and opens with any it has, so
/// that templates sealed before a key rotation still import.
#[derive(Debug, Clone)]
pub struct SiteKeyring {
    site: String,
    current: u32,
    keys: BTreeMap<u32, SiteKey>,
}

impl SiteKeyring {
    /// A keyring of `site` whose current key is `current`.
    pub fn new(site: &str, current: SiteKey) -> Self {
        let id = current.key_id;
        Self {
            site: site.to_owned(),
            current: id,
            keys: BTreeMap::from([(id, current)]),
        }
    }

    /// Adds an older (or newer) key version for opening.
    pub fn with_key(mut self, key: SiteKey) -> Self {
        self.keys.insert(key.key_id, key);
        self
    }

    /// The site these keys belong to.
    pub fn site(&self) -> &str {
        &self.site
    }

    fn current(&self) -> &SiteKey {
        // `current` is always inserted by `new`.
        &self.keys[&self.current]
    }

    fn key(&self, key_id: u32) -> Result<&SiteKey, OpenError> {
        self.keys
            .get(&key_id)
            .ok_or(OpenError::UnknownKey { key_id })
    }
}

/// What an enrolling agent seals, besides the template bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateToSeal {
    /// Template id (UUIDv7).
    pub template_id: Uuid,
    /// Subject id.
    pub subject_id: Uuid,
    /// Modality.
    pub modality: Modality,
    /// Template format name.
    pub format: String,
    /// Template format version.
    pub format_version: u32,
    /// This agent's name.
    pub origin_agent: String,
    /// Enrolment time (UTC, microsecond precision on the wire).
    pub enrolled_at: DateTime<Utc>,
}

/// A template that opened and authenticated. The bytes are zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedTemplate {
    /// Template id.
    pub template_id: Uuid,
    /// Subject id.
    pub subject_id: Uuid,
    /// Modality.
    pub modality: Modality,
    /// Template format name.
    pub format: String,
    /// Template format version.
    pub format_version: u32,
    /// Agent where it was enrolled.
    pub origin_agent: String,
    /// Enrolment time.
    pub enrolled_at: DateTime<Utc>,
    /// Site key version it was sealed with.
    pub key_id: u32,
    /// The template bytes, to be re-encrypted under the agent's own data key.
    pub data: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for OpenedTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedTemplate")
            .field("template_id", &self.template_id)
            .field("subject_id", &self.subject_id)
            .field("modality", &self.modality)
            .field("format", &self.format)
            .field("origin_agent", &self.origin_agent)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish_non_exhaustive()
    }
}

/// A deletion whose authentication checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeletion {
    /// The deleted subject.
    pub subject_id: Uuid,
    /// Agent where it was deleted.
    pub origin_agent: String,
    /// Templates of the subject enrolled at or before this time are to be deleted.
    pub deleted_at: DateTime<Utc>,
}

/// Why a sealed template or deletion was refused. Never contains key or template bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// A key of the wrong size.
    #[error("site key version {key_id} has {len} bytes; a site key has 32")]
    KeyLength {
        /// Key version.
        key_id: u32,
        /// Bytes given.
        len: usize,
    },
    /// Sealed with a key version this agent does not have.
    #[error("sealed with site key version {key_id}, which this agent does not have: install that key version")]
    UnknownKey {
        /// Key version.
        key_id: u32,
    },
    /// Sealed for another site.
    #[error("sealed for site {found:?}, but this agent belongs to site {expected:?}")]
    WrongSite {
        /// Site of this agent.
        expected: String,
        /// Site in the message.
        found: String,
    },
    /// Nonce or tag of the wrong size.
    #[error("{what} has {len} bytes, expected {expected}")]
    BadLength {
        /// `nonce` or `tag`.
        what: &'static str,
        /// Bytes found.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The tag does not check: the bytes or one of the bound fields were altered, or the
    /// key is wrong.
    #[error("authentication failed: the ciphertext or its associated data (site, ids, modality, format, origin agent, time) was altered, or the site key differs")]
    Authentication,
}

fn push_field(ad: &mut Vec<u8>, bytes: &[u8]) {
    ad.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    ad.extend_from_slice(bytes);
}

fn micros(t: &DateTime<Utc>) -> [u8; 8] {
    t.timestamp_micros().to_be_bytes()
}

#[allow(clippy::too_many_arguments)]
fn template_ad(
    site: &str,
    template_id: Uuid,
    subject_id: Uuid,
    modality: Modality,
    format: &str,
    format_version: u32,
    origin_agent: &str,
    key_id: u32,
    enrolled_at: &DateTime<Utc>,
) -> Vec<u8> {
    let mut ad = TEMPLATE_LABEL.to_vec();
    push_field(&mut ad, site.as_bytes());
    push_field(&mut ad, template_id.as_bytes());
    push_field(&mut ad, subject_id.as_bytes());
    push_field(&mut ad, modality.as_str().as_bytes());
    push_field(&mut ad, format.as_bytes());
    push_field(&mut ad, &format_version.to_be_bytes());
    push_field(&mut ad, origin_agent.as_bytes());
    push_field(&mut ad, &key_id.to_be_bytes());
    push_field(&mut ad, &micros(enrolled_at));
    ad
}

fn deletion_ad(
    site: &str,
    subject_id: Uuid,
    origin_agent: &str,
    deleted_at: &DateTime<Utc>,
    key_id: u32,
) -> Vec<u8> {
    let mut ad = DELETION_LABEL.to_vec();
    push_field(&mut ad, site.as_bytes());
    push_field(&mut ad, subject_id.as_bytes());
    push_field(&mut ad, origin_agent.as_bytes());
    push_field(&mut ad, &micros(deleted_at));
    push_field(&mut ad, &key_id.to_be_bytes());
    ad
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Truncates to what the wire carries, so that the sealed and the transmitted times agree.
fn wire_time(t: &DateTime<Utc>) -> DateTime<Utc> {
    apg_wire::time::parse(&apg_wire::time::format(t)).unwrap_or(*t)
}

fn check_site(keys: &SiteKeyring, found: &str) -> Result<(), OpenError> {
    if found != keys.site {
        return Err(OpenError::WrongSite {
            expected: keys.site.clone(),
            found: found.to_owned(),
        });
    }
    Ok(())
}

/// Seals `plaintext` (the template bytes) under the current site key.
pub fn seal_template(
    keys: &SiteKeyring,
    meta: &TemplateToSeal,
    plaintext: &[u8],
) -> SealedTemplate {
    let key = keys.current();
    let enrolled_at = wire_time(&meta.enrolled_at);
    let ad = template_ad(
        &keys.site,
        meta.template_id,
        meta.subject_id,
        meta.modality,
        &meta.format,
        meta.format_version,
        &meta.origin_agent,
        key.key_id,
        &enrolled_at,
    );
    let nonce = fresh_nonce();
    // Encryption with a valid key and nonce length cannot fail.
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .unwrap_or_default();
    SealedTemplate {
        version: WIRE_VERSION,
        template_id: meta.template_id,
        subject_id: meta.subject_id,
        modality: meta.modality,
        format: meta.format.clone(),
        format_version: meta.format_version,
        site: keys.site.clone(),
        origin_agent: meta.origin_agent.clone(),
        key_id: key.key_id,
        enrolled_at,
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Opens a distributed template; refuses it unless every bound field checks.
pub fn open_template(
    keys: &SiteKeyring,
    sealed: &SealedTemplate,
) -> Result<OpenedTemplate, OpenError> {
    check_site(keys, &sealed.site)?;
    if sealed.nonce.len() != NONCE_LEN {
        return Err(OpenError::BadLength {
            what: "nonce",
            len: sealed.nonce.len(),
            expected: NONCE_LEN,
        });
    }
    let key = keys.key(sealed.key_id)?;
    let ad = template_ad(
        &sealed.site,
        sealed.template_id,
        sealed.subject_id,
        sealed.modality,
        &sealed.format,
        sealed.format_version,
        &sealed.origin_agent,
        sealed.key_id,
        &sealed.enrolled_at,
    );
    let data = key
        .cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &ad,
            },
        )
        .map_err(|_| OpenError::Authentication)?;
    Ok(OpenedTemplate {
        template_id: sealed.template_id,
        subject_id: sealed.subject_id,
        modality: sealed.modality,
        format: sealed.format.clone(),
        format_version: sealed.format_version,
        origin_agent: sealed.origin_agent.clone(),
        enrolled_at: sealed.enrolled_at,
        key_id: sealed.key_id,
        data: Zeroizing::new(data),
    })
}

/// Authenticates the deletion of `subject_id` at `origin_agent` under the current site key.
pub fn seal_deletion(
    keys: &SiteKeyring,
    subject_id: Uuid,
    origin_agent: &str,
    deleted_at: DateTime<Utc>,
) -> SealedDeletion {
    let key = keys.current();
    let deleted_at = wire_time(&deleted_at);
    let ad = deletion_ad(
        &keys.site,
        subject_id,
        origin_agent,
        &deleted_at,
        key.key_id,
    );
    let nonce = fresh_nonce();
    let tag = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &[], aad: &ad })
        .unwrap_or_default();
    SealedDeletion {
        version: WIRE_VERSION,
        site: keys.site.clone(),
        subject_id,
        origin_agent: origin_agent.to_owned(),
        deleted_at,
        key_id: key.key_id,
        nonce: nonce.to_vec(),
        tag,
    }
}

/// Checks a distributed deletion.
pub fn verify_deletion(
    keys: &SiteKeyring,
    sealed: &SealedDeletion,
) -> Result<VerifiedDeletion, OpenError> {
    check_site(keys, &sealed.site)?;
    for (what, len, expected) in [
        ("nonce", sealed.nonce.len(), NONCE_LEN),
        ("tag", sealed.tag.len(), TAG_LEN),
    ] {
        if len != expected {
            return Err(OpenError::BadLength {
                what,
                len,
                expected,
            });
        }
    }
    let key = keys.key(sealed.key_id)?;
    let ad = deletion_ad(
        &sealed.site,
        sealed.subject_id,
        &sealed.origin_agent,
        &sealed.deleted_at,
        sealed.key_id,
    );
    key.cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.tag,
                aad: &ad,
            },
        )
        .map_err(|_| OpenError::Authentication)?;
    Ok(VerifiedDeletion {
        subject_id: sealed.subject_id,
        origin_agent: sealed.origin_agent.clone(),
        deleted_at: sealed.deleted_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SiteKeyring {
        SiteKeyring::new("hq", SiteKey::from_bytes(1, &[9; 32]).unwrap())
    }

    fn meta() -> TemplateToSeal {
        TemplateToSeal {
            template_id: Uuid::now_v7(),
            subject_id: Uuid::now_v7(),
            modality: Modality::Fingerprint,
            format: "iso-19794-2-2005".into(),
            format_version: 1,
            origin_agent: "kiosk-a".into(),
            enrolled_at: Utc::now(),
        }
    }

    #[test]
    fn a_sealed_template_opens_to_the_same_bytes_after_json_transport() {
        let sealed = seal_template(&keys(), &meta(), b"minutiae bytes");
        let received = SealedTemplate::decode(&sealed.to_json()).unwrap();
        let opened = open_template(&keys(), &received).unwrap();
        assert_eq!(opened.data.as_slice(), b"minutiae bytes");
        assert_eq!(opened.subject_id, sealed.subject_id);
    }

    #[test]
    fn changing_any_bound_field_makes_the_template_fail_to_open() {
        let sealed = seal_template(&keys(), &meta(), b"minutiae bytes");
        type Alteration<'a> = (&'a str, Box<dyn Fn(&mut SealedTemplate)>);
        let alterations: Vec<Alteration> = vec![
            ("template id", Box::new(|s| s.template_id = Uuid::now_v7())),
            ("subject id", Box::new(|s| s.subject_id = Uuid::now_v7())),
            ("modality", Box::new(|s| s.modality = Modality::Face)),
            ("format", Box::new(|s| s.format = "other".into())),
            ("format version", Box::new(|s| s.format_version = 2)),
            (
                "origin agent",
                Box::new(|s| s.origin_agent = "kiosk-b".into()),
            ),
            (
                "enrolment time",
                Box::new(|s| s.enrolled_at += chrono::Duration::microseconds(1)),
            ),
            ("ciphertext", Box::new(|s| s.ciphertext[0] ^= 1)),
            ("nonce", Box::new(|s| s.nonce[0] ^= 1)),
        ];
        for (what, alter) in alterations {
            let mut s = sealed.clone();
            alter(&mut s);
            assert_eq!(
                open_template(&keys(), &s),
                Err(OpenError::Authentication),
                "{what}"
            );
        }
    }

    #[test]
    fn another_site_or_an_unknown_key_version_is_refused_by_name() {
        let sealed = seal_template(&keys(), &meta(), b"x");
        let other = SiteKeyring::new("branch", SiteKey::from_bytes(1, &[9; 32]).unwrap());
        assert!(matches!(
            open_template(&other, &sealed),
            Err(OpenError::WrongSite { .. })
        ));
        let rotated = SiteKeyring::new("hq", SiteKey::from_bytes(2, &[8; 32]).unwrap());
        assert_eq!(
            open_template(&rotated, &sealed),
            Err(OpenError::UnknownKey { key_id: 1 })
        );
        let both = rotated.with_key(SiteKey::from_bytes(1, &[9; 32]).unwrap());
        assert!(open_template(&both, &sealed).is_ok());
    }

    #[test]
    fn a_different_key_of_the_same_version_fails_authentication() {
        let sealed = seal_template(&keys(), &meta(), b"x");
        let wrong = SiteKeyring::new("hq", SiteKey::from_bytes(1, &[7; 32]).unwrap());
        assert_eq!(
            open_template(&wrong, &sealed),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn a_deletion_verifies_and_any_change_breaks_it() {
        let s = Uuid::now_v7();
        let sealed = seal_deletion(&keys(), s, "kiosk-a", Utc::now());
        let received = SealedDeletion::decode(&sealed.to_json()).unwrap();
        assert_eq!(verify_deletion(&keys(), &received).unwrap().subject_id, s);
        let mut other = sealed.clone();
        other.subject_id = Uuid::now_v7();
        assert_eq!(
            verify_deletion(&keys(), &other),
            Err(OpenError::Authentication)
        );
        let mut later = sealed;
        later.deleted_at += chrono::Duration::seconds(1);
        assert_eq!(
            verify_deletion(&keys(), &later),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn keys_and_template_bytes_never_appear_in_debug_output() {
        let k = SiteKey::from_bytes(1, &[0xAB; 32]).unwrap();
        assert!(!format!("{k:?}").contains("171"));
        let opened = open_template(&keys(), &seal_template(&keys(), &meta(), b"SECRET")).unwrap();
        assert!(!format!("{opened:?}").contains("SECRET"));
        assert!(!format!("{opened:?}").contains("83, 69"));
    }
}
