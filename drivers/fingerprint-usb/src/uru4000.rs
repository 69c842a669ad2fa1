//! DigitalPersona U.are.U 4500 (05ba:000a). See PROTOCOL.md in this crate.

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind, FingerprintImage, RetryReason};

use crate::driver::ReaderDriver;
use crate::transport::{Setup, UsbError, UsbTransport};

const REG_HWSTAT: u16 = 0x07;
const REG_SCRAMBLE_INDEX: u16 = 0x33;
const REG_SCRAMBLE_KEY: u16 = 0x34;
const REG_MODE: u16 = 0x4e;
const REG_DEVICE_INFO: u16 = 0xf0;
const MODE_AWAIT_FINGER_ON: u8 = 0x10;
const MODE_AWAIT_FINGER_OFF: u8 = 0x12;
const MODE_CAPTURE: u8 = 0x20;
const MODE_OFF: u8 = 0x70;
const EP_INTR: u8 = 0x81;
const EP_DATA: u8 = 0x82;
const IRQ_SCANPWR_ON: u16 = 0x56aa;
const IRQ_FINGER_ON: u16 = 0x0101;
const IRQ_FINGER_OFF: u16 = 0x0200;
/// Image width in pixels.
pub const WIDTH: usize = 384;
/// Image height in pixels.
pub const HEIGHT: usize = 290;
const HEADER: usize = 64;
const CTRL_TIMEOUT: Duration = Duration::from_millis(5000);
const POLL: Duration = Duration::from_millis(200);

/// One claimed U.are.U 4500.
pub struct Uru4000<T: UsbTransport> {
    id: String,
    usb: T,
    seed: Box<dyn FnMut() -> u32 + Send>,
    powered: bool,
}

impl<T: UsbTransport> Uru4000<T> {
    /// Wraps a claimed transport; `id` names the device in errors.
    pub fn new(id: impl Into<String>, usb: T) -> Self {
        let seed = Box::new(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        });
        Self {
            id: id.into(),
            usb,
            seed,
            powered: false,
        }
    }

    /// Replaces the source of the image-decryption challenge seeds (replay tests reuse the
    /// recorded seed so that the transfers match).
    pub fn with_seed_source(mut self, f: impl FnMut() -> u32 + Send + 'static) -> Self {
        self.seed = Box::new(f);
        self
    }

    /// The transport, for inspection after a capture.
    pub fn transport(&self) -> &T {
        &self.usb
    }

    fn err(&self, during: &str) -> impl Fn(UsbError) -> CaptureError + '_ {
        let id = self.id.clone();
        let during = during.to_string();
        move |e| e.into_capture(&id, &during)
    }

    fn read_reg(&mut self, reg: u16, len: usize, during: &str) -> Result<Vec<u8>, CaptureError> {
        let s = Setup {
            request_type: 0xc0,
            request: 0x04,
            value: reg,
            index: 0,
        };
        let r = self
            .usb
            .control_in(s, len, CTRL_TIMEOUT)
            .map_err(self.err(during))?;
        if r.len() != len {
            return Err(CaptureError::fault(
                &self.id,
                FaultKind::Protocol,
                format!(
                    "{during}: register {reg:#04x} returned {} of {len} bytes",
                    r.len()
                ),
            ));
        }
        Ok(r)
    }

    fn write_reg(&mut self, reg: u16, data: &[u8], during: &str) -> Result<(), CaptureError> {
        let s = Setup {
            request_type: 0x40,
            request: 0x04,
            value: reg,
            index: 0,
        };
        self.usb
            .control_out(s, data, CTRL_TIMEOUT)
            .map_err(self.err(during))
    }

    fn irq(&mut self, during: &str) -> Result<Option<u16>, CaptureError> {
        match self.usb.interrupt_in(EP_INTR, 64, POLL) {
            Ok(d) if d.len() >= 2 => Ok(Some(u16::from_be_bytes([d[0], d[1]]))),
            Ok(_) => Err(CaptureError::fault(
                &self.id,
                FaultKind::Protocol,
                format!("{during}: short interrupt packet"),
            )),
            Err(UsbError::Timeout(_)) => Ok(None),
            Err(e) => Err(e.into_capture(&self.id, during)),
        }
    }

    fn wait_irq(
        &mut self,
        want: u16,
        deadline: Instant,
        cancel: &CancelToken,
        during: &str,
    ) -> Result<(), CaptureError> {
        loop {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            if Instant::now() > deadline {
                return Err(CaptureError::Timeout {
                    device: self.id.clone(),
                    waited: Duration::ZERO,
                });
            }
            if self.irq(during)? == Some(want) {
                return Ok(());
            }
        }
    }

    /// Powers the sensor up: toggles the power bit of the hardware status register and waits
    /// for the scan-power-on interrupt.
    fn power_up(&mut self, deadline: Instant, cancel: &CancelToken) -> Result<(), CaptureError> {
        let st = self.read_reg(REG_HWSTAT, 1, "reading hardware status")?[0];
        self.write_reg(REG_HWSTAT, &[st | 0x80], "powering up")?;
        self.write_reg(REG_HWSTAT, &[st & 0x7f], "powering up")?;
        self.wait_irq(IRQ_SCANPWR_ON, deadline, cancel, "waiting for scan power")?;
        self.powered = true;
        Ok(())
    }

    /// Runs one full capture: power up, finger on, image, decryption key, finger off, power down.
    pub fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        let deadline = Instant::now() + timeout;
        let result = self.capture_inner(cancel, deadline);
        if result.is_err() && self.powered {
            let _ = self.write_reg(REG_MODE, &[MODE_OFF], "powering down after an error");
            self.powered = false;
        }
        result
    }

    fn capture_inner(
        &mut self,
        cancel: &CancelToken,
        deadline: Instant,
    ) -> Result<FingerprintImage, CaptureError> {
        self.power_up(deadline, cancel)?;
        let st = self.read_reg(REG_HWSTAT, 1, "reading hardware status")?[0];
        if st & 0x80 != 0 {
            return Err(CaptureError::fault(
                &self.id,
                FaultKind::Protocol,
                "sensor still powered down after the power-up sequence",
            ));
        }
        let _info = self.read_reg(REG_DEVICE_INFO, 16, "reading device info")?;
        self.write_reg(REG_MODE, &[MODE_AWAIT_FINGER_ON], "arming finger detection")?;
        self.wait_irq(IRQ_FINGER_ON, deadline, cancel, "waiting for a finger")?;
        self.write_reg(REG_MODE, &[MODE_CAPTURE], "starting capture")?;
        let raw = self
            .usb
            .bulk_in(EP_DATA, HEADER + WIDTH * HEIGHT, CTRL_TIMEOUT)
            .map_err(self.err("reading the image"))?;
        if raw.len() < HEADER {
            return Err(CaptureError::fault(
                &self.id,
                FaultKind::InvalidData,
                "image transfer shorter than its header",
            ));
        }
        let key_number = raw[6];
        let seed = self.usb.replay_nonce().unwrap_or_else(&mut self.seed);
        let mut challenge = vec![key_number];
        challenge.extend_from_slice(&seed.to_le_bytes());
        self.write_reg(
            REG_SCRAMBLE_INDEX,
            &challenge,
            "sending the decryption challenge",
        )?;
        let resp = self.read_reg(REG_SCRAMBLE_KEY, 4, "reading the decryption key")?;
        let key = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]) ^ seed;
        let pixels = decode_image(&raw, key)
            .map_err(|d| CaptureError::fault(&self.id, FaultKind::InvalidData, d))?;
        self.write_reg(
            REG_MODE,
            &[MODE_AWAIT_FINGER_OFF],
            "arming finger-off detection",
        )?;
        self.wait_irq(
            IRQ_FINGER_OFF,
            deadline + Duration::from_secs(10),
            cancel,
            "waiting for the finger to lift",
        )?;
        self.write_reg(REG_MODE, &[MODE_OFF], "powering down")?;
        self.powered = false;
        FingerprintImage::new(WIDTH as u32, HEIGHT as u32, 500, pixels).ok_or_else(|| {
            CaptureError::Retry {
                device: self.id.clone(),
                reason: RetryReason::TooShort,
            }
        })
    }

    /// Releases the interface.
    pub fn release(&mut self) -> Result<(), CaptureError> {
        self.usb
            .release()
            .map_err(self.err("releasing the interface"))
    }
}

/// [`crate::driver::StartDriver`] for the driver table.
pub fn start(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver> {
    Box::new(Uru4000::new(id, usb))
}

impl<T: UsbTransport> ReaderDriver for Uru4000<T> {
    fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError> {
        Uru4000::capture_image(self, cancel, timeout)
    }

    fn release(&mut self) -> Result<(), CaptureError> {
        Uru4000::release(self)
    }
}

/// One step of the 32-bit linear feedback shift register the device scrambles with.
fn lfsr(key: u32) -> u32 {
    let mut bit = key & 0x9248_144d;
    bit ^= bit << 16;
    bit ^= bit << 8;
    bit ^= bit << 4;
    bit ^= bit << 2;
    bit ^= bit << 1;
    (bit & 0x8000_0000) | (key >> 1)
}

fn xor_byte(key: u32) -> u8 {
    const TAPS: [u32; 8] = [4, 8, 11, 14, 18, 21, 24, 29];
    TAPS.iter()
        .enumerate()
        .fold(0u8, |acc, (i, t)| acc | ((((key >> t) & 1) as u8) << i))
}

/// Descrambles a block in place; the block is shifted by one byte and its last byte is zero.
fn descramble(data: &mut [u8], mut key: u32) -> u32 {
    let n = data.len();
    for i in 0..n.saturating_sub(1) {
        let x = xor_byte(key);
        key = lfsr(key);
        data[i] = data[i + 1] ^ x;
    }
    if n > 0 {
        data[n - 1] = 0;
    }
    lfsr(key)
}

/// Turns the raw bulk transfer into `WIDTH * HEIGHT` gray pixels: descrambles the encrypted
/// blocks, fills lines the sensor marked "not present" from the next transmitted line, then
/// rotates by 180 degrees and inverts so that ridges are dark.
pub fn decode_image(raw: &[u8], mut key: u32) -> Result<Vec<u8>, String> {
    let mut rows = raw[HEADER..].to_vec();
    rows.truncate(WIDTH * HEIGHT);
    let lines_sent = rows.len() / WIDTH;
    // Source line of every output line, resolved after all blocks are descrambled.
    let mut order: Vec<usize> = Vec::with_capacity(HEIGHT);
    let mut r = 0usize;
    for b in 0..15 {
        let flags = raw[16 + 2 * b];
        let lines = raw[17 + 2 * b] as usize;
        if lines == 0 {
            break;
        }
        let present = flags & 0x01 == 0;
        let end = if present { r + lines } else { r + 1 };
        if end > lines_sent {
            return Err(format!(
                "image block {b} needs line {end} but only {lines_sent} lines arrived; retry the capture"
            ));
        }
        let len = lines * WIDTH;
        match flags & 0x06 {
            0x02 if present => key = descramble(&mut rows[r * WIDTH..r * WIDTH + len], key),
            0x02 | 0x00 => {
                for _ in 0..len {
                    key = lfsr(key);
                }
            }
            _ => {}
        }
        if present {
            order.extend(r..r + lines);
            r += lines;
        } else {
            order.extend(std::iter::repeat_n(r, lines));
        }
    }
    if order.len() != HEIGHT {
        return Err(format!(
            "image has {} lines, expected {HEIGHT}; retry the capture",
            order.len()
        ));
    }
    let mut out = Vec::with_capacity(WIDTH * HEIGHT);
    for &src in order.iter().rev() {
        out.extend(
            rows[src * WIDTH..(src + 1) * WIDTH]
                .iter()
                .rev()
                .map(|&v| 255 - v),
        );
    }
    Ok(out)
}

/// The host nonce of the decryption challenge in a recorded session, if it holds one.
pub fn recorded_nonce(transfers: &[crate::recording::Transfer]) -> Option<u32> {
    let t = transfers.iter().find(|t| {
        t.setup.is_some_and(|s| {
            s[0] == 0x40 && s[1] == 0x04 && u16::from_le_bytes([s[2], s[3]]) == REG_SCRAMBLE_INDEX
        })
    })?;
    Some(u32::from_le_bytes(t.out_data.get(1..5)?.try_into().ok()?))
}
