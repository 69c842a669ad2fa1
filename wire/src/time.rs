//! RFC 3339 timestamps in UTC, written with microseconds and a `Z` suffix.
//!
//! A timestamp with another offset is refused rather than converted: every writer in the system
//! is ours and writes UTC, so an offset means a bug upstream that should be seen.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de::Error, Deserialize, Deserializer, Serializer};

/// Formats a UTC time the way every message carries it.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time that must end in `Z`.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    if !text.ends_with('Z') {
        return Err(format!(
            "time {text:?} is not in UTC (it must end with 'Z')"
        ));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("time {text:?} is not RFC 3339: {e}"))
}

/// Serde `with` module for `DateTime<Utc>`.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// Serde `with` module for `DateTime<Utc>`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

/// The current time truncated to what the wire carries (microseconds), so that a value that
/// went through JSON compares equal to the original.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    parse(&format(&t)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_with_an_offset_is_refused() {
        assert!(parse("2026-11-28T05:00:00+01:00").is_err());
    }

    #[test]
    fn a_formatted_time_parses_back_to_the_same_instant() {
        let t = now();
        assert_eq!(parse(&format(&t)).unwrap(), t);
        assert!(format(&t).ends_with('Z'));
    }
}
