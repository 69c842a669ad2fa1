//! Egis Technology (LighTuning) ES603 / EgisTec Touch Fingerprint Sensor (1c7a:0570).
//! See the egis0570 section of PROTOCOL.md in this crate.
//!
//! The sensor has no interrupt endpoint and no finger-detect event: the host writes 7-byte
//! command packets to bulk OUT 0x04 (each answered by 7 bytes on bulk IN 0x83) and then asks
//! for an image read, which returns five 114 × 57 frames on bulk IN 0x83. The driver polls
//! reads back to back, detects the finger from the frames themselves and assembles the
//! middle band of every frame seen while the finger is down into one image.

pub mod assembly;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind, FingerprintImage, RetryReason};

use crate::driver::ReaderDriver;
use crate::transport::UsbTransport;

use assembly::READ_LEN;

const EP_OUT: u8 = 0x04;
const EP_IN: u8 = 0x83;
const PACKET_LEN: usize = 7;
const HOST_MAGIC: [u8; 4] = *b"EGIS";
const DEVICE_MAGIC: [u8; 4] = *b"SIGE";
const OP_READ_REG: u8 = 0x00;
const OP_WRITE_REG: u8 = 0x01;
const OP_IMAGE: u8 = 0x06;
const CMD_TIMEOUT: Duration = Duration::from_millis(1000);
/// A read takes about 66 ms on the device; allow for a slow bus.
const READ_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long the finger may stay down after the capture timeout before the driver gives up
/// (a presentation keeps adding strips for as long as the finger rests on the sensor).
const PRESENTATION_GRACE: Duration = Duration::from_secs(10);
/// Upper bound on strips of one presentation (about 8 s of reads).
const MAX_STRIPS: usize = 600;
/// Resolution of the output image as the reference reports it (its default of 500 dpi, after
/// the 2× upscale).
pub const DPI: u16 = 500;

/// Sensor configuration written once per session: (register, value).
const INIT_REGS: [(u8, u8); 20] = [
    (0x20, 0x3f),
    (0x58, 0x3f),
    (0x21, 0x09),
    (0x57, 0x09),
    (0x22, 0x03),
    (0x56, 0x03),
    (0x23, 0x01),
    (0x55, 0x01),
    (0x24, 0x01),
    (0x54, 0x01),
    (0x16, 0x3e),
    (0x09, 0x0b),
    (0x14, 0x03),
    (0x15, 0x00),
    (0x02, 0x0f),
    (0x10, 0x00),
    (0x11, 0x38),
    (0x12, 0x00),
    (0x13, 0x71),
    (0x03, 0x80),
];
/// Register 0x02 appears to be the capture control: 0x0f arm, 0x2f start (meanings inferred
/// from the traffic, not documented).
const REG_CAPTURE: u8 = 0x02;
const CAPTURE_ARM: u8 = 0x0f;
const CAPTURE_START: u8 = 0x2f;
/// The read-register request of the configuration carries this argument; the one before
/// later reads carries the arm value. The device ignores it as far as the traffic shows.
const READ_PLACEHOLDER_FIRST: u8 = 0x80;

fn packet(op: u8, a: u8, b: u8) -> [u8; PACKET_LEN] {
    let mut p = [0; PACKET_LEN];
    p[..4].copy_from_slice(&HOST_MAGIC);
    p[4] = op;
    p[5] = a;
    p[6] = b;
    p
}

/// One claimed EgisTec 0570.
pub struct Egis0570<T: UsbTransport> {
    id: String,
    usb: T,
}

impl<T: UsbTransport> Egis0570<T> {
    /// Wraps a claimed transport; `id` names the device in errors.
    pub fn new(id: impl Into<String>, usb: T) -> Self {
        Self { id: id.into(), usb }
    }

    /// The transport, for inspection after a capture.
    pub fn transport(&self) -> &T {
        &self.usb
    }

    fn fault(&self, kind: FaultKind, detail: impl Into<String>) -> CaptureError {
        CaptureError::fault(&self.id, kind, detail)
    }

    /// Sends one command packet and checks the 7-byte answer.
    fn command(&mut self, op: u8, a: u8, b: u8, during: &str) -> Result<[u8; 3], CaptureError> {
        let id = self.id.clone();
        self.usb
            .bulk_out(EP_OUT, &packet(op, a, b), CMD_TIMEOUT)
            .map_err(|e| e.into_capture(&id, during))?;
        let r = self
            .usb
            .bulk_in(EP_IN, PACKET_LEN, CMD_TIMEOUT)
            .map_err(|e| e.into_capture(&id, during))?;
        if r.len() != PACKET_LEN || r[..4] != DEVICE_MAGIC {
            return Err(self.fault(
                FaultKind::Protocol,
                format!(
                    "{during}: answer to command {op:#04x} {a:#04x} is not a 7-byte SIGE packet ({} bytes)",
                    r.len()
                ),
            ));
        }
        Ok([r[4], r[5], r[6]])
    }

    /// Asks for an image read and returns its raw bytes (five frames).
    fn read_frames(&mut self) -> Result<Vec<u8>, CaptureError> {
        let id = self.id.clone();
        let during = "reading the image frames";
        self.usb
            .bulk_out(EP_OUT, &packet(OP_IMAGE, 0x00, 0xfe), CMD_TIMEOUT)
            .map_err(|e| e.into_capture(&id, during))?;
        let raw = self
            .usb
            .bulk_in(EP_IN, READ_LEN, READ_TIMEOUT)
            .map_err(|e| e.into_capture(&id, during))?;
        if raw.len() != READ_LEN {
            return Err(self.fault(
                FaultKind::InvalidData,
                format!(
                    "{during}: got {} of {READ_LEN} bytes; retry the capture",
                    raw.len()
                ),
            ));
        }
        Ok(raw)
    }

    /// Configures the sensor and takes the first read (used as the background).
    fn init(&mut self) -> Result<Vec<u8>, CaptureError> {
        for (reg, val) in INIT_REGS {
            self.command(OP_WRITE_REG, reg, val, "configuring the sensor")?;
        }
        self.command(
            OP_READ_REG,
            REG_CAPTURE,
            READ_PLACEHOLDER_FIRST,
            "configuring the sensor",
        )?;
        self.command(
            OP_WRITE_REG,
            REG_CAPTURE,
            CAPTURE_START,
            "configuring the sensor",
        )?;
        self.read_frames()
    }

    /// Re-arms the capture and takes the next read.
    fn next_read(&mut self) -> Result<Vec<u8>, CaptureError> {
        let during = "re-arming the capture";
        self.command(OP_WRITE_REG, REG_CAPTURE, CAPTURE_ARM, during)?;
        self.command(OP_READ_REG, REG_CAPTURE, CAPTURE_ARM, during)?;
        self.command(OP_WRITE_REG, REG_CAPTURE, CAPTURE_START, during)?;
        self.read_frames()
    }

    /// Runs one full capture: configure, take the background, poll until a finger covers the
    /// sensor, collect strips until it is lifted, assemble.
    pub fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let first = self.init()?;
        let bg = assembly::background(&first).map_err(|d| self.fault(FaultKind::InvalidData, d))?;
        let mut strips: Vec<Vec<u8>> = Vec::new();
        loop {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            let now = Instant::now();
            if strips.is_empty() && now > deadline {
                return Err(CaptureError::Timeout {
                    device: self.id.clone(),
                    waited: now - started,
                });
            }
            if now > deadline + PRESENTATION_GRACE || strips.len() > MAX_STRIPS {
                return Err(CaptureError::Retry {
                    device: self.id.clone(),
                    reason: RetryReason::RemoveFinger,
                });
            }
            let raw = self.next_read()?;
            let read = assembly::subtract_background(&raw, &bg)
                .map_err(|d| self.fault(FaultKind::InvalidData, d))?;
            if read.any_finger() {
                strips.extend(read.leading_finger_strips().cloned());
            }
            // A strip without a finger ends the presentation (the finger was lifted); before
            // any finger strip it just means "still waiting".
            if read.ends_presentation() && !strips.is_empty() {
                break;
            }
        }
        let canvas =
            assembly::assemble(&strips).map_err(|d| self.fault(FaultKind::InvalidData, d))?;
        let (w, h, px) = assembly::finish(&canvas);
        FingerprintImage::new(w as u32, h as u32, DPI, px).ok_or_else(|| CaptureError::Retry {
            device: self.id.clone(),
            reason: RetryReason::TooShort,
        })
    }

    /// Releases the interface (the sensor has no known power-down command; it idles when no
    /// reads are requested).
    pub fn release(&mut self) -> Result<(), CaptureError> {
        let id = self.id.clone();
        self.usb
            .release()
            .map_err(|e| e.into_capture(&id, "releasing the interface"))
    }
}

/// [`crate::driver::StartDriver`] for the driver table.
pub fn start(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver> {
    Box::new(Egis0570::new(id, usb))
}

impl<T: UsbTransport> ReaderDriver for Egis0570<T> {
    fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        Egis0570::capture_image(self, cancel, timeout)
    }

    fn release(&mut self) -> Result<(), CaptureError> {
        Egis0570::release(self)
    }
}
