//! Packet codec of the ZhianTec/Synochip module protocol: encoding, a resynchronising framer,
//! instruction codes and confirmation codes. See PROTOCOL.md in this crate.

use std::fmt;

/// First two bytes of every packet.
pub const HEADER: [u8; 2] = [0xEF, 0x01];
/// Address every module answers to out of the factory.
pub const DEFAULT_ADDRESS: u32 = 0xFFFF_FFFF;
/// Password every module has out of the factory.
pub const DEFAULT_PASSWORD: u32 = 0;
/// Byte a module sends once after power-on, when it is ready for commands.
pub const STARTUP_BYTE: u8 = 0x55;
/// Largest payload the framer accepts: the biggest data packet size (256) is the biggest
/// payload any module sends.
pub const MAX_PAYLOAD: usize = 256;
/// Bytes before the payload: header, address, packet id, length.
pub const PREFIX_LEN: usize = 9;

/// Instruction codes (first payload byte of a command packet).
pub mod ins {
    /// Take an image into the image buffer (GenImg).
    pub const GEN_IMG: u8 = 0x01;
    /// Turn the image buffer into a character file in char buffer 1 or 2 (Img2Tz / GenChar).
    pub const IMG2TZ: u8 = 0x02;
    /// Compare char buffers 1 and 2.
    pub const MATCH: u8 = 0x03;
    /// Search the library for the char buffer.
    pub const SEARCH: u8 = 0x04;
    /// Combine char buffers 1 and 2 into a template (RegModel).
    pub const REG_MODEL: u8 = 0x05;
    /// Store a char buffer in the library (Store).
    pub const STORE: u8 = 0x06;
    /// Load a library template into a char buffer (LoadChar).
    pub const LOAD_CHAR: u8 = 0x07;
    /// Upload a char buffer to the host (UpChar).
    pub const UP_CHAR: u8 = 0x08;
    /// Download a character file from the host into a char buffer (DownChar).
    pub const DOWN_CHAR: u8 = 0x09;
    /// Upload the image buffer to the host (UpImage).
    pub const UP_IMAGE: u8 = 0x0A;
    /// Delete templates from the library (DeleteChar).
    pub const DELETE_CHAR: u8 = 0x0C;
    /// Delete every template (Empty).
    pub const EMPTY: u8 = 0x0D;
    /// Write one system parameter (SetSysPara).
    pub const SET_SYS_PARA: u8 = 0x0E;
    /// Read the 16 bytes of system parameters (ReadSysPara).
    pub const READ_SYS_PARA: u8 = 0x0F;
    /// Verify the 32-bit password (VfyPwd).
    pub const VFY_PWD: u8 = 0x13;
    /// Number of stored templates (TemplateNum).
    pub const TEMPLATE_NUM: u8 = 0x1D;
    /// R503 LED ring control (AuraLedConfig).
    pub const AURA_LED: u8 = 0x35;
}

/// Parameter numbers of SetSysPara.
pub mod param {
    /// Baud rate control N (baud = N × 9600).
    pub const BAUD: u8 = 4;
    /// Security level 1..5.
    pub const SECURITY: u8 = 5;
    /// Data packet size code 0..3 (32, 64, 128, 256 bytes).
    pub const PACKET_SIZE: u8 = 6;
}

/// Packet identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// Host to module: instruction.
    Command,
    /// Either way: data packet with more to follow.
    Data,
    /// Module to host: acknowledgement with a confirmation code.
    Ack,
    /// Either way: last data packet.
    EndData,
}

impl Pid {
    /// Wire value.
    pub fn byte(self) -> u8 {
        match self {
            Self::Command => 0x01,
            Self::Data => 0x02,
            Self::Ack => 0x07,
            Self::EndData => 0x08,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Command),
            0x02 => Some(Self::Data),
            0x07 => Some(Self::Ack),
            0x08 => Some(Self::EndData),
            _ => None,
        }
    }
}

/// One packet: address, identifier and payload (without length or checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Module address.
    pub address: u32,
    /// Packet identifier.
    pub pid: Pid,
    /// Instruction and parameters, confirmation code and results, or data.
    pub payload: Vec<u8>,
}

impl Packet {
    /// A command packet.
    pub fn command(address: u32, payload: Vec<u8>) -> Self {
        Self {
            address,
            pid: Pid::Command,
            payload,
        }
    }

    /// An acknowledgement packet.
    pub fn ack(address: u32, code: u8, rest: &[u8]) -> Self {
        let mut payload = vec![code];
        payload.extend_from_slice(rest);
        Self {
            address,
            pid: Pid::Ack,
            payload,
        }
    }

    /// Bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let len = (self.payload.len() + 2) as u16;
        let mut out = Vec::with_capacity(PREFIX_LEN + self.payload.len() + 2);
        out.extend_from_slice(&HEADER);
        out.extend_from_slice(&self.address.to_be_bytes());
        out.push(self.pid.byte());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        let sum = checksum(self.pid.byte(), len, &self.payload);
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }
}

/// The 16-bit checksum: packet id + both length bytes + every payload byte, modulo 65536.
pub fn checksum(pid: u8, len: u16, payload: &[u8]) -> u16 {
    let [hi, lo] = len.to_be_bytes();
    payload.iter().fold(
        u16::from(pid)
            .wrapping_add(u16::from(hi))
            .wrapping_add(u16::from(lo)),
        |s, &b| s.wrapping_add(u16::from(b)),
    )
}

/// Why bytes could not be framed into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The checksum field does not match the packet.
    #[error("checksum mismatch (packet says {got:#06x}, bytes sum to {want:#06x}): the line is noisy or the baud rate is wrong")]
    Checksum {
        /// Checksum in the packet.
        got: u16,
        /// Checksum of the received bytes.
        want: u16,
    },
    /// The length field is too small to hold the checksum.
    #[error("length field {0} is shorter than the 2-byte checksum")]
    TooShort(u16),
    /// The length field is larger than any packet a module sends.
    #[error("length field {0} exceeds the largest packet ({max} bytes of payload)", max = MAX_PAYLOAD)]
    Oversized(u16),
    /// The packet identifier is not one of 0x01, 0x02, 0x07, 0x08.
    #[error("unknown packet identifier {0:#04x}")]
    UnknownPid(u8),
    /// The stream stopped in the middle of a packet.
    #[error("packet cut short: {got} of {want} bytes arrived (the module stopped mid-packet: a restart, a loose cable or a baud rate mismatch)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the length field announced.
        want: usize,
    },
}

/// Splits a byte stream into packets.
///
/// Bytes before a header are skipped (and counted), so noise, a power-on byte or the tail of
/// an interrupted packet never stop the next packet from being found. A malformed packet is
/// reported once and dropped; the framer then looks for the next header.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    skipped: usize,
    saw_startup: bool,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Forgets everything buffered (after draining the port for a resync).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipped = 0;
        self.saw_startup = false;
    }

    /// Forgets the skip count and the power-on byte mark, keeping buffered bytes (at the start
    /// of each exchange).
    pub fn clear_marks(&mut self) {
        self.skipped = 0;
        self.saw_startup = false;
    }

    /// Bytes held that do not form a complete packet yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Bytes skipped as garbage since the framer was created or cleared.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// True when a skipped byte was the power-on byte 0x55 standing alone, as a module sends it
    /// after a restart (since the framer was created or cleared).
    pub fn saw_startup_byte(&self) -> bool {
        self.saw_startup
    }

    /// Length the packet at the front of the buffer announces, if its prefix has arrived.
    pub fn expected_len(&self) -> Option<usize> {
        (self.buf.len() >= PREFIX_LEN && self.buf.starts_with(&HEADER))
            .then(|| PREFIX_LEN + usize::from(u16::from_be_bytes([self.buf[7], self.buf[8]])))
    }

    fn skip(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        if self.buf[..n].contains(&STARTUP_BYTE) {
            self.saw_startup = true;
        }
        self.skipped += n;
        self.buf.drain(..n);
    }

    /// The next complete packet, `Ok(None)` when more bytes are needed, or the reason the
    /// packet at the front is malformed (it is dropped, so calling again goes on).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, FrameError> {
        // Skip to the first header; keep a trailing 0xEF that may start one.
        let start = self
            .buf
            .windows(2)
            .position(|w| w == HEADER)
            .unwrap_or_else(|| {
                if self.buf.last() == Some(&HEADER[0]) {
                    self.buf.len() - 1
                } else {
                    self.buf.len()
                }
            });
        self.skip(start);
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let address = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        let pid_byte = self.buf[6];
        let len = u16::from_be_bytes([self.buf[7], self.buf[8]]);
        let Some(pid) = Pid::from_byte(pid_byte) else {
            self.skip(2);
            return Err(FrameError::UnknownPid(pid_byte));
        };
        if len < 2 {
            self.skip(2);
            return Err(FrameError::TooShort(len));
        }
        if usize::from(len) - 2 > MAX_PAYLOAD {
            self.skip(2);
            return Err(FrameError::Oversized(len));
        }
        let total = PREFIX_LEN + usize::from(len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[PREFIX_LEN..total - 2].to_vec();
        let got = u16::from_be_bytes([self.buf[total - 2], self.buf[total - 1]]);
        let want = checksum(pid_byte, len, &payload);
        self.buf.drain(..total);
        if got != want {
            return Err(FrameError::Checksum { got, want });
        }
        Ok(Some(Packet {
            address,
            pid,
            payload,
        }))
    }

    /// The error to report when the stream ends or goes silent: `Truncated` if a packet had
    /// started, `None` if the buffer holds only garbage or nothing.
    pub fn truncation(&self) -> Option<FrameError> {
        if !self.buf.starts_with(&HEADER) {
            return None;
        }
        let want = self.expected_len().unwrap_or(PREFIX_LEN + 2);
        Some(FrameError::Truncated {
            got: self.buf.len(),
            want,
        })
    }
}

/// Confirmation code of an acknowledgement packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confirmation {
    /// 0x00: done.
    Ok,
    /// 0x01: the module could not receive the packet.
    PacketError,
    /// 0x02: no finger on the sensor.
    NoFinger,
    /// 0x03: the image could not be taken.
    ImageFail,
    /// 0x06: the image is too disordered to extract features.
    ImageMessy,
    /// 0x07: too few feature points in the image.
    FeatureFail,
    /// 0x08: the two fingers do not match.
    NoMatch,
    /// 0x09: no template in the library matches.
    NotFound,
    /// 0x0A: the char buffers could not be combined into a template.
    EnrollMismatch,
    /// 0x0B: the page id is beyond the library.
    BadLocation,
    /// 0x0C: the template could not be read or is invalid.
    ReadTemplate,
    /// 0x0D: the template could not be uploaded.
    UploadTemplate,
    /// 0x0E: the module could not receive the data packets that follow.
    ReceiveData,
    /// 0x0F: the image could not be uploaded.
    UploadImage,
    /// 0x10: the template could not be deleted.
    Delete,
    /// 0x11: the library could not be cleared.
    ClearLibrary,
    /// 0x13: wrong password.
    WrongPassword,
    /// 0x15: no valid image in the image buffer.
    NoImage,
    /// 0x18: writing the flash failed.
    FlashWrite,
    /// 0x1A: invalid register (parameter) number.
    BadRegister,
    /// 0x1B: invalid register content.
    BadRegisterValue,
    /// 0x1C: wrong notepad page.
    BadNotepadPage,
    /// 0x1D: the communication port failed.
    PortFail,
    /// 0x20: the address does not match.
    AddressMismatch,
    /// 0x21: the password must be verified first.
    PasswordRequired,
    /// Any other code.
    Other(u8),
}

impl Confirmation {
    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Ok,
            0x01 => Self::PacketError,
            0x02 => Self::NoFinger,
            0x03 => Self::ImageFail,
            0x06 => Self::ImageMessy,
            0x07 => Self::FeatureFail,
            0x08 => Self::NoMatch,
            0x09 => Self::NotFound,
            0x0A => Self::EnrollMismatch,
            0x0B => Self::BadLocation,
            0x0C => Self::ReadTemplate,
            0x0D => Self::UploadTemplate,
            0x0E => Self::ReceiveData,
            0x0F => Self::UploadImage,
            0x10 => Self::Delete,
            0x11 => Self::ClearLibrary,
            0x13 => Self::WrongPassword,
            0x15 => Self::NoImage,
            0x18 => Self::FlashWrite,
            0x1A => Self::BadRegister,
            0x1B => Self::BadRegisterValue,
            0x1C => Self::BadNotepadPage,
            0x1D => Self::PortFail,
            0x20 => Self::AddressMismatch,
            0x21 => Self::PasswordRequired,
            other => Self::Other(other),
        }
    }

    /// Wire value.
    pub fn byte(self) -> u8 {
        match self {
            Self::Ok => 0x00,
            Self::PacketError => 0x01,
            Self::NoFinger => 0x02,
            Self::ImageFail => 0x03,
            Self::ImageMessy => 0x06,
            Self::FeatureFail => 0x07,
            Self::NoMatch => 0x08,
            Self::NotFound => 0x09,
            Self::EnrollMismatch => 0x0A,
            Self::BadLocation => 0x0B,
            Self::ReadTemplate => 0x0C,
            Self::UploadTemplate => 0x0D,
            Self::ReceiveData => 0x0E,
            Self::UploadImage => 0x0F,
            Self::Delete => 0x10,
            Self::ClearLibrary => 0x11,
            Self::WrongPassword => 0x13,
            Self::NoImage => 0x15,
            Self::FlashWrite => 0x18,
            Self::BadRegister => 0x1A,
            Self::BadRegisterValue => 0x1B,
            Self::BadNotepadPage => 0x1C,
            Self::PortFail => 0x1D,
            Self::AddressMismatch => 0x20,
            Self::PasswordRequired => 0x21,
            Self::Other(b) => b,
        }
    }

    /// What the code means, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "done",
            Self::PacketError => "the module could not receive the command packet",
            Self::NoFinger => "no finger on the sensor",
            Self::ImageFail => "the module could not take an image",
            Self::ImageMessy => "the image is too disordered to extract features",
            Self::FeatureFail => "too few feature points in the image",
            Self::NoMatch => "the fingers do not match",
            Self::NotFound => "no matching template in the library",
            Self::EnrollMismatch => {
                "the two images could not be combined into one template (different fingers?)"
            }
            Self::BadLocation => "the template number is beyond the library",
            Self::ReadTemplate => "the template could not be read or is invalid",
            Self::UploadTemplate => "the template could not be uploaded",
            Self::ReceiveData => "the module could not receive the data packets",
            Self::UploadImage => "the image could not be uploaded",
            Self::Delete => "the template could not be deleted",
            Self::ClearLibrary => "the library could not be cleared",
            Self::WrongPassword => "wrong password",
            Self::NoImage => "no valid image in the image buffer",
            Self::FlashWrite => "writing the module's flash failed",
            Self::BadRegister => "invalid parameter number",
            Self::BadRegisterValue => "invalid parameter value",
            Self::BadNotepadPage => "wrong notepad page",
            Self::PortFail => "the module's communication port failed",
            Self::AddressMismatch => "the address does not match",
            Self::PasswordRequired => "the password must be verified first",
            Self::Other(_) => "undocumented confirmation code",
        }
    }
}

impl fmt::Display for Confirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {:#04x})", self.meaning(), self.byte())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(bytes: &[u8]) -> (Vec<Packet>, Vec<FrameError>) {
        let mut f = Framer::new();
        f.push(bytes);
        let (mut ok, mut bad) = (vec![], vec![]);
        loop {
            match f.next_packet() {
                Ok(Some(p)) => ok.push(p),
                Ok(None) => break,
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }

    #[test]
    fn gen_img_command_matches_the_datasheet_bytes() {
        let p = Packet::command(DEFAULT_ADDRESS, vec![ins::GEN_IMG]);
        assert_eq!(
            p.encode(),
            [0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x03, 0x01, 0x00, 0x05]
        );
    }

    #[test]
    fn round_trip_every_pid_and_sizes() {
        for pid in [Pid::Command, Pid::Data, Pid::Ack, Pid::EndData] {
            for n in [0, 1, 31, 128, MAX_PAYLOAD] {
                let p = Packet {
                    address: 0x1234_5678,
                    pid,
                    payload: (0..n).map(|i| (i * 7 + 3) as u8).collect(),
                };
                let (ok, bad) = frame_all(&p.encode());
                assert!(bad.is_empty(), "{bad:?}");
                assert_eq!(ok, vec![p]);
            }
        }
    }

    #[test]
    fn packets_split_across_reads_are_reassembled() {
        let p = Packet::ack(DEFAULT_ADDRESS, 0, &[1, 2, 3, 4]);
        let bytes = p.encode();
        let mut f = Framer::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(f.next_packet(), Ok(None), "before byte {i}");
            f.push(&[*b]);
        }
        assert_eq!(f.next_packet(), Ok(Some(p)));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn garbage_before_a_packet_is_skipped_and_counted() {
        let p = Packet::ack(DEFAULT_ADDRESS, 0, &[]);
        let mut bytes = vec![0x00, 0xEF, 0x13, STARTUP_BYTE, 0xEF];
        bytes.extend(p.encode());
        let mut f = Framer::new();
        f.push(&bytes);
        assert_eq!(f.next_packet(), Ok(Some(p)));
        assert_eq!(f.skipped(), 5);
        assert!(f.saw_startup_byte());
    }

    #[test]
    fn wrong_checksum_is_rejected_and_the_next_packet_still_found() {
        let p = Packet::ack(DEFAULT_ADDRESS, 0, &[9]);
        let mut bad = p.encode();
        let n = bad.len();
        bad[n - 1] ^= 0x01;
        bad.extend(p.encode());
        let (ok, errs) = frame_all(&bad);
        assert!(matches!(errs.as_slice(), [FrameError::Checksum { .. }]));
        assert_eq!(ok, vec![p]);
    }

    #[test]
    fn oversized_length_is_rejected_without_waiting_for_the_bytes() {
        let mut bytes = vec![0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x40, 0x00];
        bytes.extend([0u8; 4]);
        let (_, errs) = frame_all(&bytes);
        assert_eq!(errs, vec![FrameError::Oversized(0x4000)]);
    }

    #[test]
    fn length_shorter_than_checksum_is_rejected() {
        let bytes = [0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00, 0x01, 0x00];
        let (_, errs) = frame_all(&bytes);
        assert_eq!(errs, vec![FrameError::TooShort(1)]);
    }

    #[test]
    fn unknown_packet_identifier_is_rejected() {
        let bytes = [
            0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x00, 0x03, 0x00, 0x00, 0x08,
        ];
        let (_, errs) = frame_all(&bytes);
        assert_eq!(errs, vec![FrameError::UnknownPid(0x05)]);
    }

    #[test]
    fn a_cut_packet_is_reported_as_truncated() {
        let p = Packet {
            address: DEFAULT_ADDRESS,
            pid: Pid::Data,
            payload: vec![0x11; 128],
        };
        let bytes = p.encode();
        let mut f = Framer::new();
        f.push(&bytes[..60]);
        assert_eq!(f.next_packet(), Ok(None));
        assert_eq!(
            f.truncation(),
            Some(FrameError::Truncated {
                got: 60,
                want: bytes.len()
            })
        );
        let mut g = Framer::new();
        g.push(&[0x00, 0x12]);
        assert_eq!(g.next_packet(), Ok(None));
        assert_eq!(g.truncation(), None, "garbage alone is not a cut packet");
    }

    #[test]
    fn checksum_wraps_at_16_bits() {
        let payload = vec![0xFF; 300];
        let s = checksum(0x02, 302, &payload);
        let want = (0x02u32 + 0x01 + 0x2E + 300 * 0xFF) % 65536;
        assert_eq!(u32::from(s), want);
    }

    #[test]
    fn confirmation_codes_round_trip_and_have_meanings() {
        for b in 0..=0xFFu8 {
            let c = Confirmation::from_byte(b);
            assert_eq!(c.byte(), b);
            assert!(!c.meaning().is_empty());
        }
        assert_eq!(Confirmation::from_byte(0x13), Confirmation::WrongPassword);
        assert!(Confirmation::NoFinger.to_string().contains("no finger"));
    }
}
