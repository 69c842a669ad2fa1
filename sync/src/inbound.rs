//! What to do with a message the broker delivers to the agent: pure, no I/O.

use apg_wire::{Command, ParsedTopic, Receipt, SealedDeletion, SealedTemplate};

use crate::seal::{self, OpenedTemplate, SiteKeyring, VerifiedDeletion};

/// The decision for one delivered message.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Import this authenticated template.
    Import(OpenedTemplate),
    /// Apply this authenticated deletion.
    Delete(VerifiedDeletion),
    /// A command from the hub.
    Command(Command),
    /// The hub committed these events of ours.
    Receipt(Receipt),
    /// Nothing to do (our own template coming back, a cleared retained message).
    Ignore(&'static str),
    /// Refused: logged and counted, never imported.
    Refuse(String),
}

pub(crate) fn classify(topic: &str, payload: &[u8], agent: &str, keys: &SiteKeyring) -> Inbound {
    let parsed = match ParsedTopic::parse(topic) {
        Ok(p) => p,
        Err(e) => return Inbound::Refuse(e.to_string()),
    };
    match parsed {
        ParsedTopic::Template {
            site,
            subject_id,
            template_id,
        } => {
            if payload.is_empty() {
                return Inbound::Ignore("cleared retained template");
            }
            let sealed = match SealedTemplate::decode(payload) {
                Ok(s) => s,
                Err(e) => return Inbound::Refuse(e.to_string()),
            };
            if sealed.site != site
                || sealed.subject_id != subject_id
                || sealed.template_id != template_id
            {
                return Inbound::Refuse(format!(
                    "template {} of subject {} arrived on the topic of template {template_id} of subject {subject_id}",
                    sealed.template_id, sealed.subject_id
                ));
            }
            if sealed.origin_agent == agent {
                return Inbound::Ignore("own template");
            }
            match seal::open_template(keys, &sealed) {
                Ok(opened) => Inbound::Import(opened),
                Err(e) => Inbound::Refuse(format!(
                    "template {template_id} of subject {subject_id}: {e}"
                )),
            }
        }
        ParsedTopic::Deletion { site, subject_id } => {
            if payload.is_empty() {
                return Inbound::Ignore("cleared retained deletion");
            }
            let sealed = match SealedDeletion::decode(payload) {
                Ok(s) => s,
                Err(e) => return Inbound::Refuse(e.to_string()),
            };
            if sealed.site != site || sealed.subject_id != subject_id {
                return Inbound::Refuse(format!(
                    "deletion of subject {} arrived on the topic of subject {subject_id}",
                    sealed.subject_id
                ));
            }
            if sealed.origin_agent == agent {
                return Inbound::Ignore("own deletion");
            }
            match seal::verify_deletion(keys, &sealed) {
                Ok(v) => Inbound::Delete(v),
                Err(e) => Inbound::Refuse(format!("deletion of subject {subject_id}: {e}")),
            }
        }
        ParsedTopic::Command {
            agent: to, action, ..
        } if to == agent => match Command::decode(payload, &action) {
            Ok(c) => Inbound::Command(c),
            Err(e) => Inbound::Refuse(e.to_string()),
        },
        ParsedTopic::Receipt { agent: to, .. } if to == agent => match Receipt::decode(payload) {
            Ok(r) => Inbound::Receipt(r),
            Err(e) => Inbound::Refuse(e.to_string()),
        },
        _ => Inbound::Refuse(format!("topic {topic:?} is not for this agent")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{SiteKey, TemplateToSeal};
    use apg_wire::{topic, Modality};
    use uuid::Uuid;

    fn keys() -> SiteKeyring {
        SiteKeyring::new("hq", SiteKey::from_bytes(1, &[3; 32]).unwrap())
    }

    fn sealed_from(origin: &str) -> SealedTemplate {
        seal::seal_template(
            &keys(),
            &TemplateToSeal {
                template_id: Uuid::now_v7(),
                subject_id: Uuid::now_v7(),
                modality: Modality::Face,
                format: "apg-face-embedding".into(),
                format_version: 1,
                origin_agent: origin.into(),
                enrolled_at: chrono::Utc::now(),
            },
            &[1, 2, 3],
        )
    }

    #[test]
    fn a_template_from_another_agent_is_imported() {
        let s = sealed_from("kiosk-a");
        let t = topic::template("hq", s.subject_id, s.template_id);
        assert!(matches!(
            classify(&t, &s.to_json(), "kiosk-b", &keys()),
            Inbound::Import(_)
        ));
    }

    #[test]
    fn our_own_template_coming_back_is_ignored() {
        let s = sealed_from("kiosk-b");
        let t = topic::template("hq", s.subject_id, s.template_id);
        assert!(matches!(
            classify(&t, &s.to_json(), "kiosk-b", &keys()),
            Inbound::Ignore(_)
        ));
    }

    #[test]
    fn a_tampered_template_is_refused_not_imported() {
        let mut s = sealed_from("kiosk-a");
        let last = s.ciphertext.len() - 1;
        s.ciphertext[last] ^= 0x80;
        let t = topic::template("hq", s.subject_id, s.template_id);
        match classify(&t, &s.to_json(), "kiosk-b", &keys()) {
            Inbound::Refuse(reason) => assert!(reason.contains("authentication"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_template_moved_to_another_subjects_topic_is_refused() {
        let s = sealed_from("kiosk-a");
        let t = topic::template("hq", Uuid::now_v7(), s.template_id);
        assert!(matches!(
            classify(&t, &s.to_json(), "kiosk-b", &keys()),
            Inbound::Refuse(_)
        ));
    }

    #[test]
    fn garbage_on_the_template_topic_is_refused() {
        let t = topic::template("hq", Uuid::now_v7(), Uuid::now_v7());
        assert!(matches!(
            classify(&t, b"{not json", "kiosk-b", &keys()),
            Inbound::Refuse(_)
        ));
    }
}
