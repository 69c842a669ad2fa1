//! Test harness for the sync path: real Mosquitto with mutual TLS on a free port, certificates
//! generated for the run, fresh PostgreSQL databases, the hub binary.
//!
//! Everything here starts real components; nothing is mocked. Needs the `mosquitto` binary
//! (Debian package `mosquitto`) and PostgreSQL at 127.0.0.1:5432 with trust auth for user
//! `postgres`.

pub mod broker;
pub mod database;
pub mod hub;
pub mod pki;

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within` naming `what`.
pub fn wait_until<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
