//! The sync task: one connection at a time, the outbox drain, inbound distribution.
//!
//! Each connection gets a fresh rumqttc event loop polled by its own small task, which forwards
//! every event here. Publishes are numbered by rumqttc in the order they are requested, and
//! rumqttc reports each as `Outgoing::Publish(pkid)` in that order, so the drain pairs packet
//! ids with outbox rows. A PUBACK only means the broker has the event; the row leaves the
//! outbox when the hub's receipt says the event is committed. A row without a receipt within
//! `receipt_timeout` of its PUBACK (a broker that lost it, a hub that crashed before sending
//! the receipt) makes the drain start again from the oldest row still in the outbox. After any
//! failure the event loop is dropped with everything it had queued, and the next connection
//! also starts again from the oldest row: the broker may see an event twice, never zero
//! times, and the hub drops the duplicate by event id.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use apg_wire::{
    AgentState, AgentTopics, Command, CommandAction, Event, EventType, Status, WIRE_VERSION,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, Outgoing, Packet, Publish, QoS,
};
use tokio::{
    sync::{mpsc, watch, Notify},
    task::JoinHandle,
};
use uuid::Uuid;

use crate::{
    backoff::Backoff,
    config::{self, SyncConfig, SyncConfigError},
    failure::{FailureKind, FailureLog, SyncFailure},
    inbound::{self, Inbound},
    outbox::{Outbox, OutboxError, OutboxEvent},
    seal::SiteKeyring,
    sink::{SinkError, TemplateSink},
    status::SyncStatus,
};

/// Builder of the sync task.
pub struct SyncTask {
    config: SyncConfig,
    keys: SiteKeyring,
    outbox: Arc<dyn Outbox>,
    sink: Arc<dyn TemplateSink>,
    commands: Option<mpsc::Sender<Command>>,
}

/// Handle to a running sync task.
pub struct SyncHandle {
    notify: Arc<Notify>,
    status: watch::Receiver<SyncStatus>,
    shutdown: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl SyncHandle {
    /// Tells the drain that the outbox has new events (call after the transaction commits).
    /// Without it the drain still finds them within `poll_interval`.
    pub fn outbox_changed(&self) {
        self.notify.notify_one();
    }

    /// A waker for code that commits outbox rows on other threads (the store's commit hook).
    pub fn waker(&self) -> OutboxWaker {
        OutboxWaker(self.notify.clone())
    }

    /// The latest status snapshot.
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Publishes the retained `offline` status, disconnects cleanly and waits for the task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.join.await;
    }
}

/// Wakes the drain after new outbox rows are committed. Cheap to clone and to call.
#[derive(Debug, Clone)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Tells the drain that the outbox has new events.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl SyncTask {
    /// A sync task for `config`, publishing from `outbox` and importing into `sink`.
    pub fn new(
        config: SyncConfig,
        keys: SiteKeyring,
        outbox: Arc<dyn Outbox>,
        sink: Arc<dyn TemplateSink>,
    ) -> Self {
        Self {
            config,
            keys,
            outbox,
            sink,
            commands: None,
        }
    }

    /// Forwards commands from the hub to the agent on this channel.
    pub fn with_commands(mut self, commands: mpsc::Sender<Command>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Checks the configuration and starts the task on the current tokio runtime.
    pub fn spawn(self) -> Result<SyncHandle, SyncConfigError> {
        let topics = AgentTopics::new(&self.config.site, &self.config.agent).map_err(|source| {
            SyncConfigError::Name {
                key: "site/agent",
                source,
            }
        })?;
        if self.keys.site() != self.config.site {
            return Err(SyncConfigError::OutOfRange {
                key: "site",
                value: self.config.site.clone(),
                allowed: "the site of the site keys",
            });
        }
        let will = Status::new(
            &self.config.site,
            &self.config.agent,
            AgentState::Offline,
            apg_wire::time::now(),
        );
        let options = config::mqtt_options(&self.config, will.to_json(), topics.status())?;
        let initial = SyncStatus {
            outbox_limit: self.config.outbox_limit,
            ..SyncStatus::default()
        };
        let (status_tx, status_rx) = watch::channel(initial.clone());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let notify = Arc::new(Notify::new());
        let drain = Drain {
            broker: self.config.broker_url.clone(),
            stats: initial,
            config: self.config,
            topics,
            options,
            keys: self.keys,
            outbox: self.outbox,
            sink: self.sink,
            commands: self.commands,
            notify: notify.clone(),
            status_tx,
            shutdown_rx,
        };
        let join = tokio::spawn(drain.run());
        Ok(SyncHandle {
            notify,
            status: status_rx,
            shutdown: shutdown_tx,
            join,
        })
    }
}

/// What a publish waiting for its packet id or PUBACK stands for.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Event(Uuid),
    Status,
}

#[derive(Default)]
struct Session {
    connected: bool,
    /// Requested publishes whose packet id rumqttc has not reported yet, in request order.
    awaiting_pkid: VecDeque<Sent>,
    /// Publishes on the wire, by packet id.
    in_flight: HashMap<u16, Sent>,
    /// Rows read from the outbox, not yet published.
    queued: VecDeque<OutboxEvent>,
    /// `seq` of the last row read from the outbox.
    cursor: Option<u64>,
    /// Events the broker has (PUBACK), waiting for the hub's receipt, with the PUBACK time.
    unconfirmed: HashMap<Uuid, Instant>,
    /// Events the hub confirmed, to remove from the outbox.
    acked: Vec<Uuid>,
    /// A missing receipt was already reported in this session.
    receipt_warned: bool,
    /// The outbox may hold rows after `cursor`.
    maybe_more: bool,
}

enum SessionEnd {
    Shutdown,
    Failed(SyncFailure, bool),
}

struct Drain {
    broker: String,
    config: SyncConfig,
    topics: AgentTopics,
    options: rumqttc::MqttOptions,
    keys: SiteKeyring,
    outbox: Arc<dyn Outbox>,
    sink: Arc<dyn TemplateSink>,
    commands: Option<mpsc::Sender<Command>>,
    notify: Arc<Notify>,
    status_tx: watch::Sender<SyncStatus>,
    shutdown_rx: watch::Receiver<bool>,
    stats: SyncStatus,
}

type Polled = Result<MqttEvent, ConnectionError>;

async fn poll_loop(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Polled>) {
    loop {
        let polled = eventloop.poll().await;
        let failed = polled.is_err();
        if tx.send(polled).is_err() || failed {
            return;
        }
    }
}

async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(OutboxError {
            operation,
            message: format!("the store call panicked or was cancelled: {e}"),
        })
    })
}

fn store_failure(detail: String) -> SessionEnd {
    SessionEnd::Failed(
        SyncFailure {
            kind: FailureKind::StoreUnavailable,
            detail,
        },
        true,
    )
}

impl Drain {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        let mut log = FailureLog::default();
        let capacity = usize::from(self.config.max_in_flight) + 64;
        loop {
            if *self.shutdown_rx.borrow() {
                return;
            }
            let (client, eventloop) = AsyncClient::new(self.options.clone(), capacity);
            let (tx, rx) = mpsc::unbounded_channel();
            let poller = tokio::spawn(poll_loop(eventloop, tx));
            let end = self.session(&client, rx, &mut log).await;
            poller.abort();
            self.stats.connected = false;
            match end {
                SessionEnd::Shutdown => {
                    self.publish_status();
                    tracing::info!(broker = %self.broker, "Sync stopped.");
                    return;
                }
                SessionEnd::Failed(failure, was_connected) => {
                    if was_connected {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    log.failed(&failure, &self.broker, delay);
                    self.stats.last_failure = Some(failure);
                    self.publish_status();
                    let mut shutdown = self.shutdown_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    fn publish_status(&self) {
        self.status_tx.send_replace(self.stats.clone());
    }

    async fn session(
        &mut self,
        client: &AsyncClient,
        mut rx: mpsc::UnboundedReceiver<Polled>,
        log: &mut FailureLog,
    ) -> SessionEnd {
        let mut s = Session {
            maybe_more: true,
            ..Session::default()
        };
        let mut tick = tokio::time::interval(self.config.poll_interval);
        let mut shutdown = self.shutdown_rx.clone();
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => return self.close(client, &mut rx, &mut s).await,
                polled = rx.recv() => self.on_polled(polled, client, &mut s, log).await,
                _ = self.notify.notified() => { s.maybe_more = true; Ok(()) }
                _ = tick.tick() => {
                    s.maybe_more = true;
                    self.check_receipts(&mut s);
                    self.check_depth().await
                }
            };
            // Take whatever else the event loop has ready before touching the store, so that
            // acknowledgements are removed in batches.
            let step = match step {
                Ok(()) => loop {
                    match rx.try_recv() {
                        Ok(polled) => {
                            if let Err(end) =
                                self.on_polled(Some(polled), client, &mut s, log).await
                            {
                                break Err(end);
                            }
                        }
                        Err(_) => break Ok(()),
                    }
                },
                err => err,
            };
            let flushed = self.flush_acks(&mut s).await;
            if let Err(end) = step.and(flushed) {
                self.publish_status();
                return end;
            }
            if s.connected {
                if let Err(end) = self.top_up(client, &mut s).await {
                    return end;
                }
            }
            self.publish_status();
        }
    }

    async fn on_polled(
        &mut self,
        polled: Option<Polled>,
        client: &AsyncClient,
        s: &mut Session,
        log: &mut FailureLog,
    ) -> Result<(), SessionEnd> {
        let event = match polled {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                return Err(SessionEnd::Failed(
                    SyncFailure::classify(&error, s.connected),
                    s.connected,
                ))
            }
            None => {
                return Err(SessionEnd::Failed(
                    SyncFailure {
                        kind: FailureKind::ConnectionLost,
                        detail: "the MQTT event loop stopped".into(),
                    },
                    s.connected,
                ))
            }
        };
        match event {
            MqttEvent::Incoming(Packet::ConnAck(_)) => {
                s.connected = true;
                log.connected(&self.broker);
                self.stats.connected = true;
                self.stats.connections += 1;
                self.stats.last_failure = None;
                let lost = |e: rumqttc::ClientError| lost_client(e, true);
                for filter in [
                    self.topics.templates_filter(),
                    self.topics.commands_filter(),
                    self.topics.receipts(),
                ] {
                    client
                        .subscribe(filter, QoS::AtLeastOnce)
                        .await
                        .map_err(lost)?;
                }
                self.publish_online(client, s).await?;
            }
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => match s.awaiting_pkid.pop_front() {
                Some(sent) => {
                    s.in_flight.insert(pkid, sent);
                }
                None => tracing::warn!(pkid, "Publish reported that the drain did not request."),
            },
            MqttEvent::Incoming(Packet::PubAck(ack)) => match s.in_flight.remove(&ack.pkid) {
                Some(Sent::Event(id)) => {
                    s.unconfirmed.insert(id, Instant::now());
                }
                Some(Sent::Status) => {}
                None => tracing::debug!(
                    pkid = ack.pkid,
                    "PUBACK for a publish of an earlier connection."
                ),
            },
            MqttEvent::Incoming(Packet::Publish(publish)) => {
                self.on_delivery(client, s, publish).await?
            }
            _ => {}
        }
        Ok(())
    }

    async fn publish_online(
        &mut self,
        client: &AsyncClient,
        s: &mut Session,
    ) -> Result<(), SessionEnd> {
        let online = Status::new(
            &self.config.site,
            &self.config.agent,
            AgentState::Online,
            apg_wire::time::now(),
        );
        client
            .publish(
                self.topics.status(),
                QoS::AtLeastOnce,
                true,
                online.to_json(),
            )
            .await
            .map_err(|e| lost_client(e, true))?;
        s.awaiting_pkid.push_back(Sent::Status);
        Ok(())
    }

    async fn on_delivery(
        &mut self,
        client: &AsyncClient,
        s: &mut Session,
        publish: Publish,
    ) -> Result<(), SessionEnd> {
        let topic = publish.topic.clone();
        let decision = inbound::classify(&topic, &publish.payload, &self.config.agent, &self.keys);
        let applied = match decision {
            Inbound::Import(template) => {
                let (sink, id) = (self.sink.clone(), template.template_id);
                let subject = template.subject_id;
                let r = run_sink(move || sink.import(template)).await;
                self.sink_result(r, "Template imported.", &topic, id, subject)?
            }
            Inbound::Delete(deletion) => {
                let sink = self.sink.clone();
                let subject = deletion.subject_id;
                let r = run_sink(move || sink.delete_subject(&deletion)).await;
                self.sink_result(
                    r,
                    "Subject deleted as distributed.",
                    &topic,
                    subject,
                    subject,
                )?
            }
            Inbound::Receipt(receipt) => {
                for id in receipt.event_ids {
                    s.unconfirmed.remove(&id);
                    s.acked.push(id);
                }
                false
            }
            Inbound::Command(command) => {
                tracing::info!(command_id = %command.command_id, action = command.action.as_str(), "Command received from the hub.");
                if command.action == CommandAction::RepublishStatus {
                    self.publish_online(client, s).await?;
                }
                if let Some(tx) = &self.commands {
                    if tx.try_send(command).is_err() {
                        tracing::warn!(
                            topic,
                            "Command dropped: the agent is not reading commands."
                        );
                    }
                }
                false
            }
            Inbound::Ignore(why) => {
                tracing::debug!(topic, why, "Distributed message ignored.");
                false
            }
            Inbound::Refuse(reason) => {
                tracing::warn!(
                    topic,
                    reason,
                    "Distributed message refused; nothing was imported."
                );
                self.stats.templates_refused += 1;
                false
            }
        };
        if applied {
            self.stats.templates_applied += 1;
        }
        client.ack(&publish).await.map_err(|e| lost_client(e, true))
    }

    /// Turns a sink result into "applied", "refused" (both acknowledged) or a session end
    /// (not acknowledged: the broker redelivers after the reconnect).
    fn sink_result(
        &mut self,
        result: Result<(), SinkError>,
        done: &'static str,
        topic: &str,
        id: Uuid,
        subject: Uuid,
    ) -> Result<bool, SessionEnd> {
        match result {
            Ok(()) => {
                tracing::info!(topic, id = %id, subject_id = %subject, "{done}");
                Ok(true)
            }
            Err(SinkError::Rejected(reason)) => {
                tracing::warn!(topic, id = %id, subject_id = %subject, reason, "The agent's store refused a distributed message.");
                self.stats.templates_refused += 1;
                Ok(false)
            }
            Err(e @ SinkError::Unavailable(_)) => Err(store_failure(format!(
                "distributed message {id} for subject {subject} not applied: {e}"
            ))),
        }
    }

    async fn flush_acks(&mut self, s: &mut Session) -> Result<(), SessionEnd> {
        if s.acked.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut s.acked);
        let n = ids.len() as u64;
        let outbox = self.outbox.clone();
        blocking("acknowledge events", move || outbox.ack(&ids))
            .await
            .map_err(|e| store_failure(e.to_string()))?;
        self.stats.acknowledged += n;
        Ok(())
    }

    async fn top_up(&mut self, client: &AsyncClient, s: &mut Session) -> Result<(), SessionEnd> {
        let window = usize::from(self.config.max_in_flight);
        while s.awaiting_pkid.len() + s.in_flight.len() < window {
            if s.queued.is_empty() {
                if !s.maybe_more {
                    break;
                }
                let (outbox, after, max) = (self.outbox.clone(), s.cursor, self.config.batch_size);
                let batch = blocking("read events", move || outbox.peek_batch(after, max))
                    .await
                    .map_err(|e| store_failure(e.to_string()))?;
                s.maybe_more = batch.len() >= max;
                if batch.is_empty() {
                    break;
                }
                s.queued.extend(batch);
            }
            let Some(row) = s.queued.pop_front() else {
                break;
            };
            s.cursor = Some(row.seq);
            let topic = self.topics.event(row.event_type());
            let event = Event {
                version: WIRE_VERSION,
                event_id: row.event_id,
                site: self.config.site.clone(),
                agent: self.config.agent.clone(),
                seq: row.seq,
                occurred_at: row.occurred_at,
                body: row.body,
            };
            client
                .publish(topic, QoS::AtLeastOnce, false, event.to_json())
                .await
                .map_err(|e| lost_client(e, true))?;
            s.awaiting_pkid.push_back(Sent::Event(row.event_id));
            self.stats.published += 1;
        }
        Ok(())
    }

    /// Starts again from the oldest row when an event waited too long for its receipt.
    fn check_receipts(&mut self, s: &mut Session) {
        let timeout = self.config.receipt_timeout;
        let overdue = s
            .unconfirmed
            .values()
            .filter(|acked_at| acked_at.elapsed() > timeout)
            .count();
        if overdue == 0 {
            return;
        }
        if !s.receipt_warned {
            tracing::warn!(
                overdue,
                timeout_s = timeout.as_secs(),
                "The hub has not confirmed events the broker accepted; publishing every unconfirmed event again (the hub drops duplicates)."
            );
            s.receipt_warned = true;
        }
        s.unconfirmed.clear();
        s.queued.clear();
        s.cursor = None;
        s.maybe_more = true;
    }

    async fn check_depth(&mut self) -> Result<(), SessionEnd> {
        let outbox = self.outbox.clone();
        let depth = blocking("count events", move || outbox.depth())
            .await
            .map_err(|e| store_failure(e.to_string()))?;
        self.stats.outbox_depth = depth.events;
        let limit = self.config.outbox_limit;
        if depth.events > limit {
            if !self.stats.outbox_over_limit {
                tracing::warn!(depth = depth.events, records = depth.records, limit, "Outbox is over its limit; decisions are kept, superseded health snapshots are discarded.");
            }
            self.stats.outbox_over_limit = true;
            for event_type in EventType::ALL.into_iter().filter(|t| !t.is_record()) {
                let outbox = self.outbox.clone();
                let n = blocking("discard superseded events", move || {
                    outbox.discard_superseded(event_type)
                })
                .await
                .map_err(|e| store_failure(e.to_string()))?;
                if n > 0 {
                    self.stats.discarded += n;
                    tracing::warn!(
                        event_type = event_type.as_str(),
                        discarded = n,
                        "Discarded superseded events from the full outbox."
                    );
                }
            }
        } else if self.stats.outbox_over_limit {
            tracing::info!(
                depth = depth.events,
                limit,
                "Outbox is back under its limit."
            );
            self.stats.outbox_over_limit = false;
        }
        Ok(())
    }

    /// Clean shutdown: retained `offline`, then DISCONNECT (so the broker does not send the
    /// last will), waiting a bounded time for the broker to take both.
    async fn close(
        &mut self,
        client: &AsyncClient,
        rx: &mut mpsc::UnboundedReceiver<Polled>,
        s: &mut Session,
    ) -> SessionEnd {
        if s.connected {
            let offline = Status::new(
                &self.config.site,
                &self.config.agent,
                AgentState::Offline,
                apg_wire::time::now(),
            );
            let queued = client
                .publish(
                    self.topics.status(),
                    QoS::AtLeastOnce,
                    true,
                    offline.to_json(),
                )
                .await
                .is_ok()
                && client.disconnect().await.is_ok();
            let deadline = tokio::time::sleep(Duration::from_secs(3));
            tokio::pin!(deadline);
            #[allow(clippy::while_immutable_condition)]
            while queued {
                // Ends on the deadline, the DISCONNECT going out, or the connection closing.
                tokio::select! {
                    _ = &mut deadline => break,
                    polled = rx.recv() => match polled {
                        Some(Ok(MqttEvent::Incoming(Packet::PubAck(ack)))) => {
                            if let Some(Sent::Event(id)) = s.in_flight.remove(&ack.pkid) {
                                s.acked.push(id);
                            }
                        }
                        Some(Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid)))) => {
                            if let Some(sent) = s.awaiting_pkid.pop_front() {
                                s.in_flight.insert(pkid, sent);
                            }
                        }
                        Some(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        let _ = self.flush_acks(s).await;
        SessionEnd::Shutdown
    }
}

async fn run_sink(
    f: impl FnOnce() -> Result<(), SinkError> + Send + 'static,
) -> Result<(), SinkError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SinkError::Unavailable(format!(
            "the store call panicked: {e}"
        )))
    })
}

fn lost_client(error: rumqttc::ClientError, connected: bool) -> SessionEnd {
    SessionEnd::Failed(
        SyncFailure {
            kind: FailureKind::ConnectionLost,
            detail: format!("the MQTT event loop stopped taking requests: {error}"),
        },
        connected,
    )
}
