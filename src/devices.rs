//! The device manager: one worker thread per capture device, opened on first use, reopened
//! after an unplug, and watched by a heartbeat.
//!
//! Drivers block, so each device gets its own thread; the async side sends it capture requests
//! and waits with a deadline. A device that vanishes mid-capture fails that capture with a
//! clear error and is reopened on the next request once it is back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use apg_device::{
    CancelToken, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider, DeviceState,
    FaultKind, HotplugEvent, Sample,
};
use apg_sim::{Presenter, SimProvider, SimSpec};
use serde::Serialize;

use crate::heartbeat::{Heartbeat, Heartbeats, IDLE_BEAT};

/// Extra time a device worker gets beyond the capture timeout before the caller gives up.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// What the API shows about a device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Static description and current state.
    #[serde(flatten)]
    pub info: DeviceInfo,
    /// Last error, if the last capture failed.
    pub last_error: Option<String>,
    /// Captures that returned a sample.
    pub captures_ok: u64,
    /// Captures that failed (retries, timeouts and faults).
    pub captures_failed: u64,
}

enum Command {
    Capture {
        timeout: Duration,
        cancel: CancelToken,
        reply: tokio::sync::oneshot::Sender<Result<Sample, CaptureError>>,
    },
}

struct Entry {
    info: Mutex<DeviceInfo>,
    last_error: Mutex<Option<String>>,
    captures_ok: AtomicU64,
    captures_failed: AtomicU64,
    busy: AtomicBool,
    tx: mpsc::Sender<Command>,
    stop: CancelToken,
    current: Mutex<CancelToken>,
}

impl Entry {
    fn status(&self) -> DeviceStatus {
        let mut info = lock(&self.info).clone();
        if self.busy.load(Ordering::SeqCst) && info.state == DeviceState::Ready {
            info.state = DeviceState::Busy;
        }
        DeviceStatus {
            info,
            last_error: lock(&self.last_error).clone(),
            captures_ok: self.captures_ok.load(Ordering::Relaxed),
            captures_failed: self.captures_failed.load(Ordering::Relaxed),
        }
    }

    fn set_state(&self, state: DeviceState) {
        lock(&self.info).state = state;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every capture device the agent drives.
pub struct DeviceManager {
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    providers: RwLock<Vec<Arc<dyn DeviceProvider>>>,
    simulated: RwLock<Arc<SimProvider>>,
    heartbeats: Arc<Heartbeats>,
}

impl DeviceManager {
    /// Enumerates the simulated devices and every extra provider, and starts their workers.
    pub fn start(
        simulated: Vec<SimSpec>,
        extra: Vec<Arc<dyn DeviceProvider>>,
        heartbeats: Arc<Heartbeats>,
    ) -> Arc<Self> {
        let sim = Arc::new(SimProvider::new(simulated));
        let mut providers: Vec<Arc<dyn DeviceProvider>> = vec![sim.clone()];
        providers.extend(extra);
        let manager = Arc::new(Self {
            entries: RwLock::default(),
            providers: RwLock::new(providers.clone()),
            simulated: RwLock::new(sim),
            heartbeats,
        });
        for provider in &providers {
            for info in provider.list() {
                manager.add(provider.clone(), info);
            }
            manager.watch(provider.clone());
        }
        manager
    }

    fn add(&self, provider: Arc<dyn DeviceProvider>, info: DeviceInfo) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = entries.get(&info.id) {
            // A known device came back: the worker reopens it on the next capture.
            existing.set_state(info.state);
            return;
        }
        let (tx, rx) = mpsc::channel();
        let entry = Arc::new(Entry {
            info: Mutex::new(info.clone()),
            last_error: Mutex::new(None),
            captures_ok: AtomicU64::new(0),
            captures_failed: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            tx,
            stop: CancelToken::new(),
            current: Mutex::new(CancelToken::new()),
        });
        let hb = self.heartbeats.register(format!("device {}", info.id));
        let heartbeats = self.heartbeats.clone();
        let worker_entry = entry.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dev-{}", info.id))
            .spawn(move || {
                device_loop(&provider, &worker_entry, &rx, &hb);
                heartbeats.unregister(&hb);
            });
        if let Err(e) = spawned {
            tracing::error!(device = %info.id, error = %e, "Cannot start the device worker thread.");
            return;
        }
        tracing::info!(device = %info.id, driver = %info.driver, transport = %info.transport, state = info.state.label(), "Device found.");
        entries.insert(info.id.clone(), entry);
    }

    fn watch(self: &Arc<Self>, provider: Arc<dyn DeviceProvider>) {
        let (tx, rx) = mpsc::channel();
        if let Err(e) = provider.watch(tx) {
            tracing::warn!(driver = provider.name(), error = %e, "Hotplug is not available; devices plugged in later need a reload.");
            return;
        }
        let manager = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name(format!("hotplug-{}", provider.name()))
            .spawn(move || {
                for event in rx {
                    let Some(manager) = manager.upgrade() else {
                        return;
                    };
                    match event {
                        HotplugEvent::Arrived(info) => {
                            tracing::info!(device = %info.id, "Device plugged in.");
                            manager.add(provider.clone(), info);
                        }
                        HotplugEvent::Left { id } => {
                            tracing::warn!(device = %id, "Device unplugged.");
                            if let Some(entry) = manager.entry(&id) {
                                entry.set_state(DeviceState::Disconnected);
                                lock(&entry.current).cancel();
                            }
                        }
                    }
                }
            });
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Status of every device, by id.
    pub fn list(&self) -> Vec<DeviceStatus> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.status())
            .collect()
    }

    /// Status of one device.
    pub fn status(&self, id: &str) -> Option<DeviceStatus> {
        self.entry(id).map(|e| e.status())
    }

    /// The first usable device of a kind, for requests that name none.
    pub fn default_for(&self, kind: DeviceKind) -> Option<String> {
        self.list()
            .into_iter()
            .find(|d| {
                d.info.kind == kind
                    && matches!(d.info.state, DeviceState::Ready | DeviceState::Busy)
            })
            .map(|d| d.info.id)
    }

    /// The presenter of a simulated device.
    pub fn presenter(&self, id: &str) -> Option<Presenter> {
        self.simulated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .presenter(id)
    }

    /// Captures one sample from a device.
    pub async fn capture(
        &self,
        id: &str,
        timeout: Duration,
        cancel: CancelToken,
    ) -> Result<Sample, CaptureError> {
        let entry = self.entry(id).ok_or_else(|| {
            CaptureError::fault(
                id,
                FaultKind::NotFound,
                "no such device; `apg-biometric devices` lists the devices",
            )
        })?;
        if entry.busy.swap(true, Ordering::SeqCst) {
            return Err(CaptureError::fault(
                id,
                FaultKind::Busy,
                "another capture is in progress on this device; wait for it to finish",
            ));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        *lock(&entry.current) = cancel.clone();
        if entry
            .tx
            .send(Command::Capture {
                timeout,
                cancel: cancel.clone(),
                reply,
            })
            .is_err()
        {
            entry.busy.store(false, Ordering::SeqCst);
            return Err(CaptureError::fault(
                id,
                FaultKind::Io,
                "the device worker has stopped; reload the agent",
            ));
        }
        match tokio::time::timeout(timeout + ANSWER_GRACE, answer).await {
            // Only a finished capture frees the device: a wedged driver keeps it busy.
            Ok(Ok(result)) => {
                entry.busy.store(false, Ordering::SeqCst);
                result
            }
            Ok(Err(_)) => {
                entry.busy.store(false, Ordering::SeqCst);
                Err(CaptureError::fault(
                    id,
                    FaultKind::Io,
                    "the device worker stopped during the capture",
                ))
            }
            Err(_) => {
                cancel.cancel();
                Err(CaptureError::fault(
                    id,
                    FaultKind::Io,
                    format!("the driver did not return within {:?}; the device may be wedged: unplug it or restart the agent", timeout + ANSWER_GRACE),
                ))
            }
        }
    }

    /// Replaces the simulated devices (configuration reload). Real devices are kept.
    pub fn reload_simulated(&self, specs: Vec<SimSpec>) {
        let sim = Arc::new(SimProvider::new(specs));
        let old_ids: Vec<String> = {
            let old = self.simulated.read().unwrap_or_else(|p| p.into_inner());
            old.list().into_iter().map(|d| d.id).collect()
        };
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for id in &old_ids {
            if let Some(entry) = entries.remove(id) {
                entry.stop.cancel();
                lock(&entry.current).cancel();
            }
        }
        drop(entries);
        {
            let mut providers = self.providers.write().unwrap_or_else(|p| p.into_inner());
            providers.retain(|p| p.name() != "simulated");
            providers.push(sim.clone());
        }
        for info in sim.list() {
            self.add(sim.clone(), info);
        }
        *self.simulated.write().unwrap_or_else(|p| p.into_inner()) = sim;
    }

    /// Cancels every capture and stops the workers (shutdown).
    pub fn shutdown(&self) {
        for entry in self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            entry.stop.cancel();
            lock(&entry.current).cancel();
        }
    }
}

fn device_loop(
    provider: &Arc<dyn DeviceProvider>,
    entry: &Entry,
    rx: &mpsc::Receiver<Command>,
    hb: &Heartbeat,
) {
    let mut device: Option<Box<dyn CaptureDevice>> = None;
    loop {
        hb.beat();
        if entry.stop.is_cancelled() {
            break;
        }
        let command = match rx.recv_timeout(IDLE_BEAT) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let Command::Capture {
            timeout,
            cancel,
            reply,
        } = command;
        let id = lock(&entry.info).id.clone();
        hb.start_job(timeout * 2 + ANSWER_GRACE);
        let result = match capture_once(provider, &id, &mut device, &cancel, timeout) {
            // Cancelled by the hotplug watcher, not by the caller: say what happened.
            Err(CaptureError::Cancelled { device: id })
                if lock(&entry.info).state == DeviceState::Disconnected =>
            {
                Err(CaptureError::fault(
                    id,
                    FaultKind::Disconnected,
                    "unplugged during the capture; plug it back in and try again",
                ))
            }
            other => other,
        };
        hb.end_job();
        match &result {
            Ok(_) => {
                entry.captures_ok.fetch_add(1, Ordering::Relaxed);
                *lock(&entry.last_error) = None;
                entry.set_state(DeviceState::Ready);
            }
            Err(e) => {
                entry.captures_failed.fetch_add(1, Ordering::Relaxed);
                *lock(&entry.last_error) = Some(e.to_string());
                let state = match e {
                    CaptureError::Fault {
                        kind: FaultKind::Disconnected | FaultKind::NotFound,
                        ..
                    } => DeviceState::Disconnected,
                    CaptureError::Fault {
                        kind: FaultKind::PermissionDenied,
                        ..
                    } => DeviceState::PermissionDenied,
                    CaptureError::Fault {
                        kind: FaultKind::Io | FaultKind::Protocol,
                        ..
                    } => DeviceState::Faulty,
                    // A cancelled capture says nothing about the device.
                    CaptureError::Cancelled { .. } => lock(&entry.info).state,
                    _ => DeviceState::Ready,
                };
                entry.set_state(state);
                if !matches!(
                    e,
                    CaptureError::Retry { .. }
                        | CaptureError::Timeout { .. }
                        | CaptureError::Cancelled { .. }
                ) {
                    // Close on every fault: the next capture reopens from a clean state.
                    if let Some(mut d) = device.take() {
                        let _ = d.close();
                    }
                    tracing::warn!(device = %id, error = %e, "Capture failed.");
                }
            }
        }
        let _ = reply.send(result);
    }
    if let Some(mut d) = device.take() {
        let _ = d.close();
    }
}

fn capture_once(
    provider: &Arc<dyn DeviceProvider>,
    id: &str,
    device: &mut Option<Box<dyn CaptureDevice>>,
    cancel: &CancelToken,
    timeout: Duration,
) -> Result<Sample, CaptureError> {
    if device.is_none() {
        *device = Some(provider.open(id)?);
    }
    let dev = device.as_mut().expect("opened above");
    dev.capture(cancel, timeout)
}
