//! The JSON Schemas in docs/schemas describe what this crate writes and refuses what it refuses.

use apg_wire::{
    time, AgentState, Audit, Command, CommandAction, Deletion, Device, DeviceState, Enrollment,
    Event, EventBody, Health, HealthCheck, HealthStatus, Identification, IdentificationDecision,
    Modality, SealedDeletion, SealedTemplate, Status, Verification, VerificationDecision,
    WIRE_VERSION,
};
use serde_json::{json, Value};
use uuid::Uuid;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas");

fn load(name: &str) -> Value {
    let path = format!("{SCHEMAS}/{name}.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A validator for `name`, with the other schemas registered so that references resolve
/// without touching the network or the file system.
fn validator(name: &str) -> jsonschema::Validator {
    let mut registry = jsonschema::Registry::new();
    for other in ["common", "template", "deletion"] {
        let schema = load(other);
        let id = schema["$id"].as_str().expect("$id").to_owned();
        registry = registry.add(id, schema).expect("register schema");
    }
    let registry = registry.prepare().expect("prepare the registry");
    jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&load(name))
        .unwrap_or_else(|e| panic!("{name}.schema.json does not compile: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, message: &Value) {
    let errors: Vec<String> = v.iter_errors(message).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{message}\n{errors:#?}");
}

fn sealed_template(subject_id: Uuid) -> SealedTemplate {
    SealedTemplate {
        version: WIRE_VERSION,
        template_id: Uuid::now_v7(),
        subject_id,
        modality: Modality::Fingerprint,
        format: "apg-fp".into(),
        format_version: 1,
        site: "site1".into(),
        origin_agent: "kiosk-a".into(),
        key_id: 1,
        enrolled_at: time::now(),
        nonce: vec![7; 12],
        ciphertext: vec![1, 2, 3, 4, 5],
    }
}

fn sealed_deletion(subject_id: Uuid) -> SealedDeletion {
    SealedDeletion {
        version: WIRE_VERSION,
        site: "site1".into(),
        subject_id,
        origin_agent: "kiosk-a".into(),
        deleted_at: time::now(),
        key_id: 1,
        nonce: vec![9; 12],
        tag: vec![0; 16],
    }
}

/// One body of every event type, with optional fields both set and empty.
fn bodies() -> Vec<EventBody> {
    let subject = Uuid::now_v7();
    vec![
        EventBody::Verification(Verification {
            subject_id: subject,
            modality: Modality::Fingerprint,
            decision: VerificationDecision::Accepted,
            score: Some(0.31),
            threshold: Some(0.03),
            quality: Some(0.9),
            liveness: None,
            device_id: "reader-1".into(),
            duration_ms: 42,
            request_id: Some("req-1".into()),
            reason: None,
        }),
        EventBody::Identification(Identification {
            modality: Modality::Face,
            decision: IdentificationDecision::NoMatch,
            subject_id: None,
            score: None,
            threshold: Some(0.45),
            gallery_size: 1200,
            device_id: "camera-1".into(),
            duration_ms: 18,
            request_id: None,
            reason: Some("no candidate above the threshold".into()),
        }),
        EventBody::Enrollment(Enrollment {
            subject_id: subject,
            modality: Modality::Fingerprint,
            template: sealed_template(subject),
            quality: Some(0.95),
            captures: 3,
            device_id: "reader-1".into(),
        }),
        EventBody::Deletion(Deletion {
            subject_id: subject,
            reason: None,
            authorization: sealed_deletion(subject),
        }),
        EventBody::Device(Device {
            device_id: "reader-1".into(),
            family: "fingerprint".into(),
            state: DeviceState::Disconnected,
            detail: Some("unplugged".into()),
        }),
        EventBody::Health(Health {
            status: HealthStatus::Degraded,
            outbox_depth: 12,
            outbox_over_limit: false,
            checks: vec![HealthCheck {
                name: "sync".into(),
                status: HealthStatus::Degraded,
                detail: Some("not connected".into()),
            }],
        }),
        EventBody::Audit(Audit {
            sequence: 7,
            action: "enroll".into(),
            actor: Some("cli:uid=0".into()),
            subject_id: Some(subject),
            outcome: "enrolled".into(),
            detail: None,
            previous_hash: "ab".repeat(32),
            entry_hash: "cd".repeat(32),
        }),
    ]
}

fn to_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the crate writes JSON")
}

#[test]
fn every_event_the_crate_writes_matches_the_event_schema() {
    let v = validator("event");
    for (seq, body) in bodies().into_iter().enumerate() {
        let event = Event::new("site1", "kiosk-a", seq as u64 + 1, time::now(), body);
        assert_valid(&v, &to_value(&event.to_json()));
    }
}

#[test]
fn status_command_template_and_deletion_match_their_schemas() {
    let subject = Uuid::now_v7();
    for state in [AgentState::Online, AgentState::Offline] {
        let status = Status::new("site1", "kiosk-a", state, time::now());
        assert_valid(&validator("status"), &to_value(&status.to_json()));
    }
    for action in [CommandAction::ReportHealth, CommandAction::RepublishStatus] {
        let command = Command::new(action, time::now());
        assert_valid(&validator("command"), &to_value(&command.to_json()));
    }
    assert_valid(
        &validator("template"),
        &to_value(&sealed_template(subject).to_json()),
    );
    assert_valid(
        &validator("deletion"),
        &to_value(&sealed_deletion(subject).to_json()),
    );
}

#[test]
fn messages_the_crate_refuses_are_refused_by_the_schemas() {
    let v = validator("event");
    let body = bodies().remove(0);
    let good = to_value(&Event::new("site1", "kiosk-a", 1, time::now(), body).to_json());
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        change(&mut m);
        m
    };
    let cases = [
        ("another version", broken(&|m| m["version"] = json!(2))),
        (
            "no event id",
            broken(&|m| drop(m.as_object_mut().unwrap().remove("event_id"))),
        ),
        (
            "a UUIDv4 event id",
            broken(&|m| m["event_id"] = json!("0b7c6f2e-54a1-4c3d-9e8f-1a2b3c4d5e6f")),
        ),
        ("an unknown type", broken(&|m| m["type"] = json!("login"))),
        (
            "a payload of another type",
            broken(&|m| m["type"] = json!("identification")),
        ),
        (
            "an extra payload field",
            broken(&|m| m["payload"]["pin"] = json!("1234")),
        ),
        (
            "a time with an offset",
            broken(&|m| m["occurred_at"] = json!("2026-11-28T05:00:00+01:00")),
        ),
        (
            "a topic level in the site",
            broken(&|m| m["site"] = json!("site/1")),
        ),
        ("a negative seq", broken(&|m| m["seq"] = json!(-1))),
    ];
    for (what, message) in cases {
        assert!(
            !v.is_valid(&message),
            "the event schema accepts {what}: {message}"
        );
        let decoded = Event::decode(
            &serde_json::to_vec(&message).unwrap(),
            "site1",
            "kiosk-a",
            apg_wire::EventType::Verification,
        );
        assert!(decoded.is_err(), "the crate accepts {what}: {message}");
    }

    let mut template = to_value(&sealed_template(Uuid::now_v7()).to_json());
    template["ciphertext"] = json!("not base64!");
    assert!(!validator("template").is_valid(&template));
    assert!(SealedTemplate::decode(&serde_json::to_vec(&template).unwrap()).is_err());
}

/// A copy of `message` with `change` applied.
fn altered(message: &Value, change: impl Fn(&mut Value)) -> Value {
    let mut m = message.clone();
    change(&mut m);
    m
}

#[test]
fn status_command_template_and_deletion_refuse_what_the_crate_refuses() {
    let subject = Uuid::now_v7();
    type Decode = fn(&[u8]) -> bool;
    let messages: [(&str, Value, Decode); 4] = [
        (
            "status",
            to_value(&Status::new("site1", "kiosk-a", AgentState::Online, time::now()).to_json()),
            |b| Status::decode(b).is_ok(),
        ),
        (
            "command",
            to_value(&Command::new(CommandAction::ReportHealth, time::now()).to_json()),
            |b| Command::decode(b, "report_health").is_ok(),
        ),
        (
            "template",
            to_value(&sealed_template(subject).to_json()),
            |b| SealedTemplate::decode(b).is_ok(),
        ),
        (
            "deletion",
            to_value(&sealed_deletion(subject).to_json()),
            |b| SealedDeletion::decode(b).is_ok(),
        ),
    ];
    for (name, good, decodes) in messages {
        let v = validator(name);
        assert!(
            decodes(&serde_json::to_vec(&good).unwrap()),
            "{name}: {good}"
        );
        let cases = [
            (
                "another version",
                altered(&good, |m| m["version"] = json!(2)),
            ),
            (
                "no version",
                altered(&good, |m| {
                    drop(m.as_object_mut().unwrap().remove("version"))
                }),
            ),
            (
                "an extra field",
                altered(&good, |m| m["extra"] = json!(true)),
            ),
        ];
        for (what, message) in cases {
            assert!(
                !v.is_valid(&message),
                "{name} schema accepts {what}: {message}"
            );
            let bytes = serde_json::to_vec(&message).unwrap();
            assert!(
                !decodes(&bytes),
                "the crate accepts a {name} with {what}: {message}"
            );
        }
    }

    // Base64 whose last character carries non-zero unused bits is refused by the decoder.
    for (name, field) in [("template", "ciphertext"), ("deletion", "tag")] {
        let good = if name == "template" {
            to_value(&sealed_template(subject).to_json())
        } else {
            to_value(&sealed_deletion(subject).to_json())
        };
        for text in ["AB==", "ABC="] {
            let message = altered(&good, |m| m[field] = json!(text));
            assert!(!validator(name).is_valid(&message), "{name} {field} {text}");
            let bytes = serde_json::to_vec(&message).unwrap();
            let decoded = if name == "template" {
                SealedTemplate::decode(&bytes).is_ok()
            } else {
                SealedDeletion::decode(&bytes).is_ok()
            };
            assert!(!decoded, "the crate accepts {name} {field} {text}");
        }
    }

    // `templates` cannot be an agent's topic level, so no message may name it as an agent.
    assert!(apg_wire::AgentTopics::new("site1", "templates").is_err());
    let status =
        to_value(&Status::new("site1", "kiosk-a", AgentState::Online, time::now()).to_json());
    assert!(!validator("status").is_valid(&altered(&status, |m| m["agent"] = json!("templates"))));
    let template = to_value(&sealed_template(subject).to_json());
    assert!(!validator("template")
        .is_valid(&altered(&template, |m| m["origin_agent"] = json!("templates"))));
}

#[test]
fn the_envelope_like_the_crate_ignores_unknown_fields_but_not_unknown_payload_fields() {
    let v = validator("event");
    let body = EventBody::Device(Device {
        device_id: "reader-1".into(),
        family: "fingerprint".into(),
        state: DeviceState::Connected,
        detail: None,
    });
    let good = to_value(&Event::new("site1", "kiosk-a", 1, time::now(), body).to_json());
    let decodes = |m: &Value| {
        Event::decode(
            &serde_json::to_vec(m).unwrap(),
            "site1",
            "kiosk-a",
            apg_wire::EventType::Device,
        )
        .is_ok()
    };
    let extra_envelope = altered(&good, |m| m["hint"] = json!("x"));
    assert!(decodes(&extra_envelope) && v.is_valid(&extra_envelope));
    // Optional payload fields may be left out, as serde reads a missing Option as None.
    let no_detail = altered(&good, |m| {
        drop(m["payload"].as_object_mut().unwrap().remove("detail"))
    });
    assert!(decodes(&no_detail) && v.is_valid(&no_detail));
    let extra_payload = altered(&good, |m| m["payload"]["hint"] = json!("x"));
    assert!(!decodes(&extra_payload) && !v.is_valid(&extra_payload));
    let no_payload = altered(&good, |m| {
        drop(m.as_object_mut().unwrap().remove("payload"))
    });
    assert!(!decodes(&no_payload) && !v.is_valid(&no_payload));
}

#[test]
fn receipts_match_their_schema_and_refuse_what_the_crate_refuses() {
    let v = validator("receipt");
    let receipt = to_value(&apg_wire::Receipt::new(vec![Uuid::now_v7(), Uuid::now_v7()]).to_json());
    assert_valid(&v, &receipt);
    assert_valid(&v, &to_value(&apg_wire::Receipt::new(vec![]).to_json()));
    for (what, message) in [
        (
            "another version",
            altered(&receipt, |m| m["version"] = json!(2)),
        ),
        (
            "an extra field",
            altered(&receipt, |m| m["agent"] = json!("kiosk-a")),
        ),
        (
            "a non-UUID id",
            altered(&receipt, |m| m["event_ids"][0] = json!("42")),
        ),
    ] {
        assert!(
            !v.is_valid(&message),
            "the schema accepts {what}: {message}"
        );
        let bytes = serde_json::to_vec(&message).unwrap();
        assert!(
            apg_wire::Receipt::decode(&bytes).is_err(),
            "the crate accepts {what}"
        );
    }
}
