//! Reading, overriding and checking the configuration file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::schema::{check_shape, join};
use super::{env, validate, Config, Profile};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`security.max_failed_attempts`) or `$VARIABLE` for the environment.
    pub path: String,
    /// The offending value as written.
    pub value: String,
    /// What would be accepted.
    pub allowed: String,
}

impl Problem {
    /// Builds a problem report.
    pub fn new(path: &str, value: impl Into<String>, allowed: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            value: value.into(),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is not allowed; expected {}",
            self.path, self.value, self.allowed
        )
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}; check the path and that the service account may read it")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// The file parsed but some values are not allowed.
    #[error("config file {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        /// File.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem, for `check-config` to print one per line.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Invalid { problems, .. } => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads `path` with the overrides found in `vars` (normally `std::env::vars()`).
pub fn load(
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, vars)
}

/// Like [`load`], from text already read; `path` only names the source in errors.
pub fn load_str(
    text: &str,
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let mut tree: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if tree.is_null() {
        tree = Value::Mapping(Default::default());
    }
    let schema = serde_yaml_ng::to_value(Config::default()).expect("the default config serialises");

    let mut problems = Vec::new();
    let profile_var = vars
        .iter()
        .find(|(k, _)| k == "APG_BIOMETRIC_ENV")
        .map(|(_, v)| v.as_str());
    let profile = Profile::from_env_value(profile_var).unwrap_or_else(|message| {
        problems.push(Problem::new(
            "$APG_BIOMETRIC_ENV",
            profile_var.unwrap_or_default(),
            message,
        ));
        Profile::Production
    });
    if !tree.is_mapping() {
        problems.push(Problem::new(
            "(top level)",
            super::schema::show(&tree),
            "a section",
        ));
        return Err(invalid(problems));
    }
    env::apply_overrides(&mut tree, &schema, vars, &mut problems);
    check_shape(&tree, &schema, "", &mut problems);
    // To report every problem at once, a key found wrong takes its default and the checks go on.
    for problem in &problems {
        remove_path(&mut tree, &problem.path);
    }
    let mut config = None;
    for _ in 0..MAX_TYPE_PASSES {
        // Every key absent from the file takes its documented default, per modality.
        let mut found = Vec::new();
        config = deserialize_sections(&merged(&schema, &tree), &mut found);
        if found.is_empty() {
            break;
        }
        for problem in &found {
            remove_path(&mut tree, &problem.path);
        }
        problems.extend(found);
    }
    let Some(mut config) = config else {
        return Err(invalid(problems));
    };
    config.profile = Some(profile);
    validate::check(&config, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

/// Rounds of "drop the keys serde refused and deserialise again"; each round removes at least one.
const MAX_TYPE_PASSES: usize = 16;

/// Removes the key at a dotted `path` (a refused value falls back to its default).
fn remove_path(tree: &mut Value, path: &str) {
    let mut node = tree;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Value::Mapping(map) = node else { return };
        if keys.peek().is_none() {
            map.remove(key);
            return;
        }
        match map.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
}

/// `user` laid over `defaults`: sections merge key by key, everything else replaces.
fn merged(defaults: &Value, user: &Value) -> Value {
    match (defaults, user) {
        (Value::Mapping(d), Value::Mapping(u)) => {
            let mut out = d.clone();
            for (k, v) in u {
                let base = d.get(k).cloned().unwrap_or(Value::Null);
                out.insert(k.clone(), merged(&base, v));
            }
            Value::Mapping(out)
        }
        // An empty section (`security:` with nothing under it) keeps its defaults.
        (Value::Mapping(_), Value::Null) => defaults.clone(),
        (_, u) => u.clone(),
    }
}

/// Deserialises section by section so that one bad section does not hide the others.
fn deserialize_sections(tree: &Value, problems: &mut Vec<Problem>) -> Option<Config> {
    let Value::Mapping(sections) = tree else {
        return None;
    };
    for (key, value) in sections {
        let mut single = serde_yaml_ng::Mapping::new();
        single.insert(key.clone(), value.clone());
        if let Err(e) = from_value(Value::Mapping(single)) {
            problems.push(e);
        }
    }
    if !problems.is_empty() {
        return None;
    }
    match from_value(tree.clone()) {
        Ok(config) => Some(config),
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

fn from_value(tree: Value) -> Result<Config, Problem> {
    serde_path_to_error::deserialize::<_, Config>(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        Problem::new(&join("", &path), "(as written)", e.inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_str(text, Path::new("/etc/apg-biometric/agent.yaml"), vars)
    }

    const DEV: (&str, &str) = ("APG_BIOMETRIC_ENV", "development");

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = load_text("", &[DEV]).unwrap();
        assert_eq!(
            c.biometric_engines.fingerprint.common.quality_threshold,
            0.8
        );
        assert_eq!(c.biometric_engines.face.common.quality_threshold, 0.85);
        assert_eq!(c.biometric_engines.iris.common.processing_timeout, 4.0);
        assert_eq!(c.biometric_engines.palm.hand_detection_confidence, 0.9);
        assert_eq!(c.biometric_engines.gait.analysis_window, 15.0);
        assert_eq!(c.security.max_failed_attempts, 3);
        assert_eq!(c.security.lockout_duration, 900);
        assert_eq!(c.security.key_rotation_days, 90);
        assert_eq!(c.monitoring.metrics_port, 9090);
        assert_eq!(c.profile(), Profile::Development);
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let c = load_text(
            "security: {max_failed_attempts: 4}",
            &[DEV, ("APG_BIOMETRIC_SECURITY_MAX_FAILED_ATTEMPTS", "7")],
        )
        .unwrap();
        assert_eq!(c.security.max_failed_attempts, 7);
    }

    #[test]
    fn every_problem_is_reported_with_path_value_and_what_is_allowed() {
        let err = load_text(
            "security: {max_failed_attempts: -1, bogus: 1}\nlogging: {format: xml}\n\
             biometric_engines: {fingerprint: {quality_threshold: 1.5}}",
            &[DEV],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("security.bogus"), "{text}");
        assert!(text.contains("/etc/apg-biometric/agent.yaml"), "{text}");
        // Shape problems are reported before value problems, but all of one kind at once.
        let err = load_text(
            "security: {max_failed_attempts: 0}\nlogging: {format: xml}\n\
             biometric_engines: {fingerprint: {quality_threshold: 1.5}}",
            &[DEV],
        )
        .unwrap_err();
        let problems = err.problems();
        assert!(
            problems.iter().any(|p| p.starts_with("logging.format")),
            "{problems:?}"
        );
        let err = load_text(
            "security: {max_failed_attempts: 0}\n\
             biometric_engines: {fingerprint: {quality_threshold: 1.5}}",
            &[DEV],
        )
        .unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("quality_threshold: 1.5")
                || problems[1].contains("quality_threshold: 1.5")
        );
    }

    #[test]
    fn malformed_yaml_names_the_file_and_line() {
        let err = load_text("security: [unclosed", &[DEV]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn an_unknown_profile_is_a_problem() {
        let err = load_text("", &[("APG_BIOMETRIC_ENV", "staging")]).unwrap_err();
        assert!(err.to_string().contains("APG_BIOMETRIC_ENV"), "{err}");
    }
}
