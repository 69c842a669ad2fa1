//! The emulator binary prints a port path that the driver can use.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use apg_device::CancelToken;
use apg_fp_serial::{ModuleSettings, Port, SerialLine, ZhiantecModule};

#[test]
fn binary_prints_a_working_port_path() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apg-fp-serial-emulator"))
        .args(["--password", "0x2A", "--packet-size", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("path line");
    let path = line.trim().to_string();
    let result = std::panic::catch_unwind(|| {
        assert!(path.starts_with("/dev/pts/"), "{path:?}");
        let port = SerialLine::open("bin", &path, 57_600).expect("open");
        let mut m = ZhiantecModule::new(
            Box::new(port) as Box<dyn Port>,
            ModuleSettings {
                password: 42,
                response_timeout: Duration::from_millis(500),
                poll_interval: Duration::from_millis(5),
                ..ModuleSettings::default()
            },
        );
        let p = m.connect().expect("handshake");
        assert_eq!(p.packet_size, 64);
        let img = m
            .capture_image(&CancelToken::new(), Duration::from_secs(5))
            .expect("capture");
        assert_eq!(img.pixels.len(), 256 * 288);
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn binary_refuses_a_bad_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_apg-fp-serial-emulator"))
        .args(["--packet-size", "100"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("packet size 100"));
}
