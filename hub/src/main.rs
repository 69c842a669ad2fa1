//! `apg-biometric-hub --config hub.yaml`: consumes agent events from the broker's shared
//! subscription into PostgreSQL (schema `biometric`) and distributes templates and deletions
//! to the agents of each site.

mod config;
mod db;
mod metrics;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use apg_wire::{topic, Event, ParsedTopic};
use clap::Parser;
use rumqttc::{
    AsyncClient, Event as MqttEvent, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use crate::{config::HubConfig, metrics::Metrics};

#[derive(Parser)]
#[command(
    version,
    about = "apg-biometric hub: MQTT events into PostgreSQL, template distribution"
)]
struct Args {
    /// Path of hub.yaml.
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("apg-biometric-hub: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn mqtt_options(config: &HubConfig) -> anyhow::Result<MqttOptions> {
    let broker = config.broker()?;
    let mut options = MqttOptions::new(&config.mqtt.client_id, broker.host, broker.port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(config.mqtt.keep_alive_secs.max(1)))
        .set_manual_acks(true)
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    if broker.tls {
        let files = apg_sync::TlsFiles {
            ca_file: config.mqtt.ca_file.clone().unwrap_or_default(),
            client_cert_file: config.mqtt.client_cert_file.clone().unwrap_or_default(),
            client_key_file: config.mqtt.client_key_file.clone().unwrap_or_default(),
        };
        let tls = apg_sync::tls::client_config(&files)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    Ok(options)
}

/// What the MQTT task hands to the writer.
enum Incoming {
    Message(Publish),
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = HubConfig::load(&args.config)?;
    let metrics = Arc::new(Metrics::new());
    let mut pg = db::connect(&config.postgres.url).await?;
    db::migrate(&mut pg).await?;
    tracing::info!("database schema biometric is up to date");

    let options = mqtt_options(&config)?;
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let filter = topic::hub_events_filter(&config.mqtt.group);

    tokio::spawn(metrics::serve(config.health_listen, metrics.clone()));

    let (tx, rx) = mpsc::unbounded_channel();
    let poll_client = client.clone();
    let poll_metrics = metrics.clone();
    let broker_url = config.mqtt.broker_url.clone();
    tokio::spawn(async move {
        let mut last_error: Option<String> = None;
        let mut delay = Duration::from_millis(200);
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(broker = %broker_url, session_present = ack.session_present, "connected to the broker");
                    last_error = None;
                    delay = Duration::from_millis(200);
                    poll_metrics.mqtt_connected.set(1);
                    // Subscribe on every connection: a restarted broker (Mosquitto 2.0.11) may
                    // have forgotten the shared subscription even with session_present.
                    if let Err(e) = poll_client
                        .subscribe(filter.clone(), QoS::AtLeastOnce)
                        .await
                    {
                        tracing::warn!(error = %e, "cannot queue the subscription");
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if tx.send(Incoming::Message(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    poll_metrics.mqtt_connected.set(0);
                    let text = e.to_string();
                    if last_error.as_deref() != Some(&text) {
                        tracing::warn!(broker = %broker_url, error = %text, "broker connection failed; retrying with backoff");
                        last_error = Some(text);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    });

    let writer = consume(config, pg, client, rx, metrics);
    tokio::select! {
        r = writer => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted, stopping");
            Ok(())
        }
    }
}

fn decode(p: &Publish) -> Result<Event, String> {
    match ParsedTopic::parse(&p.topic) {
        Ok(ParsedTopic::Event {
            site,
            agent,
            event_type,
        }) => Event::decode(&p.payload, &site, &agent, event_type).map_err(|e| e.to_string()),
        Ok(other) => Err(format!("not an event topic: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn consume(
    config: HubConfig,
    mut pg: tokio_postgres::Client,
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut writer = db::Writer::default();
    let max = config.batch.max_events;
    let wait = Duration::from_millis(config.batch.max_wait_ms);
    loop {
        let Some(Incoming::Message(first)) = rx.recv().await else {
            anyhow::bail!("the MQTT task stopped");
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Incoming::Message(p))) => batch.push(p),
                Ok(None) => anyhow::bail!("the MQTT task stopped"),
                Err(_) => break,
            }
        }
        metrics.messages_in.inc_by(batch.len() as u64);
        let mut events = Vec::with_capacity(batch.len());
        let mut bad = Vec::new();
        for p in &batch {
            match decode(p) {
                Ok(e) => {
                    let lag = (chrono::Utc::now() - e.occurred_at)
                        .num_milliseconds()
                        .max(0);
                    metrics.lag_seconds.observe(lag as f64 / 1000.0);
                    events.push(e)
                }
                Err(reason) => bad.push((p.topic.clone(), p.payload.to_vec(), reason)),
            }
        }
        // Retry until PostgreSQL takes the batch: nothing is acknowledged before that, so the
        // broker keeps every message of it.
        let mut delay = Duration::from_millis(250);
        let mut logged = false;
        let outcome = loop {
            let attempt = async {
                for (topic, payload, reason) in &bad {
                    db::dead_letter(&pg, topic, payload, reason).await?;
                }
                writer.write(&mut pg, &events).await
            };
            match attempt.await {
                Ok(o) => break o,
                Err(e) => {
                    metrics.postgres_up.set(0);
                    if !logged {
                        tracing::error!(error = %format!("{e:#}"), "PostgreSQL write failed; not acknowledging, retrying");
                        logged = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if pg.is_closed() {
                        match db::connect(&config.postgres.url).await {
                            Ok(c) => pg = c,
                            Err(e) => {
                                tracing::debug!(error = %format!("{e:#}"), "PostgreSQL still down")
                            }
                        }
                    }
                }
            }
        };
        if logged {
            tracing::info!("PostgreSQL is back; resuming");
        }
        metrics.postgres_up.set(1);
        metrics.inserted.inc_by(outcome.inserted);
        metrics.duplicates.inc_by(outcome.duplicates);
        metrics.dead_letters.inc_by(bad.len() as u64);
        for (_, _, reason) in &bad {
            tracing::warn!(%reason, "message sent to biometric.dead_letters");
        }
        for t in &outcome.templates {
            client
                .publish(
                    topic::template(&t.site, t.subject_id, t.template_id),
                    QoS::AtLeastOnce,
                    true,
                    t.to_json(),
                )
                .await
                .context("cannot queue a template for distribution")?;
            metrics.distributed.inc();
        }
        for (d, removed) in &outcome.deletions {
            client
                .publish(
                    topic::deletion(&d.site, d.subject_id),
                    QoS::AtLeastOnce,
                    true,
                    d.to_json(),
                )
                .await
                .context("cannot queue a deletion for distribution")?;
            for template_id in removed {
                // Clear the retained template so agents joining later do not import it.
                client
                    .publish(
                        topic::template(&d.site, d.subject_id, *template_id),
                        QoS::AtLeastOnce,
                        true,
                        Vec::new(),
                    )
                    .await
                    .context("cannot queue the removal of a retained template")?;
            }
            metrics.distributed.inc();
        }
        publish_receipts(&client, &events).await?;
        for p in &batch {
            client.ack(p).await.context("cannot queue a PUBACK")?;
        }
    }
}

/// Tells each agent which of its events are committed (new or already there), so that it can
/// drop them from its outbox. Until then the agent keeps them and publishes them again, which
/// covers a broker that loses a message after acknowledging it.
async fn publish_receipts(client: &AsyncClient, events: &[Event]) -> anyhow::Result<()> {
    let mut by_agent: std::collections::BTreeMap<(&str, &str), Vec<uuid::Uuid>> =
        std::collections::BTreeMap::new();
    for e in events {
        by_agent
            .entry((&e.site, &e.agent))
            .or_default()
            .push(e.event_id);
    }
    for ((site, agent), ids) in by_agent {
        client
            .publish(
                topic::receipt(site, agent),
                QoS::AtLeastOnce,
                false,
                apg_wire::Receipt::new(ids).to_json(),
            )
            .await
            .context("cannot queue a receipt")?;
    }
    Ok(())
}
