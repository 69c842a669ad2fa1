//! Log output through `tracing`: JSON lines (production) or text, to stderr (journald) and
//! optionally a file, with the level changeable on reload.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{LogFormat, Logging};

/// Lets a configuration reload change the log level.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    format: LogFormat,
    file: Option<std::path::PathBuf>,
}

fn filter(level: &str) -> EnvFilter {
    // Our crates at the configured level; noisy dependencies one step quieter.
    EnvFilter::new(format!("warn,apg_biometric={level},apg_sync={level},apg_device={level},apg_sim={level},apg_fp_usb={level},apg_zhiantec={level}"))
}

/// Installs the global subscriber. Fails only when the log file cannot be opened.
pub fn init(config: &Logging) -> Result<LogHandle, String> {
    let (filter_layer, handle) = reload::Layer::new(filter(&config.level));
    let file = match &config.file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    format!(
                        "cannot open log file {} (logging.file): {e}",
                        path.display()
                    )
                })?,
        ),
        None => None,
    };
    let file = Mutex::new(match file {
        Some(f) => NullOr::File(f),
        None => NullOr::Null,
    });
    let registry = tracing_subscriber::registry().with(filter_layer);
    let result = match config.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr.and(file)),
            )
            .try_init(),
        // Colour codes only where a person reads a terminal: journald and log files would
        // store them as escape bytes.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(file),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(LogHandle {
        filter: handle,
        format: config.format,
        file: config.file.clone(),
    })
}

impl LogHandle {
    /// Applies a reloaded logging section; returns what needs a restart.
    pub fn apply(&self, config: &Logging) -> Option<&'static str> {
        if let Err(e) = self.filter.reload(filter(&config.level)) {
            tracing::warn!(error = %e, "Cannot change the log level.");
        }
        (config.format != self.format || config.file != self.file)
            .then_some("logging.format and logging.file")
    }
}

/// Either a log file or nothing.
enum NullOr {
    Null,
    File(std::fs::File),
}

impl std::io::Write for NullOr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Null => Ok(buf.len()),
            Self::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Null => Ok(()),
            Self::File(f) => f.flush(),
        }
    }
}
