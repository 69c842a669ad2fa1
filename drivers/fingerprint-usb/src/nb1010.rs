//! NEXT Biometrics NB-1010-U (298d:1010). See PROTOCOL.md in this crate.
//!
//! A press sensor without interrupts: the host polls a finger-check command on bulk OUT 0x02 and
//! reads a 16-byte reply on bulk IN 0x83; once the reported level crosses a threshold it sends
//! two set-up commands and reads the 256 × 180 image as 90 chunks of two lines.

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind, FingerprintImage, RetryReason};

use crate::driver::ReaderDriver;
use crate::transport::{UsbError, UsbTransport};

const EP_OUT: u8 = 0x02;
const EP_IN: u8 = 0x83;
/// Image width in pixels.
pub const WIDTH: usize = 256;
/// Image height in pixels.
pub const HEIGHT: usize = 180;
/// Sensor resolution (vendor figure for NEXT's Active Thermal sensors).
pub const DPI: u16 = 385;
const REPLY_LEN: usize = 16;
const CHUNK_LEN: usize = 540;
const CHUNK_HEADER: usize = 25;
const LINES_PER_CHUNK: usize = 2;
const CHUNKS: usize = HEIGHT / LINES_PER_CHUNK;
/// Reply byte holding the finger level, and the level above which a finger is on the sensor.
const LEVEL_BYTE: usize = 12;
const FINGER_THRESHOLD: u8 = 0x30;
const TIMEOUT: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const OP_FINGER_CHECK: u8 = 0x38;
const OP_PRECAPTURE: u8 = 0x0d;
const OP_CAPTURE: u8 = 0x12;
const REPLY_FINGER: u8 = 0x37;
const REPLY_ACK: u8 = 0x20;
const REPLY_CHUNK: u8 = 0x21;

/// Builds a command frame: 0x80, opcode, sequence byte, 0, total length (u32 LE), parameters.
fn frame(op: u8, seq: u8, params: &[u8]) -> Vec<u8> {
    let len = (8 + params.len()) as u32;
    let mut f = vec![0x80, op, seq, 0];
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(params);
    f
}

/// The finger-check command (no parameters).
fn finger_check() -> Vec<u8> {
    frame(OP_FINGER_CHECK, 1, &[])
}

/// The command sent before every capture (one parameter word, 0x400).
fn precapture() -> Vec<u8> {
    frame(OP_PRECAPTURE, 3, &0x400u32.to_le_bytes())
}

/// The capture command: parameter words 2, 0, 0, 0, 0, 0x20.
fn capture() -> Vec<u8> {
    let mut p = Vec::with_capacity(24);
    for w in [2u32, 0, 0, 0, 0, 0x20] {
        p.extend_from_slice(&w.to_le_bytes());
    }
    frame(OP_CAPTURE, 4, &p)
}

/// One claimed NB-1010-U.
pub struct Nb1010<T: UsbTransport> {
    id: String,
    usb: T,
    /// A finger was on the sensor when the last image was taken: the next capture first waits
    /// for a reading below the threshold so that it does not return the same touch again.
    lift_pending: bool,
    poll_interval: Duration,
}

impl<T: UsbTransport> Nb1010<T> {
    /// Wraps a claimed transport; `id` names the device in errors.
    pub fn new(id: impl Into<String>, usb: T) -> Self {
        Self {
            id: id.into(),
            usb,
            lift_pending: false,
            poll_interval: POLL_INTERVAL,
        }
    }

    /// Changes the pause between two finger checks (replay tests use zero).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The transport, for inspection after a capture.
    pub fn transport(&self) -> &T {
        &self.usb
    }

    fn usb_err(&self, during: &str) -> impl Fn(UsbError) -> CaptureError + '_ {
        let id = self.id.clone();
        let during = during.to_string();
        move |e| e.into_capture(&id, &during)
    }

    fn fault(&self, kind: FaultKind, detail: String) -> CaptureError {
        CaptureError::fault(&self.id, kind, detail)
    }

    /// Sends `cmd` and reads its 16-byte reply, which must carry opcode `reply` and echo the
    /// command's sequence byte.
    fn exchange(&mut self, cmd: &[u8], reply: u8, during: &str) -> Result<Vec<u8>, CaptureError> {
        self.usb
            .bulk_out(EP_OUT, cmd, TIMEOUT)
            .map_err(self.usb_err(during))?;
        let r = self
            .usb
            .bulk_in(EP_IN, REPLY_LEN, TIMEOUT)
            .map_err(self.usb_err(during))?;
        if r.len() != REPLY_LEN {
            return Err(self.fault(
                FaultKind::InvalidData,
                format!("{during}: reply of {} bytes, expected {REPLY_LEN}", r.len()),
            ));
        }
        if r[0] != 0x80 || r[1] != reply || r[2] != cmd[2] {
            return Err(self.fault(
                FaultKind::Protocol,
                format!(
                    "{during}: unexpected reply {:02x} {:02x} seq {:02x} (expected 80 {reply:02x} seq {:02x})",
                    r[0], r[1], r[2], cmd[2]
                ),
            ));
        }
        Ok(r)
    }

    /// Polls the finger level until a finger is on the sensor (after it has first been lifted,
    /// if the previous capture ended with a finger on it).
    fn wait_finger(&mut self, cancel: &CancelToken, deadline: Instant) -> Result<(), CaptureError> {
        let started = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            if Instant::now() > deadline {
                return Err(CaptureError::Timeout {
                    device: self.id.clone(),
                    waited: started.elapsed(),
                });
            }
            let during = if self.lift_pending {
                "waiting for the finger to lift"
            } else {
                "waiting for a finger"
            };
            let level = self.exchange(&finger_check(), REPLY_FINGER, during)?[LEVEL_BYTE];
            let present = level > FINGER_THRESHOLD;
            if self.lift_pending {
                self.lift_pending = present;
            } else if present {
                return Ok(());
            }
            let pause = self
                .poll_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            std::thread::sleep(pause);
        }
    }

    fn read_image(&mut self) -> Result<Vec<u8>, CaptureError> {
        let mut pixels = Vec::with_capacity(WIDTH * HEIGHT);
        for i in 0..CHUNKS {
            let during = format!("reading image chunk {} of {CHUNKS}", i + 1);
            let c = self
                .usb
                .bulk_in(EP_IN, CHUNK_LEN, TIMEOUT)
                .map_err(self.usb_err(&during))?;
            pixels.extend_from_slice(decode_chunk(&c, i).map_err(|(kind, d)| {
                self.fault(kind, format!("{during}: {d}; retry the capture"))
            })?);
        }
        Ok(pixels)
    }

    /// Runs one full capture: wait for a finger, start the capture, read the image.
    pub fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        let deadline = Instant::now() + timeout;
        self.wait_finger(cancel, deadline)?;
        self.exchange(&precapture(), REPLY_ACK, "preparing the capture")?;
        self.exchange(&capture(), REPLY_ACK, "starting the capture")?;
        let pixels = self.read_image()?;
        self.lift_pending = true;
        FingerprintImage::new(WIDTH as u32, HEIGHT as u32, DPI, pixels).ok_or_else(|| {
            CaptureError::Retry {
                device: self.id.clone(),
                reason: RetryReason::TooShort,
            }
        })
    }

    /// Releases the interface (the sensor has no known power-down command).
    pub fn release(&mut self) -> Result<(), CaptureError> {
        self.usb
            .release()
            .map_err(self.usb_err("releasing the interface"))
    }
}

/// Checks one 540-byte image chunk (number `index`, from 0) and returns its two lines.
///
/// Chunk layout: `80 21 00 00`, length 540 (u32 LE), a zero word, a "more chunks follow" word
/// (1, or 0 in the last chunk), the index of the chunk's last line (u32 LE, `2 * index + 1`), the
/// line width 256 (u32 LE), one byte 01, 512 pixel bytes, 3 padding bytes.
pub fn decode_chunk(c: &[u8], index: usize) -> Result<&[u8], (FaultKind, String)> {
    if c.len() != CHUNK_LEN {
        return Err((
            FaultKind::InvalidData,
            format!("{} bytes, expected {CHUNK_LEN}", c.len()),
        ));
    }
    if c[0] != 0x80 || c[1] != REPLY_CHUNK {
        return Err((
            FaultKind::Protocol,
            format!("not an image chunk (starts {:02x} {:02x})", c[0], c[1]),
        ));
    }
    let word = |o: usize| u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]) as usize;
    let last_line = index * LINES_PER_CHUNK + LINES_PER_CHUNK - 1;
    if word(16) != last_line {
        return Err((
            FaultKind::Protocol,
            format!("chunk ends at line {}, expected {last_line}", word(16)),
        ));
    }
    if word(20) != WIDTH {
        return Err((
            FaultKind::InvalidData,
            format!("line width {}, expected {WIDTH}", word(20)),
        ));
    }
    Ok(&c[CHUNK_HEADER..CHUNK_HEADER + LINES_PER_CHUNK * WIDTH])
}

/// [`crate::driver::StartDriver`] for the driver table.
pub fn start(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver> {
    Box::new(Nb1010::new(id, usb))
}

impl<T: UsbTransport> ReaderDriver for Nb1010<T> {
    fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        Nb1010::capture_image(self, cancel, timeout)
    }

    fn release(&mut self) -> Result<(), CaptureError> {
        Nb1010::release(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_frames() {
        assert_eq!(finger_check(), [0x80, 0x38, 0x01, 0, 8, 0, 0, 0]);
        assert_eq!(precapture(), [0x80, 0x0d, 0x03, 0, 12, 0, 0, 0, 0, 4, 0, 0]);
        let c = capture();
        assert_eq!(c.len(), 32);
        assert_eq!(&c[..12], [0x80, 0x12, 0x04, 0, 0x20, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&c[28..], [0x20, 0, 0, 0]);
        assert!(c[12..28].iter().all(|&b| b == 0));
    }

    fn chunk(index: usize) -> Vec<u8> {
        let mut c = vec![0u8; CHUNK_LEN];
        c[..8].copy_from_slice(&[0x80, 0x21, 0, 0, 0x1c, 0x02, 0, 0]);
        c[12] = 1;
        c[16..20].copy_from_slice(&((2 * index + 1) as u32).to_le_bytes());
        c[20..24].copy_from_slice(&256u32.to_le_bytes());
        c[24] = 1;
        for (i, p) in c[25..537].iter_mut().enumerate() {
            *p = i as u8;
        }
        c
    }

    #[test]
    fn chunks_are_checked() {
        let c = chunk(4);
        let px = decode_chunk(&c, 4).expect("valid");
        assert_eq!(px.len(), 512);
        assert_eq!((px[0], px[511]), (0, 255));
        assert_eq!(
            decode_chunk(&c, 5).expect_err("order").0,
            FaultKind::Protocol
        );
        assert_eq!(
            decode_chunk(&c[..100], 4).expect_err("short").0,
            FaultKind::InvalidData
        );
        let mut bad = c.clone();
        bad[1] = 0x20;
        assert_eq!(
            decode_chunk(&bad, 4).expect_err("op").0,
            FaultKind::Protocol
        );
        let mut wide = c;
        wide[21] = 2;
        assert_eq!(
            decode_chunk(&wide, 4).expect_err("width").0,
            FaultKind::InvalidData
        );
    }
}
