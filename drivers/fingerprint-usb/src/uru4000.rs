//! The U.are.U 4000 family: DigitalPersona U.are.U 4500 (05ba:000a) and the second-generation
//! Microsoft Fingerprint Reader (045e:00ca). One driver; a [`Variant`] holds what differs
//! between the models. See PROTOCOL.md in this crate.

use std::time::{Duration, Instant};

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use apg_device::{CancelToken, CaptureError, FaultKind, FingerprintImage, RetryReason};

use crate::driver::ReaderDriver;
use crate::transport::{Setup, UsbError, UsbTransport};

const REG_HWSTAT: u16 = 0x07;
const REG_SCRAMBLE_INDEX: u16 = 0x33;
const REG_SCRAMBLE_KEY: u16 = 0x34;
const REG_MODE: u16 = 0x4e;
const REG_DEVICE_INFO: u16 = 0xf0;
const REG_AUTH_RESPONSE: u16 = 0x2000;
const REG_AUTH_CHALLENGE: u16 = 0x2010;
const MODE_AWAIT_FINGER_ON: u8 = 0x10;
const MODE_AWAIT_FINGER_OFF: u8 = 0x12;
const MODE_CAPTURE: u8 = 0x20;
const MODE_OFF: u8 = 0x70;
const EP_INTR: u8 = 0x81;
const EP_DATA: u8 = 0x82;
const IRQ_SCANPWR_ON: u16 = 0x56aa;
const IRQ_FINGER_ON: u16 = 0x0101;
const IRQ_FINGER_OFF: u16 = 0x0200;
/// hwstat bit 7: the sensor is in low-power mode.
const HWSTAT_LOW_POWER: u8 = 0x80;
/// Image width in pixels.
pub const WIDTH: usize = 384;
/// Image height in pixels.
pub const HEIGHT: usize = 290;
const HEADER: usize = 64;
const MAX_BLOCKS: usize = 15;
const BLOCK_NOT_PRESENT: u8 = 0x01;
const BLOCK_SCRAMBLED: u8 = 0x02;
const BLOCK_KEY_HOLDS: u8 = 0x04;
const BLOCK_NEW_KEY: u8 = 0x80;
/// Below this line-pair variance the image arrived in clear (the firmware's scrambling is off).
const SCRAMBLE_THRESHOLD: u32 = 5000;
const CTRL_TIMEOUT: Duration = Duration::from_millis(5000);
const POLL: Duration = Duration::from_millis(200);
/// How long one power-up waits for the scan-power event before it is run again.
const SCANPWR_WAIT: Duration = Duration::from_millis(300);
const SCANPWR_TRIES: usize = 3;
/// hwstat write/read rounds before the power-up (or power reboot) gives up, 10 ms apart.
const HWSTAT_TRIES: usize = 100;
const HWSTAT_PAUSE: Duration = Duration::from_millis(10);

/// What differs between the readers of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Marketing name.
    pub model: &'static str,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// AES-128 key of the firmware's challenge-response: the sensor stays in low-power mode
    /// until the host answers the challenge. `None` for models without it.
    pub auth_key: Option<[u8; 16]>,
    /// Whether the assembled image is turned by 180 degrees (the 4500 sends it upside down).
    pub rotate_180: bool,
}

/// DigitalPersona U.are.U 4500 (USB id of the U.are.U 4000B).
pub const URU4500: Variant = Variant {
    model: "DigitalPersona U.are.U 4500",
    vendor_id: 0x05ba,
    product_id: 0x000a,
    auth_key: None,
    rotate_180: true,
};

/// Microsoft Fingerprint Reader, second generation ("MSv2").
pub const MSV2: Variant = Variant {
    model: "Microsoft Fingerprint Reader v2",
    vendor_id: 0x045e,
    product_id: 0x00ca,
    auth_key: Some([
        0x79, 0xac, 0x91, 0x79, 0x5c, 0xa1, 0x47, 0x8e, 0x98, 0xe0, 0x0f, 0x3c, 0x59, 0x8f, 0x5f,
        0x4b,
    ]),
    rotate_180: false,
};

/// One claimed reader of the family.
pub struct Uru4000<T: UsbTransport> {
    id: String,
    usb: T,
    variant: Variant,
    seed: Box<dyn FnMut() -> u32 + Send>,
    powered: bool,
}

impl<T: UsbTransport> Uru4000<T> {
    /// Wraps a claimed U.are.U 4500; `id` names the device in errors.
    pub fn new(id: impl Into<String>, usb: T) -> Self {
        Self::with_variant(id, usb, URU4500)
    }

    /// Wraps a claimed reader of the given model.
    pub fn with_variant(id: impl Into<String>, usb: T, variant: Variant) -> Self {
        let seed = Box::new(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        });
        Self {
            id: id.into(),
            usb,
            variant,
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

    /// The model this driver talks to.
    pub fn variant(&self) -> &Variant {
        &self.variant
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

    fn fault(&self, kind: FaultKind, detail: impl Into<String>) -> CaptureError {
        CaptureError::fault(&self.id, kind, detail)
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
            return Err(self.fault(
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
            Ok(_) => Err(self.fault(
                FaultKind::Protocol,
                format!("{during}: short interrupt packet"),
            )),
            Err(UsbError::Timeout(_)) => Ok(None),
            Err(e) => Err(e.into_capture(&self.id, during)),
        }
    }

    /// Polls the interrupt endpoint until event `want` arrives (`true`) or `until` passes
    /// (`false`); other events are skipped. Cancellation and the capture deadline end the wait
    /// with an error.
    fn poll_irq(
        &mut self,
        want: u16,
        until: Instant,
        deadline: Instant,
        cancel: &CancelToken,
        during: &str,
    ) -> Result<bool, CaptureError> {
        loop {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            let now = Instant::now();
            if now > deadline {
                return Err(CaptureError::Timeout {
                    device: self.id.clone(),
                    waited: Duration::ZERO,
                });
            }
            if now > until {
                return Ok(false);
            }
            if self.irq(during)? == Some(want) {
                return Ok(true);
            }
        }
    }

    fn wait_irq(
        &mut self,
        want: u16,
        deadline: Instant,
        cancel: &CancelToken,
        during: &str,
    ) -> Result<(), CaptureError> {
        self.poll_irq(want, deadline, deadline, cancel, during)?;
        Ok(())
    }

    fn hwstat(&mut self, during: &str) -> Result<u8, CaptureError> {
        Ok(self.read_reg(REG_HWSTAT, 1, during)?[0])
    }

    /// Answers the firmware's authentication challenge (models with an `auth_key` only):
    /// the 16-byte challenge encrypted with AES-128 in ECB mode is the response.
    fn authenticate(&mut self, key: &[u8; 16]) -> Result<(), CaptureError> {
        let challenge = self.read_reg(
            REG_AUTH_CHALLENGE,
            16,
            "reading the authentication challenge",
        )?;
        let cipher = Aes128::new(GenericArray::from_slice(key));
        let mut block = GenericArray::clone_from_slice(&challenge);
        cipher.encrypt_block(&mut block);
        self.write_reg(
            REG_AUTH_RESPONSE,
            &block,
            "answering the authentication challenge",
        )
    }

    /// Brings a sensor that reports hwstat bits 7 and 2 together (a confused power state)
    /// back: writes the low nibble and polls until bit 0 shows. Returns the last hwstat.
    fn reboot_power(&mut self, st: u8, cancel: &CancelToken) -> Result<u8, CaptureError> {
        self.write_reg(REG_HWSTAT, &[st & 0x0f], "rebooting sensor power")?;
        for _ in 0..HWSTAT_TRIES {
            let now = self.hwstat("rebooting sensor power")?;
            if now & 0x01 != 0 {
                return Ok(now);
            }
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            std::thread::sleep(HWSTAT_PAUSE);
        }
        Err(self.fault(
            FaultKind::Io,
            "rebooting sensor power: hwstat never showed bit 0; unplug and replug the reader",
        ))
    }

    /// One power-up: puts the sensor in low-power mode, then clears that bit until the sensor
    /// reports it cleared, answering the authentication challenge between tries where the
    /// model demands it.
    fn power_up(&mut self, cancel: &CancelToken) -> Result<(), CaptureError> {
        let mut st = self.hwstat("reading hardware status")?;
        if st & 0x84 == 0x84 {
            st = self.reboot_power(st, cancel)?;
        }
        if st & HWSTAT_LOW_POWER == 0 {
            self.write_reg(REG_HWSTAT, &[st | HWSTAT_LOW_POWER], "powering down")?;
        }
        let on = st & 0x0f;
        self.powered = true;
        for _ in 0..HWSTAT_TRIES {
            self.write_reg(REG_HWSTAT, &[on], "powering up")?;
            if self.hwstat("checking the power-up")? & HWSTAT_LOW_POWER == 0 {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.id.clone(),
                });
            }
            std::thread::sleep(HWSTAT_PAUSE);
            if let Some(key) = self.variant.auth_key {
                self.authenticate(&key)?;
            }
        }
        Err(self.fault(
            FaultKind::Protocol,
            "sensor still in low-power mode after 100 power-up attempts",
        ))
    }

    /// Powers up and waits for the scan-power event; a sensor that does not send it within
    /// 300 ms is powered up again, three times at most.
    fn init(&mut self, deadline: Instant, cancel: &CancelToken) -> Result<(), CaptureError> {
        for _ in 0..SCANPWR_TRIES {
            self.power_up(cancel)?;
            let until = (Instant::now() + SCANPWR_WAIT).min(deadline);
            if self.poll_irq(
                IRQ_SCANPWR_ON,
                until,
                deadline,
                cancel,
                "waiting for scan power",
            )? {
                return Ok(());
            }
        }
        Err(self.fault(
            FaultKind::Io,
            "waiting for scan power: no scan-power event after 3 power-ups",
        ))
    }

    /// Asks the sensor for the descrambling key of slot `slot` (challenge with a host nonce,
    /// answer XOR nonce).
    fn scramble_key(&mut self, slot: u8) -> Result<u32, CaptureError> {
        let seed = self.usb.replay_nonce().unwrap_or_else(&mut self.seed);
        let mut challenge = vec![slot];
        challenge.extend_from_slice(&seed.to_le_bytes());
        self.write_reg(
            REG_SCRAMBLE_INDEX,
            &challenge,
            "sending the decryption challenge",
        )?;
        let resp = self.read_reg(REG_SCRAMBLE_KEY, 4, "reading the decryption key")?;
        Ok(u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]) ^ seed)
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
        self.init(deadline, cancel)?;
        let _info = self.read_reg(REG_DEVICE_INFO, 16, "reading device info")?;
        self.write_reg(REG_MODE, &[MODE_AWAIT_FINGER_ON], "arming finger detection")?;
        self.wait_irq(IRQ_FINGER_ON, deadline, cancel, "waiting for a finger")?;
        self.write_reg(REG_MODE, &[MODE_CAPTURE], "starting capture")?;
        let mut raw = self
            .usb
            .bulk_in(EP_DATA, HEADER + WIDTH * HEIGHT, CTRL_TIMEOUT)
            .map_err(self.err("reading the image"))?;
        let frame =
            Frame::parse(&raw).map_err(|d| self.fault(FaultKind::InvalidData, d.to_string()))?;
        if frame.is_scrambled(&raw) {
            let key = self.scramble_key(frame.key_slot)?;
            frame.descramble(&mut raw, key, |slot| self.scramble_key(slot))?;
        }
        let pixels = frame.assemble(&raw, self.variant.rotate_180);
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

/// [`crate::driver::StartDriver`] for the U.are.U 4500 entry of the driver table.
pub fn start(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver> {
    Box::new(Uru4000::new(id, usb))
}

/// [`crate::driver::StartDriver`] for the Microsoft Fingerprint Reader v2 entry.
pub fn start_msv2(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver> {
    Box::new(Uru4000::with_variant(id, usb, MSV2))
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

/// Why an image transfer cannot be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the 64-byte header.
    #[error("image transfer of {0} bytes is shorter than its 64-byte header; retry the capture")]
    NoHeader(usize),
    /// The header announces a line count the sensor cannot have.
    #[error("image header announces {0} lines (at most 289); retry the capture")]
    BadLineCount(usize),
    /// The transfer is shorter than the line count of its header.
    #[error("image header announces {lines} lines but only {got} arrived; retry the capture")]
    Truncated {
        /// Lines announced.
        lines: usize,
        /// Complete lines received.
        got: usize,
    },
    /// A block refers to lines that were not transmitted.
    #[error(
        "image block {block} needs line {need} but only {got} lines arrived; retry the capture"
    )]
    BlockPastData {
        /// Block index.
        block: usize,
        /// One past the last line the block needs.
        need: usize,
        /// Lines received.
        got: usize,
    },
    /// The blocks do not add up to a full image.
    #[error("image blocks describe {0} lines, expected 290; retry the capture")]
    WrongHeight(usize),
}

/// The parsed header of one image transfer; its blocks are checked against the data received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Lines transmitted after the header.
    pub lines: usize,
    /// Key slot of the scrambling key.
    pub key_slot: u8,
    /// `(flags, line count)` of the blocks used, in order.
    pub blocks: Vec<(u8, usize)>,
}

impl Frame {
    /// Reads and checks the header of `raw` (the whole bulk transfer).
    pub fn parse(raw: &[u8]) -> Result<Self, FrameError> {
        if raw.len() < HEADER {
            return Err(FrameError::NoHeader(raw.len()));
        }
        let lines = u16::from_le_bytes([raw[4], raw[5]]) as usize;
        if lines >= HEIGHT {
            return Err(FrameError::BadLineCount(lines));
        }
        let got = (raw.len() - HEADER) / WIDTH;
        if got < lines {
            return Err(FrameError::Truncated { lines, got });
        }
        let mut blocks = Vec::new();
        let (mut r, mut out) = (0usize, 0usize);
        for b in 0..MAX_BLOCKS {
            let flags = raw[16 + 2 * b];
            let n = raw[17 + 2 * b] as usize;
            if n == 0 || r >= lines {
                break;
            }
            // Present blocks are the next n lines; an absent block repeats the n lines that
            // follow, so both read lines r..r+n.
            if r + n > lines {
                return Err(FrameError::BlockPastData {
                    block: b,
                    need: r + n,
                    got: lines,
                });
            }
            blocks.push((flags, n));
            if flags & BLOCK_NOT_PRESENT == 0 {
                r += n;
            }
            out += n;
        }
        if out != HEIGHT {
            return Err(FrameError::WrongHeight(out));
        }
        Ok(Self {
            lines,
            key_slot: raw[6],
            blocks,
        })
    }

    /// Whether the lines arrived scrambled: the first two transmitted lines of a clear image
    /// are smooth, scrambled ones are noise. The measure is the mean squared deviation of the
    /// per-column sums of the two lines from their mean.
    pub fn is_scrambled(&self, raw: &[u8]) -> bool {
        self.line_pair_variance(raw) >= SCRAMBLE_THRESHOLD
    }

    fn line_pair_variance(&self, raw: &[u8]) -> u32 {
        let present: usize = self
            .blocks
            .iter()
            .filter(|(f, _)| f & BLOCK_NOT_PRESENT == 0)
            .map(|(_, n)| n)
            .sum();
        if present < 2 {
            return 0;
        }
        let data = &raw[HEADER..];
        let sums: Vec<i64> = (0..WIDTH)
            .map(|i| data[i] as i64 + data[WIDTH + i] as i64)
            .collect();
        let mean = sums.iter().sum::<i64>() / WIDTH as i64;
        let dev = sums.iter().map(|s| (s - mean) * (s - mean)).sum::<i64>() / WIDTH as i64;
        dev.clamp(0, u32::MAX as i64) as u32
    }

    /// Descrambles the transmitted lines of `raw` in place, starting with `key`. A block
    /// flagged for a new key gets it from `next_key(slot)` with the next key slot.
    pub fn descramble<E>(
        &self,
        raw: &mut [u8],
        mut key: u32,
        mut next_key: impl FnMut(u8) -> Result<u32, E>,
    ) -> Result<(), E> {
        let mut slot = self.key_slot;
        let mut r = 0usize;
        for &(flags, n) in &self.blocks {
            if flags & BLOCK_NEW_KEY != 0 {
                slot = slot.wrapping_add(1);
                key = next_key(slot)?;
            }
            let len = n * WIDTH;
            let present = flags & BLOCK_NOT_PRESENT == 0;
            match flags & (BLOCK_SCRAMBLED | BLOCK_KEY_HOLDS) {
                BLOCK_SCRAMBLED if present => {
                    let at = HEADER + r * WIDTH;
                    key = descramble(&mut raw[at..at + len], key);
                }
                BLOCK_SCRAMBLED | 0 => {
                    for _ in 0..len {
                        key = lfsr(key);
                    }
                }
                _ => {}
            }
            if present {
                r += n;
            }
        }
        Ok(())
    }

    /// Lays the blocks out into `WIDTH * HEIGHT` pixels, turns them by 180 degrees when asked
    /// and inverts them so that ridges are dark.
    pub fn assemble(&self, raw: &[u8], rotate_180: bool) -> Vec<u8> {
        let data = &raw[HEADER..];
        let mut order = Vec::with_capacity(HEIGHT);
        let mut r = 0usize;
        for &(flags, n) in &self.blocks {
            order.extend(r..r + n);
            if flags & BLOCK_NOT_PRESENT == 0 {
                r += n;
            }
        }
        let mut out = Vec::with_capacity(WIDTH * HEIGHT);
        let line = |src: usize| &data[src * WIDTH..(src + 1) * WIDTH];
        if rotate_180 {
            for &src in order.iter().rev() {
                out.extend(line(src).iter().rev().map(|&v| 255 - v));
            }
        } else {
            for &src in &order {
                out.extend(line(src).iter().map(|&v| 255 - v));
            }
        }
        out
    }
}

/// Turns a raw bulk transfer into `WIDTH * HEIGHT` gray pixels with a known key (the key
/// slot never changes within the transfer): descrambles it if it arrived scrambled, lays the
/// blocks out, turns the image as `variant` requires and inverts it.
pub fn decode_image(raw: &[u8], key: u32, variant: &Variant) -> Result<Vec<u8>, String> {
    let frame = Frame::parse(raw).map_err(|e| e.to_string())?;
    let mut raw = raw.to_vec();
    if frame.is_scrambled(&raw) {
        frame.descramble(&mut raw, key, |slot| {
            Err(format!("image asks for a new key (slot {slot})"))
        })?;
    }
    Ok(frame.assemble(&raw, variant.rotate_180))
}

/// The host nonce of the (first) decryption challenge in a recorded session, if it holds one.
pub fn recorded_nonce(transfers: &[crate::recording::Transfer]) -> Option<u32> {
    let t = transfers.iter().find(|t| {
        t.setup.is_some_and(|s| {
            s[0] == 0x40 && s[1] == 0x04 && u16::from_le_bytes([s[2], s[3]]) == REG_SCRAMBLE_INDEX
        })
    })?;
    Some(u32::from_le_bytes(t.out_data.get(1..5)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lines: u16, slot: u8, blocks: &[(u8, u8)]) -> Vec<u8> {
        let mut raw = vec![0u8; HEADER];
        raw[4..6].copy_from_slice(&lines.to_le_bytes());
        raw[6] = slot;
        for (i, &(f, n)) in blocks.iter().enumerate() {
            raw[16 + 2 * i] = f;
            raw[17 + 2 * i] = n;
        }
        raw
    }

    #[test]
    fn parse_rejects_short_and_inconsistent_frames() {
        assert_eq!(Frame::parse(&[0; 10]), Err(FrameError::NoHeader(10)));
        let mut raw = header(290, 0, &[(0, 200), (0, 90)]);
        assert_eq!(Frame::parse(&raw), Err(FrameError::BadLineCount(290)));
        raw = header(289, 0, &[(0, 200), (1, 1), (0, 89)]);
        raw.resize(HEADER + 100 * WIDTH, 0);
        assert_eq!(
            Frame::parse(&raw),
            Err(FrameError::Truncated {
                lines: 289,
                got: 100
            })
        );
        raw = header(10, 0, &[(0, 5), (1, 8)]);
        raw.resize(HEADER + 10 * WIDTH, 0);
        assert_eq!(
            Frame::parse(&raw),
            Err(FrameError::BlockPastData {
                block: 1,
                need: 13,
                got: 10
            })
        );
        raw = header(10, 0, &[(0, 10)]);
        raw.resize(HEADER + 10 * WIDTH, 0);
        assert_eq!(Frame::parse(&raw), Err(FrameError::WrongHeight(10)));
    }

    #[test]
    fn clear_frame_is_laid_out_without_a_key() {
        // 288 lines sent; two absent lines each repeat the line after them.
        let mut raw = header(288, 3, &[(0, 100), (1, 1), (0, 100), (1, 1), (0, 88)]);
        for l in 0..288usize {
            raw.extend(std::iter::repeat_n((l % 200) as u8, WIDTH));
        }
        let f = Frame::parse(&raw).expect("valid frame");
        assert!(!f.is_scrambled(&raw), "smooth lines are clear");
        let img = decode_image(&raw, 0, &MSV2).expect("decodes");
        let at = |y: usize| img[y * WIDTH];
        assert_eq!(at(0), 255);
        assert_eq!(at(100), 255 - 100, "absent line copies the next sent one");
        assert_eq!(at(101), 255 - 100);
        assert_eq!(at(289), 255 - (287 % 200) as u8);
        let turned = decode_image(&raw, 0, &URU4500).expect("decodes");
        assert_eq!(turned[0], 255 - (287 % 200) as u8);
    }

    #[test]
    fn new_key_flag_asks_for_the_next_slot() {
        let mut raw = header(288, 7, &[(2, 100), (1, 1), (0x82, 1), (1, 1), (2, 187)]);
        let mut x = 0x1234_5678u32;
        for _ in 0..288 * WIDTH {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            raw.push((x >> 16) as u8);
        }
        let f = Frame::parse(&raw).expect("valid frame");
        assert!(f.is_scrambled(&raw), "noise reads as scrambled");
        let mut asked = Vec::new();
        f.descramble(&mut raw, 1, |slot| {
            asked.push(slot);
            Ok::<_, ()>(2)
        })
        .expect("descrambles");
        assert_eq!(asked, vec![8]);
        assert_eq!(f.assemble(&raw, false).len(), WIDTH * HEIGHT);
        assert!(
            decode_image(&raw, 1, &MSV2).is_err(),
            "decode_image has no way to fetch a second key"
        );
    }

    /// A scripted sensor: stays in low-power mode until it has been authenticated (when it
    /// wants that) and never sends the scan-power event.
    struct Silent {
        hwstat: u8,
        wants_auth: bool,
        challenge: [u8; 16],
        authed: bool,
        power_writes: usize,
    }

    impl UsbTransport for Silent {
        fn control_in(&mut self, s: Setup, len: usize, _: Duration) -> Result<Vec<u8>, UsbError> {
            Ok(match s.value {
                REG_HWSTAT if self.wants_auth && !self.authed => vec![self.hwstat | 0x80],
                REG_HWSTAT => vec![self.hwstat],
                REG_AUTH_CHALLENGE => self.challenge.to_vec(),
                _ => vec![0; len],
            })
        }
        fn control_out(&mut self, s: Setup, data: &[u8], _: Duration) -> Result<(), UsbError> {
            match s.value {
                REG_HWSTAT if data[0] & 0x80 == 0 => self.power_writes += 1,
                REG_AUTH_RESPONSE => {
                    // AES-128-ECB of the challenge under the MSv2 key (checked with openssl).
                    self.authed = data
                        == [
                            0x32, 0x93, 0x51, 0x37, 0x1e, 0x4a, 0xdf, 0xb1, 0xf3, 0x5f, 0x09, 0xf3,
                            0x29, 0xc6, 0xab, 0x46,
                        ]
                }
                _ => {}
            }
            Ok(())
        }
        fn bulk_in(&mut self, ep: u8, _: usize, _: Duration) -> Result<Vec<u8>, UsbError> {
            Err(UsbError::Timeout(ep))
        }
        fn bulk_out(&mut self, ep: u8, _: &[u8], _: Duration) -> Result<(), UsbError> {
            Err(UsbError::Stall(ep))
        }
        fn interrupt_in(&mut self, ep: u8, _: usize, _: Duration) -> Result<Vec<u8>, UsbError> {
            std::thread::sleep(Duration::from_millis(5));
            Err(UsbError::Timeout(ep))
        }
        fn release(&mut self) -> Result<(), UsbError> {
            Ok(())
        }
    }

    #[test]
    fn authenticated_power_up_without_scan_power_gives_up_after_three_tries() {
        let usb = Silent {
            hwstat: 0x03,
            wants_auth: true,
            // The challenge of the MSv2 recording.
            challenge: [
                0x4d, 0xae, 0x5a, 0x0b, 0x12, 0x47, 0xa8, 0x6c, 0x9f, 0xbf, 0x29, 0xfd, 0xcc, 0x17,
                0x8a, 0x74,
            ],
            authed: false,
            power_writes: 0,
        };
        let mut dev = Uru4000::with_variant("silent", usb, MSV2);
        let err = dev
            .capture_image(&CancelToken::new(), Duration::from_secs(30))
            .expect_err("no scan power");
        let text = err.to_string();
        assert!(
            text.contains("silent") && text.contains("scan-power"),
            "{text}"
        );
        assert!(dev.transport().authed, "the response was wrong");
        // First power-up: refused, authenticate, accepted; then twice accepted at once.
        assert_eq!(dev.transport().power_writes, 4);
    }

    #[test]
    fn cancel_ends_the_scan_power_wait() {
        let usb = Silent {
            hwstat: 0x01,
            wants_auth: false,
            challenge: [0; 16],
            authed: false,
            power_writes: 0,
        };
        let mut dev = Uru4000::new("silent", usb);
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = dev
            .capture_image(&cancel, Duration::from_secs(30))
            .expect_err("cancelled");
        assert!(matches!(err, CaptureError::Cancelled { .. }), "{err}");
    }
}
