//! Prometheus metrics and the `/health` + `/metrics` endpoint.

use std::{net::SocketAddr, sync::Arc};

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The hub's counters.
pub struct Metrics {
    registry: Registry,
    pub messages_in: IntCounter,
    pub inserted: IntCounter,
    pub duplicates: IntCounter,
    pub dead_letters: IntCounter,
    pub distributed: IntCounter,
    pub lag_seconds: Histogram,
    pub mqtt_connected: IntGauge,
    pub postgres_up: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let lag_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "apg_hub_lag_seconds",
                "Time from the decision at the agent to its arrival at the hub",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
        )
        .unwrap_or_else(|e| panic!("metric lag: {e}"));
        registry
            .register(Box::new(lag_seconds.clone()))
            .unwrap_or_else(|e| panic!("metric lag: {e}"));
        Self {
            messages_in: counter(
                &registry,
                "apg_hub_messages_in_total",
                "MQTT messages received",
            ),
            inserted: counter(
                &registry,
                "apg_hub_events_inserted_total",
                "Events inserted into PostgreSQL",
            ),
            duplicates: counter(
                &registry,
                "apg_hub_events_duplicate_total",
                "Redelivered events dropped by event id",
            ),
            dead_letters: counter(
                &registry,
                "apg_hub_dead_letters_total",
                "Messages written to biometric.dead_letters",
            ),
            distributed: counter(
                &registry,
                "apg_hub_distributed_total",
                "Templates and deletions published to sites",
            ),
            mqtt_connected: gauge(
                &registry,
                "apg_hub_mqtt_connected",
                "1 when connected to the broker",
            ),
            postgres_up: gauge(
                &registry,
                "apg_hub_postgres_up",
                "1 when the last PostgreSQL write succeeded",
            ),
            lag_seconds,
            registry,
        }
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Serves `GET /health` (200 when broker and database are up, 503 otherwise) and `GET /metrics`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for health_listen; health and metrics are off");
            return;
        }
    };
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                "/health" => {
                    let mqtt = metrics.mqtt_connected.get() == 1;
                    let pg = metrics.postgres_up.get() == 1;
                    let status = if mqtt && pg {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    (
                        status,
                        "application/json",
                        format!("{{\"mqtt_connected\":{mqtt},\"postgres_up\":{pg}}}"),
                    )
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
