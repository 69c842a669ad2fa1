//! A module emulator speaking the protocol over a pseudo-terminal, with fault injection.
//!
//! It emulates the module's protocol, not its matcher: a "character file" is a deterministic
//! digest of the image in the image buffer, so two captures of the same stored image give the
//! same character file and a search finds a template enrolled from that image, while a
//! different image never matches. See PROTOCOL.md, section "Emulator".

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::image;
use crate::protocol::{
    ins, param, Confirmation, Framer, Packet, Pid, DEFAULT_ADDRESS, DEFAULT_PASSWORD, STARTUP_BYTE,
};

/// Size of an emulated character file (as on R30x modules).
pub const CHAR_FILE_LEN: usize = 512;

/// How the emulated module is set up.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address it answers to.
    pub address: u32,
    /// Its password; when not 0, commands other than VfyPwd are refused with 0x21 until the
    /// password was verified.
    pub password: u32,
    /// Library size (templates).
    pub library_size: u16,
    /// Data packet size code 0..3 (32, 64, 128, 256 bytes).
    pub packet_size_code: u8,
    /// Baud rate control N (baud = N × 9600).
    pub baud_n: u8,
    /// Security level 1..5.
    pub security_level: u8,
    /// GenImg polls answered "no finger" before the first presentation.
    pub absent_polls: u32,
    /// GenImg polls answered "finger imaged" per presentation; after them the finger is lifted
    /// for at least one poll (or `absent_polls`, whichever is more).
    pub present_polls: u32,
    /// Send the power-on byte 0x55 when started.
    pub startup_byte: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS,
            password: DEFAULT_PASSWORD,
            library_size: 200,
            packet_size_code: 2,
            baud_n: 6,
            security_level: 3,
            absent_polls: 0,
            present_polls: 1,
            startup_byte: true,
        }
    }
}

/// A fault to inject. Faults are queued and each applies once, to the next answer it fits:
/// upload faults wait for the next UpImage, the others apply to the next answer of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next answer is not sent at all.
    Silence,
    /// The next acknowledgement is sent with a wrong checksum.
    CorruptChecksum,
    /// These bytes are sent before the next answer.
    Garbage(Vec<u8>),
    /// The next image upload sends this many data packets, then half of the next, then stops.
    TruncateUpload {
        /// Complete data packets sent before the cut one.
        after_packets: usize,
    },
    /// The data packet with this index of the next image upload has a wrong checksum (the rest
    /// of the upload is sent normally).
    CorruptUploadPacket {
        /// Index of the damaged data packet.
        index: usize,
    },
    /// The next image upload sends this many data packets, then the module restarts: it
    /// forgets the verified password and its buffers and, if `startup_byte`, sends 0x55.
    ResetDuringUpload {
        /// Data packets sent before the restart.
        after_packets: usize,
        /// Send the power-on byte after the restart.
        startup_byte: bool,
    },
}

impl Fault {
    fn is_upload(&self) -> bool {
        matches!(
            self,
            Self::TruncateUpload { .. }
                | Self::CorruptUploadPacket { .. }
                | Self::ResetDuringUpload { .. }
        )
    }
}

/// The emulated module: buffers, library, finger script and pending faults. Feed it packets
/// with [`ModuleState::handle`]; it returns the bytes to send.
pub struct ModuleState {
    cfg: EmulatorConfig,
    image: Vec<u8>,
    /// Fingers presented in turn: each new placement images the next one (cycling), so an
    /// enrolment of several captures sees different impressions, as from a real finger.
    presentations: Vec<Vec<u8>>,
    presented: usize,
    finger_down: bool,
    image_buffer: Option<Vec<u8>>,
    char_buffers: [Option<Vec<u8>>; 2],
    library: BTreeMap<u16, Vec<u8>>,
    verified: bool,
    faults: VecDeque<Fault>,
    manual_finger: Option<bool>,
    absent_left: u32,
    present_left: u32,
    receiving: Option<(usize, Vec<u8>)>,
    led: Option<[u8; 4]>,
    commands: Vec<u8>,
    gen_img_polls: u64,
}

impl ModuleState {
    /// A module holding `pixels` (256 × 288, 8-bit gray) as the finger it images.
    pub fn new(cfg: EmulatorConfig, pixels: Vec<u8>) -> Self {
        let absent_left = cfg.absent_polls;
        let present_left = cfg.present_polls.max(1);
        Self {
            cfg,
            image: pixels,
            presentations: Vec::new(),
            presented: 0,
            finger_down: false,
            image_buffer: None,
            char_buffers: [None, None],
            library: BTreeMap::new(),
            verified: false,
            faults: VecDeque::new(),
            manual_finger: None,
            absent_left,
            present_left,
            receiving: None,
            led: None,
            commands: Vec::new(),
            gen_img_polls: 0,
        }
    }

    fn packet_size(&self) -> usize {
        32usize << self.cfg.packet_size_code.min(3)
    }

    fn take_fault(&mut self, upload: bool) -> Option<Fault> {
        match self.faults.front() {
            Some(f) if f.is_upload() == upload => self.faults.pop_front(),
            _ => None,
        }
    }

    /// A module whose finger placements image `impressions` in turn (256 × 288, 8-bit gray
    /// each; at least one).
    pub fn with_presentations(cfg: EmulatorConfig, impressions: Vec<Vec<u8>>) -> Self {
        let first = impressions.first().cloned().unwrap_or_default();
        let mut state = Self::new(cfg, first);
        state.presentations = impressions;
        state
    }

    fn finger_present(&mut self) -> bool {
        let present = self.finger_script();
        if present && !self.finger_down && !self.presentations.is_empty() {
            self.image = self.presentations[self.presented % self.presentations.len()].clone();
            self.presented += 1;
        }
        self.finger_down = present;
        present
    }

    fn finger_script(&mut self) -> bool {
        self.gen_img_polls += 1;
        if let Some(f) = self.manual_finger {
            return f;
        }
        if self.absent_left > 0 {
            self.absent_left -= 1;
            return false;
        }
        self.present_left = self.present_left.saturating_sub(1);
        if self.present_left == 0 {
            self.absent_left = self.cfg.absent_polls.max(1);
            self.present_left = self.cfg.present_polls.max(1);
        }
        true
    }

    fn restart(&mut self) {
        self.verified = false;
        self.image_buffer = None;
        self.char_buffers = [None, None];
        self.receiving = None;
    }

    /// Digest-based character file of a packed image: FNV-1a over the image, stretched with
    /// splitmix64. Not a fingerprint feature set.
    fn character_file(packed: &[u8]) -> Vec<u8> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in packed {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut out = Vec::with_capacity(CHAR_FILE_LEN);
        out.extend_from_slice(b"APG-EMU-CHAR");
        while out.len() < CHAR_FILE_LEN {
            h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            out.extend_from_slice(&z.to_be_bytes());
        }
        out.truncate(CHAR_FILE_LEN);
        out
    }

    fn ack(&self, code: Confirmation, rest: &[u8]) -> Packet {
        Packet::ack(self.cfg.address, code.byte(), rest)
    }

    fn data_packets(&self, data: &[u8]) -> Vec<Packet> {
        let chunks: Vec<&[u8]> = data.chunks(self.packet_size()).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| Packet {
                address: self.cfg.address,
                pid: if i + 1 == chunks.len() {
                    Pid::EndData
                } else {
                    Pid::Data
                },
                payload: c.to_vec(),
            })
            .collect()
    }

    /// Answers one received packet: the byte chunks to send, in order.
    pub fn handle(&mut self, p: Packet) -> Vec<Vec<u8>> {
        if p.address != self.cfg.address {
            return vec![]; // real modules ignore packets for another address
        }
        if let Some((buffer, mut data)) = self.receiving.take() {
            if matches!(p.pid, Pid::Data | Pid::EndData) {
                data.extend_from_slice(&p.payload);
                if p.pid == Pid::EndData {
                    self.char_buffers[buffer] = Some(data);
                } else {
                    self.receiving = Some((buffer, data));
                }
                return vec![];
            }
        }
        if p.pid != Pid::Command || p.payload.is_empty() {
            return vec![];
        }
        let code = p.payload[0];
        self.commands.push(code);
        let (ack, data) = self.execute(code, &p.payload[1..]);
        self.send(ack, data, code == ins::UP_IMAGE)
    }

    fn send(&mut self, ack: Packet, data: Vec<Packet>, upload: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self.take_fault(false) {
            Some(Fault::Silence) => return out,
            Some(Fault::Garbage(g)) => out.push(g),
            Some(Fault::CorruptChecksum) => {
                let mut b = ack.encode();
                let n = b.len();
                b[n - 1] = b[n - 1].wrapping_add(1);
                out.push(b);
                out.extend(data.iter().map(Packet::encode));
                return out;
            }
            _ => {}
        }
        out.push(ack.encode());
        let fault = if upload && !data.is_empty() {
            self.take_fault(true)
        } else {
            None
        };
        for (i, d) in data.iter().enumerate() {
            match &fault {
                Some(Fault::TruncateUpload { after_packets }) if i == *after_packets => {
                    let b = d.encode();
                    out.push(b[..b.len() / 2].to_vec());
                    return out;
                }
                Some(Fault::ResetDuringUpload {
                    after_packets,
                    startup_byte,
                }) if i == *after_packets => {
                    self.restart();
                    if *startup_byte {
                        out.push(vec![STARTUP_BYTE]);
                    }
                    return out;
                }
                Some(Fault::CorruptUploadPacket { index }) if i == *index => {
                    let mut b = d.encode();
                    let n = b.len();
                    b[n - 2] ^= 0x40;
                    out.push(b);
                }
                _ => out.push(d.encode()),
            }
        }
        out
    }

    fn execute(&mut self, code: u8, args: &[u8]) -> (Packet, Vec<Packet>) {
        use Confirmation as C;
        let ok = |s: &Self, rest: &[u8]| (s.ack(C::Ok, rest), vec![]);
        let refuse = |s: &Self, c: C| (s.ack(c, &[]), vec![]);
        let word = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*args.get(i)?, *args.get(i + 1)?]))
        };
        let buffer_index = |b: Option<&u8>| match b {
            Some(1) => Some(0usize),
            Some(2) => Some(1),
            _ => None,
        };
        if code == ins::VFY_PWD {
            let Some(pw) = args.get(..4) else {
                return refuse(self, C::PacketError);
            };
            if u32::from_be_bytes([pw[0], pw[1], pw[2], pw[3]]) == self.cfg.password {
                self.verified = true;
                return ok(self, &[]);
            }
            return refuse(self, C::WrongPassword);
        }
        if self.cfg.password != DEFAULT_PASSWORD && !self.verified {
            return refuse(self, C::PasswordRequired);
        }
        match code {
            ins::GEN_IMG => {
                if self.finger_present() {
                    self.image_buffer = Some(image::pack(&self.image));
                    ok(self, &[])
                } else {
                    refuse(self, C::NoFinger)
                }
            }
            ins::UP_IMAGE => match self.image_buffer.clone() {
                Some(img) => (self.ack(C::Ok, &[]), self.data_packets(&img)),
                None => refuse(self, C::UploadImage),
            },
            ins::IMG2TZ => {
                let Some(b) = buffer_index(args.first()) else {
                    return refuse(self, C::PacketError);
                };
                match &self.image_buffer {
                    Some(img) => {
                        self.char_buffers[b] = Some(Self::character_file(img));
                        ok(self, &[])
                    }
                    None => refuse(self, C::NoImage),
                }
            }
            ins::REG_MODEL => match &self.char_buffers {
                [Some(a), Some(b)] if a == b => {
                    self.char_buffers[1] = Some(a.clone());
                    ok(self, &[])
                }
                _ => refuse(self, C::EnrollMismatch),
            },
            ins::MATCH => match &self.char_buffers {
                [Some(a), Some(b)] if a == b => ok(self, &[0, 100]),
                _ => refuse(self, C::NoMatch),
            },
            ins::STORE => {
                let (Some(b), Some(page)) = (buffer_index(args.first()), word(1)) else {
                    return refuse(self, C::PacketError);
                };
                if page >= self.cfg.library_size {
                    return refuse(self, C::BadLocation);
                }
                match self.char_buffers[b].clone() {
                    Some(t) => {
                        self.library.insert(page, t);
                        ok(self, &[])
                    }
                    None => refuse(self, C::ReadTemplate),
                }
            }
            ins::SEARCH => {
                let (Some(b), Some(start), Some(n)) =
                    (buffer_index(args.first()), word(1), word(3))
                else {
                    return refuse(self, C::PacketError);
                };
                let Some(probe) = self.char_buffers[b].clone() else {
                    return refuse(self, C::ReadTemplate);
                };
                let end = (u32::from(start) + u32::from(n)).min(u32::from(self.cfg.library_size));
                let hit = self
                    .library
                    .range(start..)
                    .take_while(|(p, _)| u32::from(**p) < end)
                    .find(|(_, t)| **t == probe)
                    .map(|(p, _)| *p);
                match hit {
                    Some(page) => {
                        let [h, l] = page.to_be_bytes();
                        ok(self, &[h, l, 0, 100])
                    }
                    None => refuse(self, C::NotFound),
                }
            }
            ins::DELETE_CHAR => {
                let (Some(page), Some(n)) = (word(0), word(2)) else {
                    return refuse(self, C::PacketError);
                };
                if u32::from(page) + u32::from(n) > u32::from(self.cfg.library_size) || n == 0 {
                    return refuse(self, C::Delete);
                }
                for p in page..page + n {
                    self.library.remove(&p);
                }
                ok(self, &[])
            }
            ins::EMPTY => {
                self.library.clear();
                ok(self, &[])
            }
            ins::TEMPLATE_NUM => {
                let n = self.library.len() as u16;
                ok(self, &n.to_be_bytes())
            }
            ins::LOAD_CHAR => {
                let (Some(b), Some(page)) = (buffer_index(args.first()), word(1)) else {
                    return refuse(self, C::PacketError);
                };
                match self.library.get(&page).cloned() {
                    Some(t) => {
                        self.char_buffers[b] = Some(t);
                        ok(self, &[])
                    }
                    None => refuse(self, C::ReadTemplate),
                }
            }
            ins::UP_CHAR => {
                let Some(b) = buffer_index(args.first()) else {
                    return refuse(self, C::PacketError);
                };
                match self.char_buffers[b].clone() {
                    Some(t) => (self.ack(C::Ok, &[]), self.data_packets(&t)),
                    None => refuse(self, C::UploadTemplate),
                }
            }
            ins::DOWN_CHAR => {
                let Some(b) = buffer_index(args.first()) else {
                    return refuse(self, C::PacketError);
                };
                self.receiving = Some((b, Vec::new()));
                ok(self, &[])
            }
            ins::READ_SYS_PARA => {
                let mut p = Vec::with_capacity(16);
                let status: u16 =
                    (u16::from(self.verified) << 2) | (u16::from(self.image_buffer.is_some()) << 3);
                p.extend_from_slice(&status.to_be_bytes());
                p.extend_from_slice(&0u16.to_be_bytes());
                p.extend_from_slice(&self.cfg.library_size.to_be_bytes());
                p.extend_from_slice(&u16::from(self.cfg.security_level).to_be_bytes());
                p.extend_from_slice(&self.cfg.address.to_be_bytes());
                p.extend_from_slice(&u16::from(self.cfg.packet_size_code).to_be_bytes());
                p.extend_from_slice(&u16::from(self.cfg.baud_n).to_be_bytes());
                ok(self, &p)
            }
            ins::SET_SYS_PARA => {
                let (Some(&n), Some(&v)) = (args.first(), args.get(1)) else {
                    return refuse(self, C::PacketError);
                };
                match (n, v) {
                    (param::BAUD, 1..=12) => self.cfg.baud_n = v,
                    (param::SECURITY, 1..=5) => self.cfg.security_level = v,
                    (param::PACKET_SIZE, 0..=3) => self.cfg.packet_size_code = v,
                    (param::BAUD | param::SECURITY | param::PACKET_SIZE, _) => {
                        return refuse(self, C::BadRegisterValue)
                    }
                    _ => return refuse(self, C::BadRegister),
                }
                ok(self, &[])
            }
            ins::AURA_LED => {
                let Some(a) = args.get(..4) else {
                    return refuse(self, C::PacketError);
                };
                if !(1..=6).contains(&a[0]) || !(1..=7).contains(&a[2]) {
                    return refuse(self, C::BadRegisterValue);
                }
                self.led = Some([a[0], a[1], a[2], a[3]]);
                ok(self, &[])
            }
            _ => refuse(self, C::PacketError),
        }
    }
}

/// Reads an image file for the emulator: PNG (gray, gray+alpha, RGB or RGBA, 8 or 16 bits) or
/// binary PGM (P5, maxval up to 255), converted to gray and centred/cropped to 256 × 288.
pub fn load_image(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (w, h, gray) = if bytes.starts_with(b"P5") {
        decode_pgm(&bytes)
    } else {
        decode_png(&bytes)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(image::fit(w, h, &gray))
}

fn decode_png(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    let mut d = png::Decoder::new(bytes);
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d
        .read_info()
        .map_err(|e| format!("not a readable PNG: {e}"))?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG frame: {e}"))?;
    let ch = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|c| match ch {
            1 | 2 => c[0],
            _ => ((u16::from(c[0]) * 77 + u16::from(c[1]) * 150 + u16::from(c[2]) * 29) >> 8) as u8,
        })
        .collect();
    Ok((info.width as usize, info.height as usize, px))
}

fn decode_pgm(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    // Header: "P5", width, height, maxval, separated by whitespace (comments start with #),
    // then one whitespace byte and the pixels.
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: usize = std::str::from_utf8(&bytes[start..i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("malformed PGM header")?;
        fields.push(n);
    }
    let (w, h, max) = (fields[0], fields[1], fields[2]);
    if max == 0 || max > 255 {
        return Err(format!("PGM maxval {max} is not supported (use 1..255)"));
    }
    let data = bytes
        .get(i + 1..i + 1 + w * h)
        .ok_or("PGM pixel data is short")?;
    let px = data
        .iter()
        .map(|&v| (usize::from(v) * 255 / max) as u8)
        .collect();
    Ok((w, h, px))
}

/// An emulated module on a pseudo-terminal: point a driver at [`PtyEmulator::path`].
/// The emulator stops when dropped.
pub struct PtyEmulator {
    path: PathBuf,
    state: Arc<Mutex<ModuleState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PtyEmulator {
    /// Opens a PTY pair and serves the module on its master side.
    pub fn start(cfg: EmulatorConfig, pixels: Vec<u8>) -> io::Result<Self> {
        Self::serve_state(ModuleState::new(cfg, pixels))
    }

    /// Like [`PtyEmulator::start`], imaging `impressions` in turn, one per finger placement.
    pub fn start_with_presentations(
        cfg: EmulatorConfig,
        impressions: Vec<Vec<u8>>,
    ) -> io::Result<Self> {
        if impressions.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the emulator needs at least one impression",
            ));
        }
        Self::serve_state(ModuleState::with_presentations(cfg, impressions))
    }

    fn serve_state(module: ModuleState) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
        let mut t = tcgetattr(&pty.slave).map_err(io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(&pty.slave).map_err(io::Error::from)?;
        fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&pty.master),
            FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        let startup = module.cfg.startup_byte;
        let state = Arc::new(Mutex::new(module));
        let stop = Arc::new(AtomicBool::new(false));
        let master = File::from(pty.master);
        // Keep the slave open so that the master never sees a hang-up between two openings
        // of the port by the driver.
        let slave = File::from(pty.slave);
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                let _slave = slave;
                serve(master, &state, &stop, startup);
            })
        };
        Ok(Self {
            path,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The slave side: the "serial port" to open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, ModuleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a fault.
    pub fn inject(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    /// Faults queued and not applied yet.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Forces the finger on (`Some(true)`), off (`Some(false)`), or back to the script (`None`).
    pub fn set_finger(&self, present: Option<bool>) {
        self.lock().manual_finger = present;
    }

    /// The next presentation arrives after `polls` GenImg polls answered "no finger".
    pub fn finger_after(&self, polls: u32) {
        let mut s = self.lock();
        s.manual_finger = None;
        s.absent_left = polls;
        s.present_left = s.cfg.present_polls.max(1);
    }

    /// Replaces the image the module takes (256 × 288, 8-bit gray).
    pub fn set_image(&self, pixels: Vec<u8>) {
        self.lock().image = pixels;
    }

    /// Templates stored in the library.
    pub fn template_count(&self) -> usize {
        self.lock().library.len()
    }

    /// Last LED ring setting (control, speed, colour, count).
    pub fn led(&self) -> Option<[u8; 4]> {
        self.lock().led
    }

    /// Baud rate the module is set to.
    pub fn baud(&self) -> u32 {
        u32::from(self.lock().cfg.baud_n) * 9600
    }

    /// Instruction codes received so far, in order.
    pub fn commands(&self) -> Vec<u8> {
        self.lock().commands.clone()
    }

    /// Number of GenImg polls answered so far.
    pub fn gen_img_polls(&self) -> u64 {
        self.lock().gen_img_polls
    }
}

impl Drop for PtyEmulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait(f: &File, flags: nix::poll::PollFlags) {
    use nix::poll::{poll, PollFd, PollTimeout};
    let mut fds = [PollFd::new(f.as_fd(), flags)];
    let _ = poll(&mut fds, PollTimeout::from(20u8));
}

fn write_all(master: &mut File, mut bytes: &[u8], stop: &AtomicBool) -> bool {
    while !bytes.is_empty() {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        match master.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(master, nix::poll::PollFlags::POLLOUT)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn serve(mut master: File, state: &Mutex<ModuleState>, stop: &AtomicBool, startup: bool) {
    if startup && !write_all(&mut master, &[STARTUP_BYTE], stop) {
        return;
    }
    let mut framer = Framer::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match master.read(&mut buf) {
            Ok(0) => wait(&master, nix::poll::PollFlags::POLLIN),
            Ok(n) => framer.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(&master, nix::poll::PollFlags::POLLIN);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EIO: no process has the slave open; keep waiting for the next opener.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        }
        loop {
            let out = match framer.next_packet() {
                Ok(Some(p)) => state.lock().unwrap_or_else(|e| e.into_inner()).handle(p),
                Ok(None) => break,
                // A real module answers a packet it could not receive with code 0x01.
                Err(_) => {
                    let s = state.lock().unwrap_or_else(|e| e.into_inner());
                    vec![s.ack(Confirmation::PacketError, &[]).encode()]
                }
            };
            for chunk in out {
                if !write_all(&mut master, &chunk, stop) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &mut ModuleState, payload: &[u8]) -> Vec<Packet> {
        let out = s.handle(Packet::command(DEFAULT_ADDRESS, payload.to_vec()));
        let mut f = Framer::new();
        for c in &out {
            f.push(c);
        }
        let mut v = vec![];
        while let Ok(Some(p)) = f.next_packet() {
            v.push(p);
        }
        v
    }

    #[test]
    fn password_is_required_before_work_when_one_is_set() {
        let mut s = ModuleState::new(
            EmulatorConfig {
                password: 9,
                ..EmulatorConfig::default()
            },
            image::synthetic_ridges(1),
        );
        assert_eq!(cmd(&mut s, &[ins::TEMPLATE_NUM])[0].payload[0], 0x21);
        assert_eq!(cmd(&mut s, &[ins::VFY_PWD, 0, 0, 0, 8])[0].payload[0], 0x13);
        assert_eq!(cmd(&mut s, &[ins::VFY_PWD, 0, 0, 0, 9])[0].payload[0], 0x00);
        assert_eq!(cmd(&mut s, &[ins::TEMPLATE_NUM])[0].payload, vec![0, 0, 0]);
    }

    #[test]
    fn packets_for_another_address_are_ignored() {
        let mut s = ModuleState::new(EmulatorConfig::default(), image::synthetic_ridges(1));
        assert!(s
            .handle(Packet::command(0x1234, vec![ins::TEMPLATE_NUM]))
            .is_empty());
    }

    #[test]
    fn upload_is_an_ack_then_data_packets_of_the_packet_size() {
        let mut s = ModuleState::new(EmulatorConfig::default(), image::synthetic_ridges(1));
        assert_eq!(
            cmd(&mut s, &[ins::UP_IMAGE])[0].payload[0],
            0x0F,
            "no image yet"
        );
        assert_eq!(cmd(&mut s, &[ins::GEN_IMG])[0].payload[0], 0x00);
        let ps = cmd(&mut s, &[ins::UP_IMAGE]);
        assert_eq!(ps.len(), 1 + image::PACKED_LEN / 128);
        assert!(ps[1..ps.len() - 1]
            .iter()
            .all(|p| p.pid == Pid::Data && p.payload.len() == 128));
        assert_eq!(ps.last().map(|p| p.pid), Some(Pid::EndData));
    }

    #[test]
    fn the_finger_script_lifts_between_presentations() {
        let mut s = ModuleState::new(
            EmulatorConfig {
                absent_polls: 2,
                ..EmulatorConfig::default()
            },
            image::synthetic_ridges(1),
        );
        let seen: Vec<bool> = (0..7).map(|_| s.finger_present()).collect();
        assert_eq!(seen, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn each_placement_images_the_next_impression() {
        let impressions: Vec<Vec<u8>> = (1..=3).map(image::synthetic_ridges).collect();
        let mut s = ModuleState::with_presentations(
            EmulatorConfig {
                absent_polls: 1,
                present_polls: 2,
                ..EmulatorConfig::default()
            },
            impressions.clone(),
        );
        let mut imaged = Vec::new();
        for _ in 0..12 {
            if s.finger_present() {
                imaged.push(s.image.clone());
            }
        }
        // Two polls per placement see the same impression; placements go 1, 2, 3, 1.
        let order: Vec<usize> = imaged
            .iter()
            .map(|i| impressions.iter().position(|x| x == i).unwrap())
            .collect();
        assert_eq!(order, [0, 0, 1, 1, 2, 2, 0, 0]);
    }

    #[test]
    fn png_and_pgm_images_load_and_fit() {
        let dir = std::env::temp_dir().join(format!("apg-fp-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (300u32, 200u32);
        let px: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
        let png_path = dir.join("f.png");
        {
            let f = File::create(&png_path).unwrap();
            let mut e = png::Encoder::new(f, w, h);
            e.set_color(png::ColorType::Grayscale);
            e.set_depth(png::BitDepth::Eight);
            e.write_header().unwrap().write_image_data(&px).unwrap();
        }
        let mut pgm = format!("P5\n# test\n{w} {h}\n255\n").into_bytes();
        pgm.extend_from_slice(&px);
        let pgm_path = dir.join("f.pgm");
        std::fs::write(&pgm_path, &pgm).unwrap();
        let a = load_image(&png_path).unwrap();
        let b = load_image(&pgm_path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, image::fit(w as usize, h as usize, &px));
        assert!(load_image(&dir.join("missing.png"))
            .unwrap_err()
            .contains("missing.png"));
        std::fs::write(dir.join("bad.png"), b"not an image").unwrap();
        assert!(load_image(&dir.join("bad.png")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
