//! Reading umockdev ioctl recordings (`umockdev-record --ioctl`, the `*.ioctl` files libfprint
//! keeps next to its tests) of usbdevfs devices into [`Transfer`]s.
//!
//! # The format, as umockdev writes and reads it
//!
//! One record per line. A line starting with `#` is a comment, an empty line is skipped, and a
//! line starting with `@` is metadata (`@DEV /dev/bus/usb/001/003` names the device node the
//! recording belongs to). Every other line is
//!
//! ```text
//! <indent><IOCTL-NAME> <ret> <ioctl-specific fields>
//! ```
//!
//! where `<indent>` is one space per tree level and `<ret>` the ioctl's return value.
//! umockdev keeps a recording as a tree and writes it depth-first (node, its children, its next
//! sibling), so the file's line order is the order in which umockdev itself replays.
//!
//! `USBDEVFS_REAPURB` and `USBDEVFS_REAPURBNDELAY` lines describe one completed URB:
//!
//! ```text
//! USBDEVFS_REAPURBNDELAY <ret> <type> <endpoint> <status> <flags> <buffer_length> <actual_length> <error_count> <hex>
//! ```
//!
//! `type` is the usbdevfs URB type (0 isochronous, 1 interrupt, 2 control, 3 bulk), `endpoint`
//! the endpoint address in decimal with the direction bit (131 = 0x83 IN), `status` the Linux
//! completion status (0, or a negative errno: -2 cancelled, -32 stall, ...), `buffer_length` the
//! size the host submitted and `actual_length` what was transferred. The hex field holds the
//! buffer: `actual_length` bytes for an IN endpoint, `buffer_length` bytes otherwise (an OUT
//! buffer, or a control URB whose endpoint field is 0: the 8 setup bytes followed by the data
//! stage, which for a device-to-host request is what the device returned). Missing trailing
//! bytes read as zero, as umockdev's own reader fills the rest of the buffer with zeros.
//!
//! Tree shape: an OUT URB is always a top-level node; an IN URB becomes a child of the URB node
//! umockdev touched last (the one recorded just before it, or the earlier copy of a repeated
//! command), so a run of IN reads nests one level deeper per read. umockdev does
//! not store a second copy of an OUT URB equal to one already in the tree (same type, endpoint,
//! status, flags, lengths and bytes); the IN URBs that followed the repeat are attached to the
//! first copy instead. A recording of a driver that sends the same command several times
//! therefore holds that command once, and the line order is not strictly the wire order. The
//! [`IoctlRecord::parent`] links let a test rebuild the repeats where it knows the protocol.
//! Recordings made by other umockdev versions or edited by hand differ in shape (in this
//! repository's data, vfs301 keeps runs of reads as siblings under one command and vfs0050 has
//! commented-out records); the reader accepts any shape that umockdev's own reader accepts and
//! reports it as it is, without reordering.
//!
//! Stateless ioctls (`USBDEVFS_GET_CAPABILITIES`, `USBDEVFS_CONNECTINFO`) are recognised and
//! skipped: they move no data. The format has no timestamps, so every transfer's `submitted` and
//! `completed` times are 0 and a replay's recorded span is unknown (reported as zero).
//!
//! Recordings of other device kinds (umockdev's SPI script format with `TW`/`CR` lines, evdev,
//! hidraw) are refused with [`IoctlError::NotUsbdevfs`].

use std::path::Path;

use crate::recording::{Kind, RecordingError, Transfer};

/// Why an ioctl recording could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoctlError {
    /// The recording belongs to a device that is not a usbdevfs node (e.g. SPI or hidraw).
    #[error("not a usbdevfs recording (device {0})")]
    NotUsbdevfs(String),
    /// A line could not be parsed.
    #[error("line {line}: {detail}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
}

/// One URB of the recording with its place in umockdev's tree.
#[derive(Debug, Clone)]
pub struct IoctlRecord {
    /// 1-based line number in the file.
    pub line: usize,
    /// Tree depth (number of leading spaces).
    pub depth: usize,
    /// Index (into [`IoctlRecording::records`]) of the URB this one hangs under, if any.
    pub parent: Option<usize>,
    /// The transfer.
    pub transfer: Transfer,
}

/// A parsed ioctl recording.
#[derive(Debug, Clone, Default)]
pub struct IoctlRecording {
    /// The device node from the `@DEV` line, if present.
    pub device_node: Option<String>,
    /// The URBs in file order.
    pub records: Vec<IoctlRecord>,
}

impl IoctlRecording {
    /// The transfers in file order (umockdev's replay order).
    pub fn transfers(&self) -> Vec<Transfer> {
        self.records.iter().map(|r| r.transfer.clone()).collect()
    }

    /// Bus and device number parsed from a `@DEV /dev/bus/usb/BBB/DDD` line.
    pub fn usb_address(&self) -> Option<(u16, u8)> {
        let rest = self.device_node.as_deref()?.strip_prefix("/dev/bus/usb/")?;
        let (bus, dev) = rest.split_once('/')?;
        Some((bus.parse().ok()?, dev.trim().parse().ok()?))
    }
}

/// Reads an ioctl recording and returns its transfers in file order.
pub fn read_ioctl(path: &Path) -> Result<Vec<Transfer>, RecordingError> {
    Ok(read_ioctl_recording(path)?.transfers())
}

/// Reads an ioctl recording with its tree structure.
pub fn read_ioctl_recording(path: &Path) -> Result<IoctlRecording, RecordingError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RecordingError::new(path, format!("cannot read: {e}")))?;
    parse_ioctl(&text).map_err(|e| RecordingError::new(path, e.to_string()))
}

/// Ioctls that carry no transfer and are skipped.
const STATELESS: &[&str] = &["USBDEVFS_GET_CAPABILITIES", "USBDEVFS_CONNECTINFO"];

/// Parses the text of an ioctl recording.
pub fn parse_ioctl(text: &str) -> Result<IoctlRecording, IoctlError> {
    let mut out = IoctlRecording::default();
    // Record index (None for a skipped stateless ioctl) at every depth of the current path.
    let mut path: Vec<Option<usize>> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let bad = |detail: String| IoctlError::Line { line, detail };
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        if let Some(meta) = raw.strip_prefix('@') {
            if let Some(dev) = meta.strip_prefix("DEV ") {
                let dev = dev.trim();
                if !dev.starts_with("/dev/bus/usb/") {
                    return Err(IoctlError::NotUsbdevfs(dev.to_string()));
                }
                out.device_node = Some(dev.to_string());
            }
            continue;
        }
        let body = raw.trim_start_matches(' ');
        let depth = raw.len() - body.len();
        if depth > path.len() {
            return Err(bad(format!(
                "indented {depth} levels below a node at depth {}",
                path.len().saturating_sub(1)
            )));
        }
        path.truncate(depth);
        let parent = path.last().copied().flatten();
        let mut fields = body.split_ascii_whitespace();
        let name = fields.next().unwrap_or_default();
        let base = name.split('(').next().unwrap_or(name);
        if STATELESS.contains(&base) {
            path.push(None);
            continue;
        }
        if base != "USBDEVFS_REAPURB" && base != "USBDEVFS_REAPURBNDELAY" {
            if out.device_node.is_none() && out.records.is_empty() {
                return Err(IoctlError::NotUsbdevfs(format!("record type {name:?}")));
            }
            return Err(bad(format!("unsupported ioctl {name:?}")));
        }
        let transfer = parse_urb(fields).map_err(bad)?;
        path.push(Some(out.records.len()));
        out.records.push(IoctlRecord {
            line,
            depth,
            parent,
            transfer,
        });
    }
    Ok(out)
}

fn int<'a>(fields: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<i64, String> {
    let f = fields.next().ok_or_else(|| format!("missing {what}"))?;
    f.parse()
        .map_err(|_| format!("{what} {f:?} is not a number"))
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("buffer has an odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("buffer has a non-hex digit near offset {i}"))
        })
        .collect()
}

/// Parses the fields after the ioctl name of a REAPURB line.
fn parse_urb<'a>(mut fields: impl Iterator<Item = &'a str>) -> Result<Transfer, String> {
    let _ret = int(&mut fields, "return value")?;
    let urb_type = int(&mut fields, "URB type")?;
    let endpoint = int(&mut fields, "endpoint")?;
    let status = int(&mut fields, "status")?;
    let _flags = int(&mut fields, "flags")?;
    let buffer_length = int(&mut fields, "buffer length")?;
    let actual_length = int(&mut fields, "actual length")?;
    let _error_count = int(&mut fields, "error count")?;
    let data = hex(fields.next().unwrap_or(""))?;
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected field {extra:?} after the buffer"));
    }
    let endpoint =
        u8::try_from(endpoint).map_err(|_| format!("endpoint {endpoint} is out of range"))?;
    let status = i32::try_from(status).map_err(|_| format!("status {status} is out of range"))?;
    let len = |v: i64, what: &str| {
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= 1 << 24)
            .ok_or_else(|| format!("{what} {v} is out of range"))
    };
    let buffer_length = len(buffer_length, "buffer length")?;
    let actual_length = len(actual_length, "actual length")?;
    if data.len() > buffer_length {
        return Err(format!(
            "buffer holds {} bytes but the URB's buffer length is {buffer_length}",
            data.len()
        ));
    }
    let mut buffer = data;
    buffer.resize(buffer_length, 0);
    let kind = match urb_type {
        1 => Kind::Interrupt,
        2 => Kind::Control,
        3 => Kind::Bulk,
        0 => return Err("isochronous URBs are not supported".into()),
        t => return Err(format!("unknown URB type {t}")),
    };
    let mut t = Transfer {
        kind,
        endpoint,
        setup: None,
        out_data: Vec::new(),
        in_data: Vec::new(),
        status,
        submitted: 0.0,
        completed: 0.0,
    };
    if kind == Kind::Control {
        let setup: [u8; 8] = buffer
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or("control URB buffer is shorter than its setup packet")?;
        let stage = &buffer[8..];
        t.endpoint = (setup[0] & 0x80) | (endpoint & 0x7f);
        t.setup = Some(setup);
        if setup[0] & 0x80 != 0 {
            t.in_data = stage
                .get(..actual_length)
                .ok_or_else(|| {
                    format!(
                        "control URB reports {actual_length} bytes but its data stage holds {}",
                        stage.len()
                    )
                })?
                .to_vec();
        } else {
            t.out_data = stage.to_vec();
        }
    } else if endpoint & 0x80 != 0 {
        if actual_length > buffer_length {
            return Err(format!(
                "actual length {actual_length} exceeds the buffer length {buffer_length}"
            ));
        }
        buffer.truncate(actual_length);
        t.in_data = buffer;
    } else {
        t.out_data = buffer;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_out_and_nested_in_reads() {
        let text = "@DEV /dev/bus/usb/001/003\n\
                    USBDEVFS_GET_CAPABILITIES 0 FD010000\n\
                    USBDEVFS_REAPURBNDELAY 0 3 2 0 0 4 4 0 80380100\n \
                    USBDEVFS_REAPURBNDELAY 0 3 131 0 0 16 3 0 803701\n  \
                    USBDEVFS_REAPURBNDELAY 0 3 131 0 0 8 2 0 ABCD\n\
                    USBDEVFS_REAPURBNDELAY 0 3 2 0 0 2 2 0 0102\n";
        let r = parse_ioctl(text).expect("parses");
        assert_eq!(r.device_node.as_deref(), Some("/dev/bus/usb/001/003"));
        assert_eq!(r.usb_address(), Some((1, 3)));
        let t: Vec<_> = r.records.iter().map(|r| &r.transfer).collect();
        assert_eq!(t.len(), 4);
        assert_eq!((t[0].kind, t[0].endpoint), (Kind::Bulk, 0x02));
        assert_eq!(t[0].out_data, [0x80, 0x38, 0x01, 0x00]);
        assert!(t[0].in_data.is_empty() && t[0].setup.is_none());
        assert_eq!(t[1].endpoint, 0x83);
        assert_eq!(t[1].in_data, [0x80, 0x37, 0x01]);
        assert!(t[1].out_data.is_empty());
        assert_eq!(t[2].in_data, [0xab, 0xcd]);
        let shape: Vec<_> = r.records.iter().map(|r| (r.depth, r.parent)).collect();
        assert_eq!(shape, [(0, None), (1, Some(0)), (2, Some(1)), (0, None)]);
        assert_eq!(r.records[3].line, 6);
        assert_eq!(t[3].submitted, 0.0);
    }

    #[test]
    fn comments_blank_lines_and_statuses() {
        let text = "# a comment\n\n\
                    USBDEVFS_REAPURB 0 1 131 -2 0 65536 0 0 \n\
                    USBDEVFS_REAPURBNDELAY 0 3 1 -32 0 1 0 0 01\n";
        let r = parse_ioctl(text).expect("parses");
        let t = r.transfers();
        assert_eq!(
            (t[0].kind, t[0].endpoint, t[0].status),
            (Kind::Interrupt, 0x83, -2)
        );
        assert!(t[0].in_data.is_empty());
        assert_eq!((t[1].status, t[1].out_data.as_slice()), (-32, &[1u8][..]));
        assert_eq!(r.records[0].line, 3);
    }

    #[test]
    fn short_hex_is_zero_filled_like_umockdev() {
        let r = parse_ioctl("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 4 4 0 AA\n").expect("parses");
        assert_eq!(r.records[0].transfer.out_data, [0xaa, 0, 0, 0]);
        let r = parse_ioctl("USBDEVFS_REAPURBNDELAY 0 3 129 0 0 8 3 0 AA\n").expect("parses");
        assert_eq!(r.records[0].transfer.in_data, [0xaa, 0, 0]);
    }

    #[test]
    fn control_urbs_split_setup_and_data() {
        // Vendor read of 2 bytes: setup c0 04 0700 0000 0200, the device answered 12 34.
        let r = parse_ioctl("USBDEVFS_REAPURB 0 2 0 0 0 10 2 0 C0040700000002001234\n")
            .expect("parses");
        let t = &r.records[0].transfer;
        assert_eq!(t.kind, Kind::Control);
        assert_eq!(t.endpoint, 0x80);
        assert_eq!(t.setup, Some([0xc0, 0x04, 0x07, 0, 0, 0, 0x02, 0]));
        assert_eq!(t.in_data, [0x12, 0x34]);
        // Vendor write of one byte.
        let r =
            parse_ioctl("USBDEVFS_REAPURB 0 2 0 0 0 9 1 0 400407000000010080\n").expect("parses");
        let t = &r.records[0].transfer;
        assert_eq!(t.endpoint, 0x00);
        assert_eq!(t.out_data, [0x80]);
        assert!(t.in_data.is_empty());
        let r = parse_ioctl("USBDEVFS_REAPURB 0 2 0 0 0 4 0 0 C0040700\n");
        assert!(r.is_err(), "a control URB needs 8 setup bytes");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (text, words) in [
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 2 2 0 ABC\n", "odd number"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 2 2 0 ZZ\n", "non-hex"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 1 1 0 ABCD\n", "buffer length is 1"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 1\n", "missing actual length"),
            ("USBDEVFS_REAPURBNDELAY 0 3 x 0 0 1 1 0\n", "endpoint \"x\""),
            ("USBDEVFS_REAPURBNDELAY 0 3 300 0 0 1 1 0\n", "out of range"),
            ("USBDEVFS_REAPURBNDELAY 0 0 129 0 0 1 1 0 00\n", "isochronous"),
            ("USBDEVFS_REAPURBNDELAY 0 3 129 0 0 1 2 0 00\n", "exceeds"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 1 1 0 00 11\n", "unexpected field"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 1 1 0 00\n  USBDEVFS_REAPURB 0 3 2 0 0 1 1 0 00\n", "indented"),
            ("USBDEVFS_REAPURBNDELAY 0 3 2 0 0 1 1 0 00\nUSBDEVFS_CONTROL 0 00\n", "unsupported ioctl"),
        ] {
            let err = parse_ioctl(text).expect_err(text);
            assert!(matches!(err, IoctlError::Line { .. }), "{text}: {err}");
            assert!(err.to_string().contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn non_usb_recordings_are_refused() {
        let spi = "@DEV /dev/spidev0.0 (SPI)\nTW 03ff\nCR 81\n";
        assert_eq!(
            parse_ioctl(spi).expect_err("spi"),
            IoctlError::NotUsbdevfs("/dev/spidev0.0 (SPI)".into())
        );
        assert!(matches!(
            parse_ioctl("TW 03ff\n"),
            Err(IoctlError::NotUsbdevfs(_))
        ));
    }
}
