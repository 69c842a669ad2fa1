//! Prometheus metrics of the agent.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Verifications by modality and outcome (`accepted`, `rejected`, `locked`, `error`, ...).
    pub verification_requests: IntCounterVec,
    /// Time from request to decision, by modality.
    pub verification_duration: HistogramVec,
    /// Identifications by modality and outcome.
    pub identification_requests: IntCounterVec,
    /// Enrollments by modality and outcome.
    pub enrollments: IntCounterVec,
    /// Biometric operations in progress (enroll, verify, identify).
    pub active_sessions: IntGauge,
    /// Templates in the store, by modality.
    pub templates_stored: IntGaugeVec,
    /// 1 when a device is usable, 0 otherwise.
    pub device_up: IntGaugeVec,
    /// Captures by device and outcome label.
    pub captures: IntCounterVec,
    /// Events waiting in the outbox.
    pub outbox_depth: IntGauge,
    /// Requests waiting for a decision worker.
    pub queue_depth: IntGauge,
    /// Templates that failed to decrypt or parse when the gallery was loaded.
    pub templates_unreadable: IntGauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let verification_duration = HistogramVec::new(
            HistogramOpts::new(
                "biometric_verification_duration_seconds",
                "Time from a verification request to its decision, including capture.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["modality"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(verification_duration.clone()))
            .expect("unique metric");
        Self {
            verification_requests: counter(
                "biometric_verification_requests_total",
                "Verification requests by modality and outcome.",
                &["modality", "status"],
            ),
            verification_duration,
            identification_requests: counter(
                "biometric_identification_requests_total",
                "Identification requests by modality and outcome.",
                &["modality", "status"],
            ),
            enrollments: counter(
                "biometric_enrollments_total",
                "Enrollments by modality and outcome.",
                &["modality", "status"],
            ),
            active_sessions: gauge(
                "biometric_active_sessions",
                "Biometric operations in progress.",
            ),
            templates_stored: gauge_vec(
                "biometric_templates_stored_total",
                "Templates held in the store, by modality.",
                &["modality"],
            ),
            device_up: gauge_vec(
                "biometric_device_up",
                "1 when a capture device is usable, 0 when it is disconnected or failing.",
                &["device", "driver", "kind"],
            ),
            captures: counter(
                "biometric_captures_total",
                "Captures by device and outcome.",
                &["device", "outcome"],
            ),
            outbox_depth: gauge(
                "biometric_outbox_depth",
                "Events waiting to be sent to the hub.",
            ),
            queue_depth: gauge(
                "biometric_decision_queue_depth",
                "Requests waiting for a decision worker.",
            ),
            templates_unreadable: gauge(
                "biometric_templates_unreadable",
                "Stored templates that failed to decrypt or parse at gallery load.",
            ),
            registry,
        }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
