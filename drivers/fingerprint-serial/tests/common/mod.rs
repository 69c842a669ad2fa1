//! Shared set-up: an emulated module on a PTY and a driver on its slave side.
#![allow(dead_code)]

use std::time::Duration;

use apg_fp_serial::emulator::{EmulatorConfig, PtyEmulator};
use apg_fp_serial::image::{quantise, synthetic_ridges};
use apg_fp_serial::{ModuleSettings, Port, SerialLine, ZhiantecModule};

pub const TIMEOUT: Duration = Duration::from_millis(300);

pub fn settings() -> ModuleSettings {
    ModuleSettings {
        response_timeout: TIMEOUT,
        poll_interval: Duration::from_millis(5),
        removal_timeout: Duration::from_millis(500),
        ..ModuleSettings::default()
    }
}

pub fn emulator(cfg: EmulatorConfig) -> PtyEmulator {
    PtyEmulator::start(cfg, synthetic_ridges(1)).expect("PTY emulator starts")
}

pub fn open(emu: &PtyEmulator, s: ModuleSettings) -> ZhiantecModule<Box<dyn Port>> {
    let path = emu.path().to_str().expect("utf-8 pty path");
    let line = SerialLine::open("test", path, 57_600).expect("pty slave opens");
    ZhiantecModule::new(Box::new(line) as Box<dyn Port>, s)
}

/// Emulator with default config and a connected driver.
pub fn connected() -> (PtyEmulator, ZhiantecModule<Box<dyn Port>>) {
    let emu = emulator(EmulatorConfig::default());
    let mut m = open(&emu, settings());
    m.connect().expect("handshake with the emulator");
    (emu, m)
}

pub fn quantised(seed: u32) -> Vec<u8> {
    synthetic_ridges(seed)
        .iter()
        .map(|&p| quantise(p))
        .collect()
}
