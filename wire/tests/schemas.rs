//! Keeps `docs/schemas/` and the serde types in step: every message the code writes validates
//! against its schema, every example in a schema parses into the type and writes back
//! unchanged, and what the schema refuses the code refuses too.

use std::{collections::BTreeSet, fs, path::PathBuf};

use apg_wire::{
    event::*, template::*, AgentState, Command, CommandAction, Event, EventBody, Status,
    WIRE_VERSION,
};
use chrono::{DateTime, Utc};
use jsonschema::{Registry, Validator};
use serde_json::{json, Value};
use uuid::Uuid;

const BASE: &str = "https://apg-biometric.invalid/schemas/";

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas")
}

fn load(name: &str) -> Value {
    let path = schema_dir().join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(name: &str) -> Validator {
    let registry = Registry::new()
        .add(
            format!("{BASE}common.schema.json"),
            load("common.schema.json"),
        )
        .expect("common schema is a resource")
        .prepare()
        .expect("registry prepares");
    jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&load(name))
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
}

fn assert_valid(name: &str, instance: &Value) {
    let v = validator(name);
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{name} rejects {instance}:\n{}",
        errors.join("\n")
    );
}

fn at() -> DateTime<Utc> {
    apg_wire::time::parse("2026-11-28T04:30:12.000001Z").unwrap()
}

fn sealed_template() -> SealedTemplate {
    SealedTemplate {
        version: WIRE_VERSION,
        template_id: Uuid::now_v7(),
        subject_id: subject(),
        modality: Modality::Iris,
        format: "apg-iris-code".into(),
        format_version: 2,
        site: "hq".into(),
        origin_agent: "kiosk-1".into(),
        key_id: 3,
        enrolled_at: at(),
        nonce: vec![7; 12],
        ciphertext: (0..=255).collect(),
    }
}

fn sealed_deletion() -> SealedDeletion {
    SealedDeletion {
        version: WIRE_VERSION,
        site: "hq".into(),
        subject_id: subject(),
        origin_agent: "kiosk-1".into(),
        deleted_at: at(),
        key_id: 3,
        nonce: vec![1; 12],
        tag: vec![2; 16],
    }
}

fn subject() -> Uuid {
    Uuid::parse_str("0192f3a4-0000-7aaa-8bbb-0123456789ab").unwrap()
}

/// Several bodies per type, covering absent optional values and every enum variant that matters.
fn bodies() -> Vec<EventBody> {
    vec![
        EventBody::Verification(Verification {
            subject_id: subject(),
            modality: Modality::Fingerprint,
            decision: VerificationDecision::Accepted,
            score: Some(0.9),
            threshold: Some(0.4),
            quality: Some(0.8),
            liveness: Some(0.99),
            device_id: "sim-fp-0".into(),
            duration_ms: 320,
            request_id: Some("r-1".into()),
            reason: None,
        }),
        EventBody::Verification(Verification {
            subject_id: subject(),
            modality: Modality::Voice,
            decision: VerificationDecision::LockedOut,
            score: None,
            threshold: None,
            quality: None,
            liveness: None,
            device_id: "mic-0".into(),
            duration_ms: 0,
            request_id: None,
            reason: Some("3 failed attempts".into()),
        }),
        EventBody::Identification(Identification {
            modality: Modality::Face,
            decision: IdentificationDecision::Matched,
            subject_id: Some(subject()),
            score: Some(0.77),
            threshold: Some(0.6),
            gallery_size: 10,
            device_id: "cam-0".into(),
            duration_ms: 40,
            request_id: None,
            reason: None,
        }),
        EventBody::Enrollment(Enrollment {
            subject_id: subject(),
            modality: Modality::Iris,
            template: sealed_template(),
            quality: None,
            captures: 3,
            device_id: "iris-0".into(),
        }),
        EventBody::Deletion(Deletion {
            subject_id: subject(),
            reason: None,
            authorization: sealed_deletion(),
        }),
        EventBody::Device(Device {
            device_id: "usb-1-2".into(),
            family: "fingerprint".into(),
            state: DeviceState::Error,
            detail: Some("timeout".into()),
        }),
        EventBody::Health(Health {
            status: HealthStatus::Ok,
            outbox_depth: 0,
            outbox_over_limit: false,
            checks: vec![],
        }),
        EventBody::Audit(Audit {
            sequence: 1,
            action: "key.rotate".into(),
            actor: None,
            subject_id: None,
            outcome: "success".into(),
            detail: None,
            previous_hash: "0".repeat(64),
            entry_hash: "f".repeat(64),
        }),
    ]
}

fn event(body: EventBody) -> Event {
    Event::new("hq", "kiosk-1", 9, at(), body)
}

#[test]
fn every_event_the_code_writes_validates_against_its_schema() {
    let mut covered = BTreeSet::new();
    for body in bodies() {
        let e = event(body);
        let name = format!("event-{}.schema.json", e.event_type());
        let value: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_valid(&name, &value);
        covered.insert(e.event_type());
    }
    assert_eq!(covered.len(), EventType::ALL.len(), "a type has no sample");
}

#[test]
fn status_command_template_and_deletion_validate_against_their_schemas() {
    for state in [AgentState::Online, AgentState::Offline] {
        let s = Status::new("hq", "kiosk-1", state, at());
        assert_valid("status.schema.json", &serde_json::from_slice(&s.to_json()).unwrap());
    }
    for action in [CommandAction::ReportHealth, CommandAction::RepublishStatus] {
        let c = Command::new(action, at());
        assert_valid("command.schema.json", &serde_json::from_slice(&c.to_json()).unwrap());
    }
    let t = sealed_template();
    assert_valid("template.schema.json", &serde_json::from_slice(&t.to_json()).unwrap());
    let d = sealed_deletion();
    assert_valid("template-deletion.schema.json", &serde_json::from_slice(&d.to_json()).unwrap());
}

/// Parses an example with the type its schema describes and writes it back.
fn round_trip(name: &str, example: &Value) -> Value {
    let bytes = serde_json::to_vec(example).unwrap();
    let written = match name {
        "status.schema.json" => Status::decode(&bytes).map(|m| m.to_json()),
        "command.schema.json" => {
            let action = example["action"].as_str().unwrap();
            Command::decode(&bytes, action).map(|m| m.to_json())
        }
        "template.schema.json" => SealedTemplate::decode(&bytes).map(|m| m.to_json()),
        "template-deletion.schema.json" => SealedDeletion::decode(&bytes).map(|m| m.to_json()),
        _ => {
            let t: EventType = example["type"].as_str().unwrap().parse().unwrap();
            let (site, agent) = (example["site"].as_str().unwrap(), example["agent"].as_str().unwrap());
            Event::decode(&bytes, site, agent, t).map(|m| m.to_json())
        }
    };
    let written = written.unwrap_or_else(|e| panic!("example of {name} does not parse: {e}"));
    serde_json::from_slice(&written).unwrap()
}

fn message_schemas() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".schema.json") && n != "common.schema.json")
        .collect();
    names.sort();
    names
}

#[test]
fn every_schema_example_parses_into_its_type_and_writes_back_unchanged() {
    let names = message_schemas();
    assert_eq!(names.len(), EventType::ALL.len() + 4, "unexpected schema files: {names:?}");
    for name in names {
        let schema = load(&name);
        let examples = schema["examples"].as_array().expect("every schema has examples");
        assert!(!examples.is_empty(), "{name} has no example");
        for example in examples {
            assert_valid(&name, example);
            assert_eq!(&round_trip(&name, example), example, "{name}");
        }
    }
}

/// Mutations that the schema must refuse; the code must refuse them as well.
fn mutations(example: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let obj = example.as_object().unwrap();
    for key in obj.keys() {
        let mut m = example.clone();
        m.as_object_mut().unwrap().remove(key);
        out.push((format!("without {key}"), m));
    }
    let mut extra = example.clone();
    extra["unexpected_field"] = json!(1);
    out.push(("with an unknown field".into(), extra));
    let mut version = example.clone();
    version["version"] = json!(2);
    out.push(("with version 2".into(), version));
    for key in ["occurred_at", "since", "issued_at", "enrolled_at", "deleted_at"] {
        if obj.contains_key(key) {
            let mut m = example.clone();
            m[key] = json!("2026-11-28T05:30:12+01:00");
            out.push((format!("with {key} not in UTC"), m));
        }
    }
    if let Some(payload) = obj.get("payload").and_then(Value::as_object) {
        for key in payload.keys() {
            let mut m = example.clone();
            m["payload"].as_object_mut().unwrap().remove(key);
            out.push((format!("without payload.{key}"), m));
        }
        let mut m = example.clone();
        m["payload"]["unexpected_field"] = json!(true);
        out.push(("with an unknown payload field".into(), m));
    }
    if obj.contains_key("event_id") {
        let mut m = example.clone();
        m["event_id"] = json!("2f1e6c84-93a1-4b2d-9c47-5d3e8a1f0b6c"); // a random (v4) id
        out.push(("with a UUIDv4 event id".into(), m));
    }
    out
}

#[test]
fn what_a_schema_refuses_the_code_refuses_too() {
    for name in message_schemas() {
        let schema = load(&name);
        let v = validator(&name);
        for example in schema["examples"].as_array().unwrap() {
            for (what, bad) in mutations(example) {
                assert!(!v.is_valid(&bad), "{name} accepts the example {what}");
                let bytes = serde_json::to_vec(&bad).unwrap();
                let parsed = std::panic::catch_unwind(|| round_trip(&name, &bad));
                assert!(parsed.is_err(), "the code accepts the {name} example {what}");
                let _ = bytes;
            }
        }
    }
}
