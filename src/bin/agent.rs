//! `apg-biometric-agent`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The apg-biometric edge agent.
#[derive(Parser, Debug)]
#[command(name = "apg-biometric-agent", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run in the foreground (as a systemd Type=notify service).
    Run {
        /// Configuration file.
        #[arg(long, env = "APG_BIOMETRIC_CONFIG", default_value = apg_biometric::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Check a configuration file (with the environment's overrides) and print every problem.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Run { config } => match apg_biometric::daemon::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("apg-biometric-agent: {e:#}");
                tracing::error!(error = format!("{e:#}"), "Agent failed.");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { file } => match apg_biometric::daemon::load_config(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} profile)",
                    file.display(),
                    config.profile().label()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}:", file.display());
                for problem in e.problems() {
                    eprintln!("  {problem}");
                }
                ExitCode::from(2)
            }
        },
    }
}
