//! The MQTT topic scheme.
//!
//! ```text
//! apg/v1/<site>/<agent>/event/<type>        agent -> hub, QoS 1, one topic per event type
//! apg/v1/<site>/<agent>/status              agent, retained, `online` / last will `offline`
//! apg/v1/<site>/<agent>/cmd/<action>        hub -> one agent, QoS 1
//! apg/v1/<site>/<agent>/receipt             hub -> one agent, QoS 1, committed event ids
//! apg/v1/<site>/templates/<subject>/<template>   hub -> agents of the site, retained sealed template
//! apg/v1/<site>/templates/<subject>/deletion     hub -> agents of the site, retained sealed deletion
//! ```
//!
//! Site and agent names are single topic levels: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
//! `templates` is therefore not a valid agent name.

use std::fmt;

use uuid::Uuid;

use crate::event::EventType;

/// First two levels of every topic of this wire version.
pub const PREFIX: &str = "apg/v1";

/// Topic level under a site that holds template distribution (never an agent name).
const TEMPLATES: &str = "templates";

/// Last level of the topic that carries a subject's deletion.
const DELETION: &str = "deletion";

/// A topic that is not part of the scheme, or a name that cannot be a topic level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A site or agent name that cannot be used as a topic level.
    #[error("{what} name {name:?} is not allowed: use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'{extra}")]
    InvalidName {
        /// `site` or `agent`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Extra explanation, if any.
        extra: &'static str,
    },
    /// A topic outside the `apg/v1/...` scheme.
    #[error("topic {0:?} is not part of the apg/v1 topic scheme")]
    Unknown(String),
    /// An event topic whose type is not one of the known event types.
    #[error("topic {topic:?} names event type {event_type:?}, which this build does not know")]
    UnknownEventType {
        /// The full topic.
        topic: String,
        /// The unknown last level.
        event_type: String,
    },
}

/// Checks that `name` can be one topic level of a site or agent name.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), TopicError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let reserved = what == "agent" && name == TEMPLATES;
    if name.is_empty() || name.len() > 64 || !ok_chars || reserved {
        return Err(TopicError::InvalidName {
            what,
            name: name.to_owned(),
            extra: if reserved {
                " ('templates' is reserved for template distribution)"
            } else {
                ""
            },
        });
    }
    Ok(())
}

/// The topics of one agent of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTopics {
    site: String,
    agent: String,
}

impl AgentTopics {
    /// Topics for `agent` at `site`; both must be valid topic levels.
    pub fn new(site: &str, agent: &str) -> Result<Self, TopicError> {
        validate_name("site", site)?;
        validate_name("agent", agent)?;
        Ok(Self {
            site: site.to_owned(),
            agent: agent.to_owned(),
        })
    }

    /// The site name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The agent name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// `apg/v1/<site>/<agent>/event/<type>`.
    pub fn event(&self, event_type: EventType) -> String {
        format!(
            "{PREFIX}/{}/{}/event/{}",
            self.site,
            self.agent,
            event_type.as_str()
        )
    }

    /// `apg/v1/<site>/<agent>/status` (retained).
    pub fn status(&self) -> String {
        format!("{PREFIX}/{}/{}/status", self.site, self.agent)
    }

    /// `apg/v1/<site>/<agent>/cmd/#`: what the agent subscribes to for commands.
    pub fn commands_filter(&self) -> String {
        format!("{PREFIX}/{}/{}/cmd/#", self.site, self.agent)
    }

    /// `apg/v1/<site>/<agent>/cmd/<action>`: where the hub sends one command.
    pub fn command(&self, action: &str) -> String {
        format!("{PREFIX}/{}/{}/cmd/{action}", self.site, self.agent)
    }

    /// `apg/v1/<site>/templates/#`: what the agent subscribes to for distribution.
    pub fn templates_filter(&self) -> String {
        templates_filter(&self.site)
    }

    /// Where the hub confirms this agent's committed events.
    pub fn receipts(&self) -> String {
        receipt(&self.site, &self.agent)
    }
}

/// The receipt topic of one agent.
pub fn receipt(site: &str, agent: &str) -> String {
    format!("{PREFIX}/{site}/{agent}/receipt")
}

/// `apg/v1/<site>/templates/#`.
pub fn templates_filter(site: &str) -> String {
    format!("{PREFIX}/{site}/{TEMPLATES}/#")
}

/// `apg/v1/<site>/templates/<subject>/<template>`: one sealed template, retained.
pub fn template(site: &str, subject_id: Uuid, template_id: Uuid) -> String {
    format!("{PREFIX}/{site}/{TEMPLATES}/{subject_id}/{template_id}")
}

/// `apg/v1/<site>/templates/<subject>/deletion`: the deletion of a subject, retained.
pub fn deletion(site: &str, subject_id: Uuid) -> String {
    format!("{PREFIX}/{site}/{TEMPLATES}/{subject_id}/{DELETION}")
}

/// The hub's subscription: every event of every agent of every site, shared by `group`.
/// An empty group means one hub alone, with a plain subscription.
pub fn hub_events_filter(group: &str) -> String {
    if group.is_empty() {
        format!("{PREFIX}/+/+/event/#")
    } else {
        format!("$share/{group}/{PREFIX}/+/+/event/#")
    }
}

/// A topic of the scheme, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedTopic {
    /// An agent's event.
    Event {
        /// Site level.
        site: String,
        /// Agent level.
        agent: String,
        /// Event type level.
        event_type: EventType,
    },
    /// An agent's retained status.
    Status {
        /// Site level.
        site: String,
        /// Agent level.
        agent: String,
    },
    /// A command to an agent.
    Command {
        /// Site level.
        site: String,
        /// Agent level.
        agent: String,
        /// Action level.
        action: String,
    },
    /// A distributed template.
    Template {
        /// Site level.
        site: String,
        /// Subject the template belongs to.
        subject_id: Uuid,
        /// The template.
        template_id: Uuid,
    },
    /// A distributed deletion of a subject.
    Deletion {
        /// Site level.
        site: String,
        /// The deleted subject.
        subject_id: Uuid,
    },
    /// Committed event ids, from the hub to one agent.
    Receipt {
        /// Site level.
        site: String,
        /// Agent level.
        agent: String,
    },
}

impl ParsedTopic {
    /// Splits a topic; anything outside the scheme is an error naming the topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let unknown = || TopicError::Unknown(topic.to_owned());
        let rest = topic
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(unknown)?;
        let levels: Vec<&str> = rest.split('/').collect();
        let name = |what, n: &str| validate_name(what, n).map(|_| n.to_owned());
        let uuid = |s: &str| Uuid::parse_str(s).map_err(|_| unknown());
        match levels.as_slice() {
            [site, TEMPLATES, subject, DELETION] => Ok(Self::Deletion {
                site: name("site", site)?,
                subject_id: uuid(subject)?,
            }),
            [site, TEMPLATES, subject, template] => Ok(Self::Template {
                site: name("site", site)?,
                subject_id: uuid(subject)?,
                template_id: uuid(template)?,
            }),
            [site, agent, "event", kind] => Ok(Self::Event {
                site: name("site", site)?,
                agent: name("agent", agent)?,
                event_type: kind.parse().map_err(|_| TopicError::UnknownEventType {
                    topic: topic.to_owned(),
                    event_type: (*kind).to_owned(),
                })?,
            }),
            [site, agent, "receipt"] => Ok(Self::Receipt {
                site: name("site", site)?,
                agent: name("agent", agent)?,
            }),
            [site, agent, "status"] => Ok(Self::Status {
                site: name("site", site)?,
                agent: name("agent", agent)?,
            }),
            [site, agent, "cmd", action] if !action.is_empty() => Ok(Self::Command {
                site: name("site", site)?,
                agent: name("agent", agent)?,
                action: (*action).to_owned(),
            }),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for AgentTopics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/{}", self.site, self.agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_topic_parses_back_into_its_parts() {
        let t = AgentTopics::new("plant-7", "door.12").unwrap();
        let topic = t.event(EventType::Verification);
        assert_eq!(topic, "apg/v1/plant-7/door.12/event/verification");
        assert_eq!(
            ParsedTopic::parse(&topic).unwrap(),
            ParsedTopic::Event {
                site: "plant-7".into(),
                agent: "door.12".into(),
                event_type: EventType::Verification
            }
        );
    }

    #[test]
    fn template_and_deletion_topics_parse_back() {
        let (s, tid) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            ParsedTopic::parse(&template("hq", s, tid)).unwrap(),
            ParsedTopic::Template {
                site: "hq".into(),
                subject_id: s,
                template_id: tid
            }
        );
        assert_eq!(
            ParsedTopic::parse(&deletion("hq", s)).unwrap(),
            ParsedTopic::Deletion {
                site: "hq".into(),
                subject_id: s
            }
        );
    }

    #[test]
    fn an_unknown_event_type_is_named_in_the_error() {
        let err = ParsedTopic::parse("apg/v1/hq/a1/event/teleport").unwrap_err();
        assert!(err.to_string().contains("teleport"), "{err}");
    }

    #[test]
    fn wildcards_and_slashes_are_not_names() {
        for bad in ["", "a/b", "+", "#", "$SYS", "x".repeat(65).as_str()] {
            assert!(validate_name("site", bad).is_err(), "{bad:?}");
        }
        assert!(AgentTopics::new("hq", "templates").is_err());
    }

    #[test]
    fn topics_outside_the_scheme_are_refused() {
        for bad in [
            "apg/v2/hq/a/event/audit",
            "apg/v1/hq/a/other",
            "apg/v1/hq/templates/x/y",
        ] {
            assert!(ParsedTopic::parse(bad).is_err(), "{bad}");
        }
    }
}
