//! Driver of one ZhianTec/Synochip module (R30x, R307, R503, AS608, ZFM-20) behind a [`Port`].
//!
//! Every call writes one command packet and waits at most the response timeout for each packet
//! of the answer. An error that leaves the stream in an unknown state (silence, a bad packet, a
//! restart) marks the driver out of sync; the next call first drains the line and verifies the
//! password again, so one bad exchange never poisons the ones after it.

use std::io::ErrorKind as IoKind;
use std::time::{Duration, Instant};

use apg_device::{CancelToken, FingerprintImage};

use crate::error::{ErrorKind, ModuleError};
use crate::image;
use crate::port::Port;
use crate::protocol::{
    ins, param, Confirmation, Framer, Packet, Pid, DEFAULT_ADDRESS, DEFAULT_PASSWORD,
};

/// Lowest baud rate the modules accept (N = 1).
pub const MIN_BAUD: u32 = 9600;
/// Highest baud rate the modules accept (N = 12).
pub const MAX_BAUD: u32 = 115_200;

/// How the driver talks to a module.
#[derive(Debug, Clone)]
pub struct ModuleSettings {
    /// Module address (factory default 0xFFFFFFFF).
    pub address: u32,
    /// Module password (factory default 0).
    pub password: u32,
    /// Longest wait for any one packet of an answer.
    pub response_timeout: Duration,
    /// Pause between two GenImg polls while waiting for a finger.
    pub poll_interval: Duration,
    /// Longest wait for the finger to be lifted after a capture.
    pub removal_timeout: Duration,
}

impl Default for ModuleSettings {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS,
            password: DEFAULT_PASSWORD,
            response_timeout: Duration::from_millis(1000),
            poll_interval: Duration::from_millis(50),
            removal_timeout: Duration::from_secs(5),
        }
    }
}

/// The 16 bytes ReadSysPara returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemParameters {
    /// Status register (bit 0 busy, bit 1 matched, bit 2 password verified, bit 3 image
    /// buffer holds a valid image).
    pub status: u16,
    /// System identifier code.
    pub system_id: u16,
    /// Number of templates the library holds.
    pub library_size: u16,
    /// Security level 1..5.
    pub security_level: u16,
    /// Module address.
    pub address: u32,
    /// Data packet size in bytes (32, 64, 128 or 256).
    pub packet_size: usize,
    /// Baud rate.
    pub baud: u32,
}

impl SystemParameters {
    /// Parses the 16 parameter bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 16 {
            return None;
        }
        let w = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Some(Self {
            status: w(0),
            system_id: w(2),
            library_size: w(4),
            security_level: w(6),
            address: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            packet_size: packet_size_bytes(w(12))?,
            baud: u32::from(w(14)) * 9600,
        })
    }
}

/// Data packet size of a size code (0..3).
pub fn packet_size_bytes(code: u16) -> Option<usize> {
    (code <= 3).then(|| 32usize << code)
}

/// A library hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchHit {
    /// Page (template slot) that matched.
    pub page: u16,
    /// The module's match score.
    pub score: u16,
}

/// R503 LED ring effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedMode {
    /// 1: breathe.
    Breathing = 1,
    /// 2: flash `count` times.
    Flashing = 2,
    /// 3: stay on.
    On = 3,
    /// 4: stay off.
    Off = 4,
    /// 5: fade in.
    FadeIn = 5,
    /// 6: fade out.
    FadeOut = 6,
}

/// R503 LED ring colour (the first three exist on every R503; later firmware adds more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedColor {
    /// 1.
    Red = 1,
    /// 2.
    Blue = 2,
    /// 3.
    Purple = 3,
    /// 4 (later firmware).
    Green = 4,
    /// 5 (later firmware).
    Yellow = 5,
    /// 6 (later firmware).
    Cyan = 6,
    /// 7 (later firmware).
    White = 7,
}

/// Driver of one module.
pub struct ZhiantecModule<P: Port> {
    port: P,
    settings: ModuleSettings,
    framer: Framer,
    packet_size: usize,
    out_of_sync: bool,
    finger_down: bool,
}

impl<P: Port> ZhiantecModule<P> {
    /// Wraps an open port. Nothing is sent until the first call; call
    /// [`ZhiantecModule::connect`] to handshake and learn the packet size.
    pub fn new(port: P, settings: ModuleSettings) -> Self {
        Self {
            port,
            settings,
            framer: Framer::new(),
            packet_size: 128,
            out_of_sync: true,
            finger_down: false,
        }
    }

    /// The port.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The settings in force.
    pub fn settings(&self) -> &ModuleSettings {
        &self.settings
    }

    /// Bytes skipped as line noise since the last resynchronisation.
    pub fn skipped_bytes(&self) -> usize {
        self.framer.skipped()
    }

    /// True when the next call will drain the line and handshake first.
    pub fn is_out_of_sync(&self) -> bool {
        self.out_of_sync
    }

    fn err(&self, during: &str, kind: ErrorKind) -> ModuleError {
        ModuleError {
            port: self.port.name().to_string(),
            during: during.to_string(),
            kind,
        }
    }

    /// Records an error; errors that leave the stream unknown force a resync next time.
    fn fail(&mut self, during: &str, kind: ErrorKind) -> ModuleError {
        let e = self.err(during, kind);
        if e.desynchronises() {
            self.out_of_sync = true;
        }
        e
    }

    /// Handshakes (drains the line, verifies the password) and reads the system parameters.
    pub fn connect(&mut self) -> Result<SystemParameters, ModuleError> {
        self.resync()?;
        self.read_system_parameters()
    }

    /// Drains whatever the module is still sending, forgets partial packets and verifies the
    /// password again (a restarted module forgets that it was verified).
    pub fn resync(&mut self) -> Result<(), ModuleError> {
        self.out_of_sync = true;
        let _ = self.port.discard_input();
        let quiet = Duration::from_millis(60);
        let limit = Instant::now() + self.settings.response_timeout.max(Duration::from_secs(2));
        let mut buf = [0u8; 512];
        loop {
            if Instant::now() >= limit {
                break;
            }
            let _ = self.port.set_read_timeout(quiet);
            match self.port.read(&mut buf) {
                Ok(0) => return Err(self.fail("resynchronising", ErrorKind::Closed)),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), IoKind::TimedOut | IoKind::WouldBlock) => break,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => return Err(self.io_error("resynchronising", e)),
            }
        }
        self.framer.clear();
        self.verify_password_now()?;
        self.out_of_sync = false;
        Ok(())
    }

    fn io_error(&mut self, during: &str, e: std::io::Error) -> ModuleError {
        // EIO on a tty means the other end (bridge, PTY master) is gone.
        if e.raw_os_error() == Some(5) || e.kind() == IoKind::BrokenPipe {
            self.fail(during, ErrorKind::Closed)
        } else {
            self.fail(during, ErrorKind::Io(e))
        }
    }

    fn ensure_synced(&mut self) -> Result<(), ModuleError> {
        if self.out_of_sync {
            self.resync()?;
        }
        Ok(())
    }

    fn send(&mut self, pid: Pid, payload: Vec<u8>, during: &str) -> Result<(), ModuleError> {
        let p = Packet {
            address: self.settings.address,
            pid,
            payload,
        };
        let bytes = p.encode();
        if let Err(e) = self.port.write_all(&bytes).and_then(|_| self.port.flush()) {
            return Err(self.io_error(during, e));
        }
        Ok(())
    }

    /// Waits for the next packet addressed to us.
    fn read_packet(&mut self, during: &str) -> Result<Packet, ModuleError> {
        let deadline = Instant::now() + self.settings.response_timeout;
        let mut buf = [0u8; 1024];
        loop {
            match self.framer.next_packet() {
                Ok(Some(p)) if p.address == self.settings.address => return Ok(p),
                Ok(Some(p)) => {
                    let detail = format!(
                        "a packet from address {:#010x}; the configured address is {:#010x}",
                        p.address, self.settings.address
                    );
                    return Err(self.fail(during, ErrorKind::Unexpected(detail)));
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail(during, ErrorKind::Frame(e))),
            }
            let now = Instant::now();
            if now >= deadline {
                let kind = if let Some(t) = self.framer.truncation() {
                    ErrorKind::Frame(t)
                } else if self.framer.saw_startup_byte() {
                    ErrorKind::Reset
                } else {
                    ErrorKind::Timeout {
                        waited: self.settings.response_timeout,
                    }
                };
                return Err(self.fail(during, kind));
            }
            if let Err(e) = self.port.set_read_timeout(deadline - now) {
                return Err(self.io_error(during, e));
            }
            match self.port.read(&mut buf) {
                Ok(0) => return Err(self.fail(during, ErrorKind::Closed)),
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        IoKind::TimedOut | IoKind::WouldBlock | IoKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.io_error(during, e)),
            }
        }
    }

    /// Sends a command and returns the acknowledgement's confirmation code and results,
    /// without resynchronising first.
    fn exchange(
        &mut self,
        payload: Vec<u8>,
        during: &str,
    ) -> Result<(Confirmation, Vec<u8>), ModuleError> {
        self.framer.clear_marks();
        self.send(Pid::Command, payload, during)?;
        let p = self.read_packet(during)?;
        if p.pid != Pid::Ack || p.payload.is_empty() {
            let detail = format!(
                "expected an acknowledgement, got a {:?} packet of {} bytes",
                p.pid,
                p.payload.len()
            );
            return Err(self.fail(during, ErrorKind::Unexpected(detail)));
        }
        Ok((
            Confirmation::from_byte(p.payload[0]),
            p.payload[1..].to_vec(),
        ))
    }

    /// Sends a command (resynchronising first if needed; verifying the password again and
    /// repeating once if the module asks for it).
    fn command(
        &mut self,
        payload: Vec<u8>,
        during: &str,
    ) -> Result<(Confirmation, Vec<u8>), ModuleError> {
        self.ensure_synced()?;
        let r = self.exchange(payload.clone(), during)?;
        if r.0 == Confirmation::PasswordRequired {
            self.verify_password_now()?;
            return self.exchange(payload, during);
        }
        Ok(r)
    }

    /// Like [`Self::command`] but any code other than success is an error.
    fn command_ok(&mut self, payload: Vec<u8>, during: &str) -> Result<Vec<u8>, ModuleError> {
        let (c, rest) = self.command(payload, during)?;
        if c != Confirmation::Ok {
            return Err(self.fail(during, ErrorKind::Rejected(c)));
        }
        Ok(rest)
    }

    fn short(&mut self, during: &str, want: usize, got: usize) -> ModuleError {
        self.fail(
            during,
            ErrorKind::Unexpected(format!(
                "acknowledgement carries {got} result bytes, expected {want}"
            )),
        )
    }

    fn verify_password_now(&mut self) -> Result<(), ModuleError> {
        let during = "verifying the password (handshake)";
        let mut payload = vec![ins::VFY_PWD];
        payload.extend_from_slice(&self.settings.password.to_be_bytes());
        let (c, _) = self.exchange(payload, during)?;
        match c {
            Confirmation::Ok => Ok(()),
            Confirmation::WrongPassword => Err(self.fail(during, ErrorKind::WrongPassword)),
            other => Err(self.fail(during, ErrorKind::Rejected(other))),
        }
    }

    /// Verifies the configured password (the handshake every session starts with).
    pub fn verify_password(&mut self) -> Result<(), ModuleError> {
        self.resync()
    }

    /// Reads the system parameters and adopts the module's data packet size.
    pub fn read_system_parameters(&mut self) -> Result<SystemParameters, ModuleError> {
        let during = "reading the system parameters";
        let rest = self.command_ok(vec![ins::READ_SYS_PARA], during)?;
        let Some(p) = SystemParameters::parse(&rest) else {
            let detail = format!(
                "{} parameter bytes, expected 16 with a packet size code 0..3",
                rest.len()
            );
            return Err(self.fail(during, ErrorKind::Unexpected(detail)));
        };
        self.packet_size = p.packet_size;
        Ok(p)
    }

    /// Changes the module's baud rate, then the port's, and checks the module answers at the
    /// new rate. `baud` must be N × 9600 with N in 1..=12.
    pub fn set_baud(&mut self, baud: u32) -> Result<(), ModuleError> {
        let during = format!("setting the baud rate to {baud}");
        if !baud.is_multiple_of(9600) || !(MIN_BAUD..=MAX_BAUD).contains(&baud) {
            return Err(self.err(
                &during,
                ErrorKind::InvalidArgument(format!(
                    "{baud} is not a module baud rate: use N × 9600 between {MIN_BAUD} and {MAX_BAUD} \
                     (9600, 19200, 38400, 57600, 115200, ...)"
                )),
            ));
        }
        self.set_parameter(param::BAUD, (baud / 9600) as u8, &during)?;
        // The module switches after acknowledging; give the last bytes time to leave.
        std::thread::sleep(Duration::from_millis(20));
        if let Err(e) = self.port.set_baud(baud) {
            return Err(self.io_error(&during, e));
        }
        self.resync()
    }

    /// Writes one system parameter (SetSysPara).
    pub fn set_parameter(
        &mut self,
        number: u8,
        value: u8,
        during: &str,
    ) -> Result<(), ModuleError> {
        self.command_ok(vec![ins::SET_SYS_PARA, number, value], during)
            .map(drop)
    }

    /// Takes one image (GenImg): `true` when a finger was imaged, `false` when there is none.
    pub fn gen_img(&mut self) -> Result<bool, ModuleError> {
        let during = "taking an image (GenImg)";
        match self.command(vec![ins::GEN_IMG], during)?.0 {
            Confirmation::Ok => Ok(true),
            Confirmation::NoFinger | Confirmation::ImageFail => Ok(false),
            other => Err(self.fail(during, ErrorKind::Rejected(other))),
        }
    }

    fn pause(&self, cancel: &CancelToken, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if cancel.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        !cancel.is_cancelled()
    }

    /// Polls GenImg until a finger is imaged, the deadline passes or `cancel` is set.
    pub fn wait_finger(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<(), ModuleError> {
        let start = Instant::now();
        let during = "waiting for a finger";
        loop {
            if cancel.is_cancelled() {
                return Err(self.err(during, ErrorKind::Cancelled));
            }
            if self.gen_img()? {
                return Ok(());
            }
            if start.elapsed() + self.settings.poll_interval >= timeout {
                return Err(self.err(
                    during,
                    ErrorKind::NoFinger {
                        waited: start.elapsed(),
                    },
                ));
            }
            if !self.pause(cancel, self.settings.poll_interval) {
                return Err(self.err(during, ErrorKind::Cancelled));
            }
        }
    }

    /// Polls GenImg until it reports no finger: `Ok(true)` when the finger was lifted,
    /// `Ok(false)` when it is still there after `timeout` or `cancel` was set.
    pub fn wait_removal(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<bool, ModuleError> {
        let start = Instant::now();
        loop {
            if !self.gen_img()? {
                self.finger_down = false;
                return Ok(true);
            }
            if start.elapsed() + self.settings.poll_interval >= timeout
                || !self.pause(cancel, self.settings.poll_interval)
            {
                self.finger_down = true;
                return Ok(false);
            }
        }
    }

    /// Receives data packets up to and including the end-of-data packet. A data packet with a
    /// bad checksum is reported after the transfer ends, so the stream stays in step.
    fn receive_data(&mut self, limit: usize, during: &str) -> Result<Vec<u8>, ModuleError> {
        let mut data = Vec::with_capacity(limit);
        let mut first_bad: Option<crate::protocol::FrameError> = None;
        loop {
            let p = match self.read_packet(during) {
                Ok(p) => p,
                Err(ModuleError {
                    kind: ErrorKind::Frame(e @ crate::protocol::FrameError::Checksum { .. }),
                    ..
                }) => {
                    first_bad.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match p.pid {
                Pid::Data | Pid::EndData => {}
                other => {
                    let detail = format!(
                        "a {other:?} packet in the middle of a data transfer after {} bytes",
                        data.len()
                    );
                    return Err(self.fail(during, ErrorKind::Unexpected(detail)));
                }
            }
            data.extend_from_slice(&p.payload);
            if data.len() > limit {
                let detail = format!("more than the {limit} bytes this transfer can hold");
                return Err(self.fail(during, ErrorKind::Unexpected(detail)));
            }
            if p.pid == Pid::EndData {
                break;
            }
        }
        if let Some(e) = first_bad {
            return Err(self.fail(during, ErrorKind::Frame(e)));
        }
        Ok(data)
    }

    /// Uploads the image buffer (UpImage) and expands it to 8-bit gray, 256 × 288.
    pub fn up_image(&mut self) -> Result<Vec<u8>, ModuleError> {
        let during = "uploading the image (UpImage)";
        self.command_ok(vec![ins::UP_IMAGE], during)?;
        let packed = self.receive_data(image::PACKED_LEN, during)?;
        if packed.len() != image::PACKED_LEN {
            let detail = format!(
                "the image has {} bytes, expected {} (256 × 288 at 4 bits per pixel)",
                packed.len(),
                image::PACKED_LEN
            );
            return Err(self.fail(during, ErrorKind::Unexpected(detail)));
        }
        Ok(image::unpack(&packed))
    }

    /// One full capture: waits for a finger (after the previous one was lifted), uploads the
    /// image, then waits up to the removal timeout for the finger to be lifted.
    pub fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, ModuleError> {
        let start = Instant::now();
        if self.finger_down && !self.wait_removal(cancel, timeout)? {
            if cancel.is_cancelled() {
                return Err(self.err("waiting for the finger to be lifted", ErrorKind::Cancelled));
            }
            return Err(self.err(
                "waiting for the previous finger to be lifted",
                ErrorKind::NoFinger {
                    waited: start.elapsed(),
                },
            ));
        }
        self.wait_finger(cancel, timeout.saturating_sub(start.elapsed()))?;
        let pixels = self.up_image()?;
        // Graceful: an image is returned even if the finger stays; the next capture first
        // waits for it to be lifted.
        self.wait_removal(cancel, self.settings.removal_timeout)?;
        FingerprintImage::new(
            image::WIDTH as u32,
            image::HEIGHT as u32,
            image::DPI,
            pixels,
        )
        .ok_or_else(|| {
            self.err(
                "building the image",
                ErrorKind::Unexpected("wrong pixel count".into()),
            )
        })
    }

    /// True when the last capture ended with the finger still on the sensor.
    pub fn finger_still_down(&self) -> bool {
        self.finger_down
    }

    /// Turns the image buffer into a character file in char buffer 1 or 2 (Img2Tz).
    pub fn img2tz(&mut self, buffer: u8) -> Result<(), ModuleError> {
        let during = format!("extracting features into char buffer {buffer} (Img2Tz)");
        self.check_buffer(buffer, &during)?;
        self.command_ok(vec![ins::IMG2TZ, buffer], &during)
            .map(drop)
    }

    fn check_buffer(&self, buffer: u8, during: &str) -> Result<(), ModuleError> {
        if buffer == 1 || buffer == 2 {
            return Ok(());
        }
        Err(self.err(
            during,
            ErrorKind::InvalidArgument(format!("char buffer {buffer} does not exist; use 1 or 2")),
        ))
    }

    /// Combines char buffers 1 and 2 into a template (RegModel).
    pub fn reg_model(&mut self) -> Result<(), ModuleError> {
        self.command_ok(
            vec![ins::REG_MODEL],
            "combining the two images into a template (RegModel)",
        )
        .map(drop)
    }

    /// Stores char buffer `buffer` at library page `page` (Store).
    pub fn store(&mut self, buffer: u8, page: u16) -> Result<(), ModuleError> {
        let during = format!("storing char buffer {buffer} at page {page} (Store)");
        self.check_buffer(buffer, &during)?;
        let [hi, lo] = page.to_be_bytes();
        self.command_ok(vec![ins::STORE, buffer, hi, lo], &during)
            .map(drop)
    }

    /// Searches pages `start..start+count` for char buffer `buffer`: `Ok(None)` when nothing
    /// matches.
    pub fn search(
        &mut self,
        buffer: u8,
        start: u16,
        count: u16,
    ) -> Result<Option<SearchHit>, ModuleError> {
        let during = format!(
            "searching pages {start}..{} (Search)",
            u32::from(start) + u32::from(count)
        );
        self.check_buffer(buffer, &during)?;
        let mut payload = vec![ins::SEARCH, buffer];
        payload.extend_from_slice(&start.to_be_bytes());
        payload.extend_from_slice(&count.to_be_bytes());
        let (c, rest) = self.command(payload, &during)?;
        match c {
            Confirmation::Ok if rest.len() >= 4 => Ok(Some(SearchHit {
                page: u16::from_be_bytes([rest[0], rest[1]]),
                score: u16::from_be_bytes([rest[2], rest[3]]),
            })),
            Confirmation::Ok => Err(self.short(&during, 4, rest.len())),
            Confirmation::NotFound => Ok(None),
            other => Err(self.fail(&during, ErrorKind::Rejected(other))),
        }
    }

    /// Compares char buffers 1 and 2 (Match): the score when they match, `None` when not.
    pub fn match_buffers(&mut self) -> Result<Option<u16>, ModuleError> {
        let during = "comparing char buffers 1 and 2 (Match)";
        let (c, rest) = self.command(vec![ins::MATCH], during)?;
        match c {
            Confirmation::Ok if rest.len() >= 2 => Ok(Some(u16::from_be_bytes([rest[0], rest[1]]))),
            Confirmation::Ok => Err(self.short(during, 2, rest.len())),
            Confirmation::NoMatch => Ok(None),
            other => Err(self.fail(during, ErrorKind::Rejected(other))),
        }
    }

    /// Loads the template at library page `page` into char buffer `buffer` (LoadChar).
    pub fn load_char(&mut self, buffer: u8, page: u16) -> Result<(), ModuleError> {
        let during = format!("loading page {page} into char buffer {buffer} (LoadChar)");
        self.check_buffer(buffer, &during)?;
        let [hi, lo] = page.to_be_bytes();
        self.command_ok(vec![ins::LOAD_CHAR, buffer, hi, lo], &during)
            .map(drop)
    }

    /// Deletes `count` templates from page `page` on (DeleteChar).
    pub fn delete(&mut self, page: u16, count: u16) -> Result<(), ModuleError> {
        let during = format!("deleting {count} templates from page {page} (DeleteChar)");
        let mut payload = vec![ins::DELETE_CHAR];
        payload.extend_from_slice(&page.to_be_bytes());
        payload.extend_from_slice(&count.to_be_bytes());
        self.command_ok(payload, &during).map(drop)
    }

    /// Deletes every template (Empty).
    pub fn empty(&mut self) -> Result<(), ModuleError> {
        self.command_ok(vec![ins::EMPTY], "emptying the library (Empty)")
            .map(drop)
    }

    /// Number of stored templates (TemplateNum).
    pub fn template_count(&mut self) -> Result<u16, ModuleError> {
        let during = "counting templates (TemplateNum)";
        let rest = self.command_ok(vec![ins::TEMPLATE_NUM], during)?;
        if rest.len() < 2 {
            return Err(self.short(during, 2, rest.len()));
        }
        Ok(u16::from_be_bytes([rest[0], rest[1]]))
    }

    /// Uploads char buffer `buffer` to the host (UpChar).
    pub fn up_char(&mut self, buffer: u8) -> Result<Vec<u8>, ModuleError> {
        let during = format!("uploading char buffer {buffer} (UpChar)");
        self.check_buffer(buffer, &during)?;
        self.command_ok(vec![ins::UP_CHAR, buffer], &during)?;
        self.receive_data(4096, &during)
    }

    /// Downloads a character file into char buffer `buffer` (DownChar), in data packets of the
    /// module's packet size.
    pub fn down_char(&mut self, buffer: u8, data: &[u8]) -> Result<(), ModuleError> {
        let during = format!(
            "downloading {} bytes into char buffer {buffer} (DownChar)",
            data.len()
        );
        self.check_buffer(buffer, &during)?;
        if data.is_empty() {
            return Err(self.err(
                &during,
                ErrorKind::InvalidArgument("empty character file".into()),
            ));
        }
        self.command_ok(vec![ins::DOWN_CHAR, buffer], &during)?;
        let chunks: Vec<&[u8]> = data.chunks(self.packet_size).collect();
        for (i, c) in chunks.iter().enumerate() {
            let pid = if i + 1 == chunks.len() {
                Pid::EndData
            } else {
                Pid::Data
            };
            self.send(pid, c.to_vec(), &during)?;
        }
        Ok(())
    }

    /// Sets the R503 LED ring (AuraLedConfig). `speed` 0..255 (lower is faster), `count` is
    /// the number of flashes for [`LedMode::Flashing`] (0 = forever).
    pub fn led(
        &mut self,
        mode: LedMode,
        speed: u8,
        color: LedColor,
        count: u8,
    ) -> Result<(), ModuleError> {
        let during = format!("setting the LED ring to {mode:?} {color:?} (AuraLedConfig)");
        self.command_ok(
            vec![ins::AURA_LED, mode as u8, speed, color as u8, count],
            &during,
        )
        .map(drop)
    }
}
