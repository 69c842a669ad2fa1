//! Reading recorded USB traffic (pcapng from usbmon, link type 220) into completed transfers.

use std::path::Path;

/// Kind of a recorded transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Control transfer on endpoint 0.
    Control,
    /// Interrupt transfer.
    Interrupt,
    /// Bulk transfer.
    Bulk,
}

/// One transfer as the host submitted it and the device completed it.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Transfer kind.
    pub kind: Kind,
    /// Endpoint address including the direction bit.
    pub endpoint: u8,
    /// Setup packet bytes for control transfers.
    pub setup: Option<[u8; 8]>,
    /// Data sent by the host (OUT transfers).
    pub out_data: Vec<u8>,
    /// Data returned by the device (IN transfers).
    pub in_data: Vec<u8>,
    /// Linux status of the completion (0 ok, -32 stall, -110 timeout, -75 babble, -19 gone).
    pub status: i32,
    /// Submission time in seconds.
    pub submitted: f64,
    /// Completion time in seconds.
    pub completed: f64,
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
#[error("recording {path}: {detail}")]
pub struct RecordingError {
    path: String,
    detail: String,
}

impl RecordingError {
    /// An error about the recording at `path`.
    pub(crate) fn new(path: &Path, detail: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            detail: detail.into(),
        }
    }
}

fn u32le(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

/// Parses a usbmon pcapng file into transfers in completion order, pairing each completion with
/// its submission by URB id. Standard GET_DESCRIPTOR requests issued by the kernel are dropped.
/// Traffic of every device on the bus is kept; see [`read_pcapng_device`] to select one.
pub fn read_pcapng(path: &Path) -> Result<Vec<Transfer>, RecordingError> {
    read_pcapng_device(path, None)
}

/// Bus and device number from a recording's udev description (`E: BUSNUM=` / `E: DEVNUM=`).
pub fn device_address(device_file: &Path) -> Result<(u16, u8), RecordingError> {
    let err = |detail: String| RecordingError {
        path: device_file.display().to_string(),
        detail,
    };
    let text =
        std::fs::read_to_string(device_file).map_err(|e| err(format!("cannot read: {e}")))?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("E: ").and_then(|l| l.strip_prefix(key)))
            .map(str::to_string)
    };
    let bus = get("BUSNUM=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err("no BUSNUM".into()))?;
    let dev = get("DEVNUM=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err("no DEVNUM".into()))?;
    Ok((bus, dev))
}

/// Like [`read_pcapng`], keeping only the traffic of device `(bus, devnum)` when given.
pub fn read_pcapng_device(
    path: &Path,
    only: Option<(u16, u8)>,
) -> Result<Vec<Transfer>, RecordingError> {
    let err = |detail: String| RecordingError {
        path: path.display().to_string(),
        detail,
    };
    let data = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut off = 0;
    let mut pending: Vec<(u64, Transfer)> = Vec::new();
    let mut done = Vec::new();
    let mut linktype = None;
    while off + 12 <= data.len() {
        let bt = u32le(&data, off).ok_or_else(|| err("truncated block".into()))?;
        let bl = u32le(&data, off + 4).ok_or_else(|| err("truncated block".into()))? as usize;
        if bl < 12 || off + bl > data.len() {
            return Err(err(format!("bad block length {bl} at offset {off}")));
        }
        let body = &data[off + 8..off + bl - 4];
        match bt {
            1 => linktype = Some(u16::from_le_bytes([body[0], body[1]])),
            6 => {
                if linktype != Some(220) && linktype != Some(189) {
                    return Err(err(format!("link type {linktype:?} is not usbmon")));
                }
                let cap = u32le(body, 12).unwrap_or(0) as usize;
                let p = body
                    .get(20..20 + cap)
                    .ok_or_else(|| err("truncated packet".into()))?;
                if p.len() < 48 {
                    return Err(err("usbmon header too short".into()));
                }
                let hdr = if linktype == Some(220) { 64 } else { 48 };
                let id = u64::from_le_bytes(p[0..8].try_into().unwrap_or_default());
                let ev = p[8];
                let kind = match p[9] {
                    1 => Kind::Interrupt,
                    2 => Kind::Control,
                    3 => Kind::Bulk,
                    _ => return Err(err("isochronous transfers are not supported".into())),
                };
                let ep = p[10];
                let addr = (u16::from_le_bytes([p[12], p[13]]), p[11]);
                if only.is_some_and(|o| o != addr) {
                    off += bl;
                    continue;
                }
                let sec = i64::from_le_bytes(p[16..24].try_into().unwrap_or_default());
                let usec = i32::from_le_bytes(p[24..28].try_into().unwrap_or_default());
                let t = sec as f64 + usec as f64 / 1e6;
                let status = i32::from_le_bytes(p[28..32].try_into().unwrap_or_default());
                let payload = p.get(hdr..).unwrap_or(&[]).to_vec();
                if ev == b'S' {
                    let setup = (p[14] == 0).then(|| p[40..48].try_into().unwrap_or_default());
                    let out_data = if ep & 0x80 == 0 { payload } else { Vec::new() };
                    pending.push((
                        id,
                        Transfer {
                            kind,
                            endpoint: ep,
                            setup,
                            out_data,
                            in_data: Vec::new(),
                            status: 0,
                            submitted: t,
                            completed: t,
                        },
                    ));
                } else if ev == b'C' || ev == b'E' {
                    if let Some(i) = pending.iter().position(|(pid, _)| *pid == id) {
                        let (_, mut tr) = pending.remove(i);
                        tr.status = if ev == b'E' { -19 } else { status };
                        tr.completed = t;
                        if ep & 0x80 != 0 {
                            tr.in_data = payload;
                        }
                        let std_descriptor = tr.setup.is_some_and(|s| s[0] == 0x80 && s[1] == 6);
                        if !std_descriptor {
                            done.push(tr);
                        }
                    }
                }
            }
            _ => {}
        }
        off += bl;
    }
    Ok(done)
}
