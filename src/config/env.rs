//! `APG_BIOMETRIC_<SECTION>_<KEY>` environment overrides.
//!
//! Engine keys drop the `biometric_engines` level (`APG_BIOMETRIC_FINGERPRINT_QUALITY_THRESHOLD`),
//! every other key is its dotted path in upper case with `_` between the parts
//! (`APG_BIOMETRIC_SECURITY_MAX_FAILED_ATTEMPTS`). A variable with the prefix that names no key
//! is a problem, so that a typo in a unit file does not go unnoticed.

use serde_yaml_ng::Value;

use super::schema::{leaf_paths, set_path};
use super::Problem;

/// Prefix of every override.
pub const PREFIX: &str = "APG_BIOMETRIC_";

/// Variables with the prefix that are not key overrides.
const RESERVED: &[&str] = &["APG_BIOMETRIC_ENV", "APG_BIOMETRIC_CONFIG"];

/// The environment variable that overrides a key path.
pub fn variable_for(path: &str) -> String {
    let short = path.strip_prefix("biometric_engines.").unwrap_or(path);
    format!("{PREFIX}{}", short.replace('.', "_").to_uppercase())
}

/// Applies every `APG_BIOMETRIC_*` variable in `vars` to `tree`; returns the key paths set.
pub fn apply_overrides(
    tree: &mut Value,
    schema: &Value,
    vars: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let known: Vec<(String, String)> = leaf_paths(schema)
        .into_iter()
        .map(|p| (variable_for(&p), p))
        .collect();
    let mut applied = Vec::new();
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        let Some((_, path)) = known.iter().find(|(var, _)| *var == name) else {
            problems.push(Problem::new(
                &format!("${name}"),
                "(unknown override)",
                "a variable named after a key, e.g. APG_BIOMETRIC_SECURITY_MAX_FAILED_ATTEMPTS",
            ));
            continue;
        };
        // Values are YAML scalars, so `0.9`, `true` and `[a, b]` keep their types.
        let value = serde_yaml_ng::from_str(&raw).unwrap_or(Value::String(raw));
        set_path(tree, path, value);
        applied.push(path.clone());
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_keys_skip_the_engines_level() {
        assert_eq!(
            variable_for("biometric_engines.fingerprint.quality_threshold"),
            "APG_BIOMETRIC_FINGERPRINT_QUALITY_THRESHOLD"
        );
        assert_eq!(
            variable_for("security.max_failed_attempts"),
            "APG_BIOMETRIC_SECURITY_MAX_FAILED_ATTEMPTS"
        );
    }

    #[test]
    fn overrides_keep_their_yaml_types_and_typos_are_reported() {
        let schema: Value = serde_yaml_ng::from_str(
            "security: {max_failed_attempts: 3}\nbiometric_engines: {face: {enabled: false}}",
        )
        .unwrap();
        let mut tree = Value::Null;
        let mut problems = Vec::new();
        let vars = [
            (
                "APG_BIOMETRIC_SECURITY_MAX_FAILED_ATTEMPTS".to_string(),
                "5".to_string(),
            ),
            ("APG_BIOMETRIC_FACE_ENABLED".to_string(), "true".to_string()),
            (
                "APG_BIOMETRIC_SECURITY_MAX_FAILED".to_string(),
                "5".to_string(),
            ),
            ("APG_BIOMETRIC_ENV".to_string(), "testing".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let applied = apply_overrides(&mut tree, &schema, vars, &mut problems);
        assert_eq!(applied.len(), 2);
        assert_eq!(tree["security"]["max_failed_attempts"], Value::from(5));
        assert_eq!(
            tree["biometric_engines"]["face"]["enabled"],
            Value::Bool(true)
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "$APG_BIOMETRIC_SECURITY_MAX_FAILED");
    }
}
