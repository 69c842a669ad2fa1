//! Structural checks of a YAML tree against the shape of the default configuration.
//!
//! The default [`Config`](super::Config), serialised, is the schema: every key it has is
//! allowed, every other key is an error. Checking the raw tree (before serde) lets us report
//! every unknown key and every wrong type at once instead of stopping at the first.

use serde_yaml_ng::{Mapping, Value};

use super::Problem;

/// Keys whose value is a list of free-form records, checked by serde per item instead.
const LIST_KEYS: &[&str] = &["devices.simulated", "devices.serial", "devices.streams"];

/// Keys with a default value that may be set to null to switch the feature off.
const NULLABLE_KEYS: &[&str] = &["api.listen"];

/// Reports unknown keys and obviously wrong types in `user`, compared with `schema`.
pub fn check_shape(user: &Value, schema: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (user, schema) {
        (Value::Mapping(u), Value::Mapping(s)) => check_mapping(u, s, path, problems),
        (Value::Null, _) if path.is_empty() => {}
        (Value::Null, Value::Mapping(_)) => {} // an empty section keeps its defaults
        (Value::Null, _) if NULLABLE_KEYS.contains(&path) => {}
        (_, Value::Null) => {} // optional value: serde checks its type
        (u, s) if LIST_KEYS.contains(&path) => {
            if !matches!(u, Value::Sequence(_)) {
                problems.push(Problem::new(path, show(u), describe(s)));
            }
        }
        (u, s) if same_kind(u, s) => {}
        (u, s) => problems.push(Problem::new(path, show(u), describe(s))),
    }
}

fn check_mapping(user: &Mapping, schema: &Mapping, path: &str, problems: &mut Vec<Problem>) {
    for (key, value) in user {
        let Some(name) = key.as_str() else {
            problems.push(Problem::new(path, show(key), "keys must be strings"));
            continue;
        };
        let child = join(path, name);
        match schema.get(name) {
            Some(expected) => check_shape(value, expected, &child, problems),
            None => {
                let allowed: Vec<&str> = schema.keys().filter_map(Value::as_str).collect();
                problems.push(Problem::new(
                    &child,
                    "(unknown key)",
                    format!("one of: {}", allowed.join(", ")),
                ));
            }
        }
    }
}

fn same_kind(user: &Value, schema: &Value) -> bool {
    match (user, schema) {
        (Value::Bool(_), Value::Bool(_)) | (Value::String(_), Value::String(_)) => true,
        (Value::Number(u), Value::Number(s)) => s.is_f64() || !u.is_f64(),
        (Value::Sequence(_), Value::Sequence(_)) => true,
        (Value::Mapping(_), Value::Mapping(_)) => true,
        _ => false,
    }
}

/// Joins a key path with a child key, `a.b` style.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Short rendering of a value for a problem report.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "(empty)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "(a list)".into(),
        Value::Mapping(_) => "(a section)".into(),
        Value::Tagged(t) => format!("(tagged {})", t.tag),
    }
}

fn describe(schema: &Value) -> String {
    match schema {
        Value::Bool(_) => "true or false".into(),
        Value::Number(n) if n.is_f64() => "a number".into(),
        Value::Number(_) => "a whole number".into(),
        Value::String(_) => "a string".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a section with keys".into(),
        _ => "a value".into(),
    }
}

/// Every leaf key path of the schema (sections are walked, lists are leaves).
pub fn leaf_paths(schema: &Value) -> Vec<String> {
    fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Mapping(m) if !LIST_KEYS.contains(&path) => {
                for (k, v) in m {
                    if let Some(k) = k.as_str() {
                        walk(v, &join(path, k), out);
                    }
                }
            }
            _ => out.push(path.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// Sets `path` (dotted) in `root` to `value`, creating sections on the way.
pub fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    for key in path.split('.') {
        if !matches!(node, Value::Mapping(_)) {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            unreachable!("made a mapping above")
        };
        node = map
            .entry(Value::String(key.to_string()))
            .or_insert(Value::Null);
    }
    *node = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn unknown_keys_are_reported_with_the_allowed_ones() {
        let schema = yaml("security: {max_failed_attempts: 3, lockout_duration: 900}");
        let user = yaml("security: {max_failed_atempts: 5}");
        let mut problems = Vec::new();
        check_shape(&user, &schema, "", &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "security.max_failed_atempts");
        assert!(problems[0].allowed.contains("max_failed_attempts"));
    }

    #[test]
    fn every_wrong_type_is_reported_not_only_the_first() {
        let schema = yaml("a: {x: 1, y: true, z: 0.5}");
        let user = yaml("a: {x: 1.5, y: \"yes\", z: 1}");
        let mut problems = Vec::new();
        check_shape(&user, &schema, "", &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["a.x", "a.y"],
            "an integer is a fine float, the rest are wrong"
        );
    }

    #[test]
    fn set_path_creates_missing_sections() {
        let mut root = Value::Null;
        set_path(&mut root, "security.max_failed_attempts", Value::from(5));
        assert_eq!(root, yaml("security: {max_failed_attempts: 5}"));
    }
}
