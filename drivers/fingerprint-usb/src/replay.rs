//! A transport that plays a recording back as the device side.
//!
//! Control and bulk/interrupt OUT transfers must match the recording exactly and in the same
//! order; IN transfers are answered per endpoint in recorded order. Interrupt transfers that the
//! reference driver cancelled at shutdown (status -2) are not replayed. A recording can be cut
//! short to simulate an unplug: every transfer after the cut fails with `Disconnected`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::recording::{Kind, Transfer};
use crate::transport::{Setup, UsbError, UsbTransport};

/// Replays recorded transfers.
pub struct ReplayTransport {
    ordered: VecDeque<Transfer>,
    issued: usize,
    unplug_after: Option<usize>,
    released: bool,
    /// Device time spent in the recording by the transfers replayed so far (seconds).
    pub device_time: f64,
    first_submit: Option<f64>,
    last_complete: f64,
    nonce: Option<u32>,
}

impl ReplayTransport {
    /// Builds a replay of `transfers` (as returned by [`crate::recording::read_pcapng`]).
    pub fn new(transfers: Vec<Transfer>) -> Self {
        let ordered = transfers.into_iter().filter(|t| t.status != -2).collect();
        Self {
            ordered,
            issued: 0,
            unplug_after: None,
            released: false,
            device_time: 0.0,
            first_submit: None,
            last_complete: 0.0,
            nonce: None,
        }
    }

    /// Makes the device vanish after `n` transfers have been served.
    pub fn unplug_after(mut self, n: usize) -> Self {
        self.unplug_after = Some(n);
        self
    }

    /// Sets the host nonce the recorded session used (see [`UsbTransport::replay_nonce`]).
    pub fn with_nonce(mut self, nonce: u32) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Transfers of the recording that the driver never asked for.
    pub fn remaining(&self) -> usize {
        self.ordered.len()
    }

    /// Elapsed recorded time from the first to the last replayed transfer.
    pub fn recorded_span(&self) -> Duration {
        Duration::from_secs_f64((self.last_complete - self.first_submit.unwrap_or(0.0)).max(0.0))
    }

    fn take(&mut self, kind: Kind, ep: u8, describe: &str) -> Result<Transfer, UsbError> {
        if self.released {
            return Err(UsbError::Disconnected);
        }
        if self.unplug_after.is_some_and(|n| self.issued >= n) {
            return Err(UsbError::Disconnected);
        }
        // OUT and control transfers are strictly ordered; IN transfers on interrupt/bulk
        // endpoints may overtake other endpoints (they were queued asynchronously).
        let pos = if kind == Kind::Control || ep & 0x80 == 0 {
            self.ordered
                .iter()
                .position(|t| t.kind == Kind::Control || t.endpoint & 0x80 == 0)
        } else {
            self.ordered
                .iter()
                .position(|t| t.kind == kind && t.endpoint == ep)
        };
        let Some(pos) = pos else {
            return Err(UsbError::Mismatch(format!(
                "{describe}: recording has no more such transfers"
            )));
        };
        let t = self.ordered[pos].clone();
        if t.kind != kind || t.endpoint != ep {
            return Err(UsbError::Mismatch(format!(
                "{describe} (transfer {}) but the recording has {:?} on endpoint {:#04x} next",
                self.issued, t.kind, t.endpoint
            )));
        }
        self.ordered.remove(pos);
        self.issued += 1;
        self.first_submit.get_or_insert(t.submitted);
        self.last_complete = self.last_complete.max(t.completed);
        self.device_time = self.last_complete - self.first_submit.unwrap_or(t.submitted);
        match t.status {
            0 => Ok(t),
            -32 => Err(UsbError::Stall(ep)),
            -110 => Err(UsbError::Timeout(ep)),
            -75 => Err(UsbError::Babble(ep)),
            -19 | -108 => Err(UsbError::Disconnected),
            s => Err(UsbError::Other(format!("recorded status {s}"))),
        }
    }

    fn check_setup(t: &Transfer, s: Setup, len: usize) -> Result<(), UsbError> {
        let [a, b, c, d] = [
            s.value.to_le_bytes(),
            s.index.to_le_bytes(),
            (len as u16).to_le_bytes(),
            [0, 0],
        ];
        let want = [
            s.request_type,
            s.request,
            a[0],
            a[1],
            b[0],
            b[1],
            c[0],
            c[1],
        ];
        let _ = d;
        match t.setup {
            Some(got) if got == want => Ok(()),
            got => Err(UsbError::Mismatch(format!(
                "control setup {want:02x?}, recording has {got:02x?}"
            ))),
        }
    }
}

impl UsbTransport for ReplayTransport {
    fn control_in(&mut self, s: Setup, len: usize, _t: Duration) -> Result<Vec<u8>, UsbError> {
        let t = self.take(Kind::Control, 0x80, "control IN")?;
        Self::check_setup(&t, s, len)?;
        Ok(t.in_data)
    }
    fn control_out(&mut self, s: Setup, data: &[u8], _t: Duration) -> Result<(), UsbError> {
        let t = self.take(Kind::Control, 0x00, "control OUT")?;
        Self::check_setup(&t, s, data.len())?;
        if t.out_data != data {
            return Err(UsbError::Mismatch(format!(
                "control OUT request {:#04x} value {:#06x}: data differs from the recording",
                s.request, s.value
            )));
        }
        Ok(())
    }
    fn bulk_in(&mut self, ep: u8, len: usize, _t: Duration) -> Result<Vec<u8>, UsbError> {
        let t = self.take(Kind::Bulk, ep, "bulk IN")?;
        if t.in_data.len() > len {
            return Err(UsbError::Babble(ep));
        }
        Ok(t.in_data)
    }
    fn bulk_out(&mut self, ep: u8, data: &[u8], _t: Duration) -> Result<(), UsbError> {
        let t = self.take(Kind::Bulk, ep, "bulk OUT")?;
        if t.out_data != data {
            return Err(UsbError::Mismatch(format!(
                "bulk OUT on {ep:#04x}: data differs from the recording"
            )));
        }
        Ok(())
    }
    fn interrupt_in(&mut self, ep: u8, len: usize, _t: Duration) -> Result<Vec<u8>, UsbError> {
        let t = self.take(Kind::Interrupt, ep, "interrupt IN")?;
        if t.in_data.len() > len {
            return Err(UsbError::Babble(ep));
        }
        Ok(t.in_data)
    }
    fn release(&mut self) -> Result<(), UsbError> {
        self.released = true;
        Ok(())
    }
    fn replay_nonce(&self) -> Option<u32> {
        self.nonce
    }
}
