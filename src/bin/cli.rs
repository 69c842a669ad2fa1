//! `apg-biometric`: the operator CLI.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = apg_biometric::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apg-biometric: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(apg_biometric::cli::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("apg-biometric: {e:#}");
            ExitCode::FAILURE
        }
    }
}
