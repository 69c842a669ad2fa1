//! The agent core: everything a running agent holds, built once at start and shared by the
//! API, the CLI socket and the background tasks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::Config;
use crate::crypto::{MasterKey, MasterKeySource};
use crate::devices::DeviceManager;
use crate::engines::{self, Engine, EngineError, Gallery};
use crate::events::Origin;
use crate::heartbeat::Heartbeats;
use crate::metrics::Metrics;
use crate::modality::Modality;
use crate::store::audit::{self, AuditEntry};
use crate::store::{self, templates, Store, StoreError};
use crate::vault::{Vault, VaultError};
use crate::workers::WorkerPool;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The keys failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The site key failed to load.
    #[error(transparent)]
    SiteKey(#[from] crate::distribution::SiteKeyError),
    /// An engine failed to load.
    #[error("cannot load the {modality} engine: {error}")]
    Engine {
        /// Modality.
        modality: Modality,
        /// Cause.
        error: EngineError,
    },
}

/// A gallery behind its lock.
pub type SharedGallery = Arc<RwLock<Box<dyn Gallery>>>;

/// The loaded engines, each with its gallery.
type EngineTable = BTreeMap<Modality, (Arc<dyn Engine>, SharedGallery)>;

/// Everything a running agent holds.
pub struct Agent {
    config: RwLock<Arc<Config>>,
    /// The store.
    pub store: Arc<Store>,
    /// The key ring.
    pub vault: Arc<Vault>,
    engines: RwLock<EngineTable>,
    /// Capture devices.
    pub devices: Arc<DeviceManager>,
    /// Decision workers.
    pub workers: WorkerPool,
    /// Loop liveness for the watchdog.
    pub heartbeats: Arc<Heartbeats>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Where the master key came from.
    pub master_source: MasterKeySource,
    /// When the agent started.
    pub started: Instant,
    unreadable: AtomicU64,
    site_keys: Option<Arc<apg_sync::seal::SiteKeyring>>,
    sync_status: std::sync::OnceLock<tokio::sync::watch::Receiver<apg_sync::SyncStatus>>,
    endpoints: RwLock<Endpoints>,
    /// Held while a key rotation runs, so that two never overlap.
    pub rotation: tokio::sync::Mutex<()>,
}

/// Addresses the agent listens on, once bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Endpoints {
    /// TCP API address.
    pub api: Option<String>,
    /// Unix socket path.
    pub socket: Option<String>,
    /// Metrics address.
    pub metrics: Option<String>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Opens the store with the master key, loads engines and galleries, starts devices and
    /// workers. `status` reports progress (systemd `STATUS=` lines).
    pub fn start(
        config: Config,
        master: MasterKey,
        extra_providers: Vec<Arc<dyn apg_device::DeviceProvider>>,
        status: &dyn Fn(&str),
    ) -> Result<Arc<Self>, StartError> {
        status(&format!("Opening store {}", config.storage.path.display()));
        let store = Arc::new(Store::open(&config.storage.path)?);
        status("Loading keys");
        let vault = Arc::new(Vault::open(&store, &master)?);
        let site_keys = match (&config.sync.site_key_file, config.sync.enabled) {
            (Some(path), true) => {
                let strict = config.profile() == crate::config::Profile::Production;
                Some(Arc::new(crate::distribution::load_site_keys(
                    path,
                    &config.agent.site,
                    strict,
                )?))
            }
            _ => None,
        };
        let master_source = master.source().clone();
        drop(master);
        let heartbeats = Arc::new(Heartbeats::default());
        status("Enumerating devices");
        let devices = DeviceManager::start(
            config.devices.simulated.clone(),
            extra_providers,
            heartbeats.clone(),
        );
        let workers = WorkerPool::start(
            config.performance.max_workers,
            config.performance.queue_size,
            Duration::from_secs_f64(config.performance.worker_timeout),
            &heartbeats,
        );
        let agent = Arc::new(Self {
            config: RwLock::new(Arc::new(config)),
            store,
            vault,
            engines: RwLock::default(),
            devices,
            workers,
            heartbeats,
            metrics: Metrics::new(),
            master_source,
            started: Instant::now(),
            unreadable: AtomicU64::new(0),
            site_keys,
            sync_status: std::sync::OnceLock::new(),
            endpoints: RwLock::default(),
            rotation: tokio::sync::Mutex::new(()),
        });
        status("Loading engines and galleries");
        let enabled: Vec<Modality> = Modality::ALL
            .into_iter()
            .filter(|m| agent.config().engine(*m).enabled)
            .collect();
        for modality in enabled {
            agent.load_engine(modality)?;
        }
        agent.refresh_gauges();
        Ok(agent)
    }

    /// The configuration in effect.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a reloaded configuration: thresholds, engines, devices. Settings that need a
    /// restart (store, keys, listeners, workers) are reported, not applied.
    pub fn apply_config(&self, new: Config) -> Result<Vec<String>, StartError> {
        let old = self.config();
        let mut needs_restart = Vec::new();
        let checks: [(&str, bool); 7] = [
            ("storage", old.storage != new.storage),
            ("keys", old.keys != new.keys),
            ("api", old.api != new.api),
            ("performance", old.performance != new.performance),
            ("monitoring", old.monitoring != new.monitoring),
            ("sync", old.sync != new.sync || old.agent != new.agent),
            ("devices.serial", old.devices.serial != new.devices.serial),
        ];
        for (section, changed) in checks {
            if changed {
                needs_restart.push(section.to_string());
            }
        }
        for modality in Modality::ALL {
            if new.engine(modality).enabled && !self.engines_read().contains_key(&modality) {
                self.load_engine(modality)?;
            }
        }
        if old.devices.simulated != new.devices.simulated {
            self.devices.reload_simulated(new.devices.simulated.clone());
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.refresh_gauges();
        Ok(needs_restart)
    }

    fn engines_read(&self) -> std::sync::RwLockReadGuard<'_, EngineTable> {
        self.engines.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine and gallery of an enabled modality.
    pub fn engine(&self, modality: Modality) -> Option<(Arc<dyn Engine>, SharedGallery)> {
        if !self.config().engine(modality).enabled {
            return None;
        }
        self.engines_read().get(&modality).cloned()
    }

    /// Modalities with a loaded engine.
    pub fn loaded_modalities(&self) -> Vec<Modality> {
        self.engines_read().keys().copied().collect()
    }

    /// Who this agent is, for events.
    pub fn origin(&self) -> Origin {
        let c = self.config();
        Origin {
            site: c.agent.site.clone(),
            agent: c.agent.id.clone(),
            enabled: c.sync.enabled,
        }
    }

    /// The site keys sealing distributed templates, when sync is on.
    pub fn site_keys(&self) -> Option<Arc<apg_sync::seal::SiteKeyring>> {
        self.site_keys.clone()
    }

    /// Follows the sync task's status (set once, when sync starts).
    pub fn set_sync_status(&self, status: tokio::sync::watch::Receiver<apg_sync::SyncStatus>) {
        let _ = self.sync_status.set(status);
    }

    /// The sync task's latest status; `None` when sync is off or not started.
    pub fn sync_status(&self) -> Option<apg_sync::SyncStatus> {
        self.sync_status.get().map(|rx| rx.borrow().clone())
    }

    /// Where the agent listens.
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records where the agent listens, once bound.
    pub fn set_endpoints(&self, endpoints: Endpoints) {
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = endpoints;
    }

    /// Rebuilds every gallery from the store (after a restore).
    pub fn reload_galleries(&self) -> Result<(), StartError> {
        self.unreadable.store(0, Ordering::Relaxed);
        let loaded = self.loaded_modalities();
        for modality in loaded {
            let engine = self.engines_read()[&modality].0.clone();
            let gallery = self.fill_gallery(engine.as_ref())?;
            let shared = self.engines_read()[&modality].1.clone();
            *shared.write().unwrap_or_else(|p| p.into_inner()) = gallery;
        }
        self.refresh_gauges();
        Ok(())
    }

    /// Templates that failed to open at the last gallery load.
    pub fn unreadable_templates(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    fn load_engine(&self, modality: Modality) -> Result<(), StartError> {
        let engine =
            engines::load(modality).map_err(|error| StartError::Engine { modality, error })?;
        let gallery = self.fill_gallery(engine.as_ref())?;
        self.engines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(modality, (engine, Arc::new(RwLock::new(gallery))));
        Ok(())
    }

    /// Decrypts every template of the engine's modality into a new gallery. A row that does not
    /// open or parse is skipped, logged with its ids and audited; the agent carries on.
    fn fill_gallery(&self, engine: &dyn Engine) -> Result<Box<dyn Gallery>, StartError> {
        let modality = engine.modality();
        let rows = self
            .store
            .read(|c| templates::by_modality(c, modality.as_str()))?;
        let mut gallery = engine.new_gallery();
        let mut unreadable = 0;
        for row in &rows {
            let result = self
                .vault
                .open_row(row)
                .map_err(|e| e.to_string())
                .and_then(|plain| {
                    gallery
                        .insert(row.id, row.subject_id, &plain)
                        .map_err(|e| e.to_string())
                });
            if let Err(error) = result {
                unreadable += 1;
                tracing::error!(template = %row.id, subject = %row.subject_id, modality = %modality, error = %error,
                    "Stored template cannot be used; it is left out of the gallery. Re-enroll the subject or restore a backup.");
                let entry = AuditEntry {
                    id: store::new_id(),
                    created_at: store::now(),
                    actor: "agent".into(),
                    action: "template.unreadable".into(),
                    subject_id: Some(row.subject_id),
                    detail: serde_json::json!({ "template_id": row.id, "modality": modality.as_str(), "error": error }),
                };
                self.store
                    .write(|tx| audit::append(tx, self.vault.audit_key(), &entry))?;
            }
        }
        self.unreadable.fetch_add(unreadable, Ordering::Relaxed);
        tracing::info!(modality = %modality, templates = gallery.len(), unreadable, "Gallery loaded.");
        Ok(gallery)
    }

    /// Updates the gauges that mirror the store and the devices.
    pub fn refresh_gauges(&self) {
        if let Ok(counts) = self.store.read(templates::count_by_modality) {
            for m in Modality::ALL {
                let n = counts
                    .iter()
                    .find(|(name, _)| name == m.as_str())
                    .map_or(0, |(_, n)| *n);
                self.metrics
                    .templates_stored
                    .with_label_values(&[m.as_str()])
                    .set(n as i64);
            }
        }
        if let Ok(depth) = self.store.read(store::outbox::depth) {
            self.metrics.outbox_depth.set(depth as i64);
        }
        for d in self.devices.list() {
            let up = matches!(
                d.info.state,
                apg_device::DeviceState::Ready | apg_device::DeviceState::Busy
            );
            self.metrics
                .device_up
                .with_label_values(&[&d.info.id, &d.info.driver, d.info.kind.label()])
                .set(i64::from(up));
        }
        self.metrics.queue_depth.set(self.workers.queued() as i64);
        self.metrics
            .templates_unreadable
            .set(self.unreadable_templates() as i64);
    }

    /// Removes a subject's templates from every gallery.
    pub fn forget_subject(&self, subject: Uuid) {
        for (_, gallery) in self.engines_read().values() {
            gallery
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove_subject(subject);
        }
    }
}
