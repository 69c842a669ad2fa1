//! apg-biometric: the edge agent.
//!
//! The agent wires capture drivers (`drivers/`) to biometric engines (`engines/`), owns every
//! decision and every write, keeps encrypted templates in SQLite, and reports to the hub over
//! MQTT. See DESIGN.md for the map and README.md for running it.

pub mod access;
pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod decision;
pub mod devices;
pub mod distribution;
pub mod doctor;
pub mod engines;
pub mod events;
pub mod hardware;
pub mod health;
pub mod heartbeat;
pub mod link;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod modality;
pub mod store;
pub mod vault;
pub mod workers;
