//! The byte pipe a module sits behind, and opening real serial ports.

use std::io::{self, Read, Write};
use std::time::Duration;

use apg_device::{CaptureError, FaultKind};

/// A serial line to a module. Reads return [`io::ErrorKind::TimedOut`] when nothing arrives
/// within the read timeout, and `Ok(0)` only when the line is gone.
pub trait Port: Read + Write + Send {
    /// Device path or another name for messages.
    fn name(&self) -> &str;
    /// How long one read waits for the first byte.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Changes the host side's baud rate.
    fn set_baud(&mut self, baud: u32) -> io::Result<()>;
    /// Drops bytes received and not read yet.
    fn discard_input(&mut self) -> io::Result<()>;
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        (**self).set_baud(baud)
    }
    fn discard_input(&mut self) -> io::Result<()> {
        (**self).discard_input()
    }
}

/// A real serial port (or a pseudo-terminal) opened through the `serialport` crate:
/// 8 data bits, no parity, one stop bit, no flow control, as the modules expect.
pub struct SerialLine {
    path: String,
    port: Box<dyn serialport::SerialPort>,
}

impl SerialLine {
    /// Opens `path` at `baud`. Errors name the path and say what to do; `id` names the
    /// device in them.
    pub fn open(id: &str, path: &str, baud: u32) -> Result<Self, CaptureError> {
        let port = serialport::new(path, baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::from_millis(200))
            .open()
            .map_err(|e| open_error(id, path, &e))?;
        Ok(Self {
            path: path.to_string(),
            port,
        })
    }
}

/// Turns a port open failure into an error that says what to check.
pub fn open_error(id: &str, path: &str, e: &serialport::Error) -> CaptureError {
    let io_kind = match e.kind {
        serialport::ErrorKind::Io(k) => Some(k),
        _ => None,
    };
    let exists = std::path::Path::new(path).exists();
    let desc = &e.description;
    if io_kind == Some(io::ErrorKind::PermissionDenied) || desc.contains("ermission denied") {
        CaptureError::fault(
            id,
            FaultKind::PermissionDenied,
            format!(
                "permission denied opening serial port {path}: the service account must be in \
                 group apg-biometric and the port must belong to that group (installed by \
                 /lib/udev/rules.d/60-apg-biometric.rules; for a bridge it does not list, add a \
                 rule with GROUP=\"apg-biometric\", MODE=\"0660\" and run `udevadm trigger`)"
            ),
        )
    } else if !exists
        || matches!(e.kind, serialport::ErrorKind::NoDevice)
        || io_kind == Some(io::ErrorKind::NotFound)
    {
        CaptureError::fault(
            id,
            FaultKind::NotFound,
            format!(
                "serial port {path} does not exist ({desc}): check the cable and the USB-serial \
                 bridge, and the path in the agent configuration (`ls /dev/ttyUSB* /dev/ttyACM* \
                 /dev/serial/by-id/`)"
            ),
        )
    } else if desc.contains("busy") || desc.contains("Busy") {
        CaptureError::fault(
            id,
            FaultKind::Busy,
            format!(
                "serial port {path} is held by another process ({desc}): stop it (`fuser {path}`)"
            ),
        )
    } else {
        CaptureError::fault(
            id,
            FaultKind::Io,
            format!("opening serial port {path}: {desc}"),
        )
    }
}

impl Read for SerialLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }
}

impl Write for SerialLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.port.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.port.flush()
    }
}

impl Port for SerialLine {
    fn name(&self) -> &str {
        &self.path
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.port
            .set_timeout(timeout.max(Duration::from_millis(1)))
            .map_err(io::Error::from)
    }
    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.port.set_baud_rate(baud).map_err(io::Error::from)
    }
    fn discard_input(&mut self) -> io::Result<()> {
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(io::Error::from)
    }
}
