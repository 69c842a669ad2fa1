//! `apg-fp-serial-emulator`: an emulated ZhianTec/Synochip fingerprint module on a
//! pseudo-terminal. Prints the port path, then serves until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use apg_fp_serial::emulator::{load_image, EmulatorConfig, PtyEmulator};
use apg_fp_serial::image;

const USAGE: &str = "usage: apg-fp-serial-emulator [--image FILE.png|FILE.pgm]... [--password N] \
[--address N] [--library-size N] [--packet-size 32|64|128|256] [--absent-polls N] [--present-polls N]

Emulates a fingerprint module (R30x/R503/AS608 protocol) on a pseudo-terminal and prints its
path. Numbers may be decimal or 0x-prefixed hex. Repeat --image for several impressions: each
finger placement images the next one, in turn. Without --image a synthetic ridge pattern is
used. Stop with Ctrl-C.";

fn number(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s} is not a number"))
}

fn parse() -> Result<(EmulatorConfig, Vec<PathBuf>), String> {
    let mut cfg = EmulatorConfig::default();
    let mut images = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            return Err(String::new());
        }
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--image" => images.push(PathBuf::from(v)),
            "--password" => cfg.password = number(&v)?,
            "--address" => cfg.address = number(&v)?,
            "--library-size" => {
                cfg.library_size = u16::try_from(number(&v)?).map_err(|_| "library too big")?
            }
            "--packet-size" => {
                cfg.packet_size_code = match number(&v)? {
                    32 => 0,
                    64 => 1,
                    128 => 2,
                    256 => 3,
                    n => return Err(format!("packet size {n}: use 32, 64, 128 or 256")),
                }
            }
            "--absent-polls" => cfg.absent_polls = number(&v)?,
            "--present-polls" => cfg.present_polls = number(&v)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok((cfg, images))
}

fn main() -> ExitCode {
    let (cfg, paths) = match parse() {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("apg-fp-serial-emulator: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut impressions = Vec::with_capacity(paths.len().max(1));
    for p in &paths {
        match load_image(p) {
            Ok(px) => impressions.push(px),
            Err(e) => {
                eprintln!("apg-fp-serial-emulator: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if impressions.is_empty() {
        impressions.push(image::synthetic_ridges(1));
    }
    let emu = match PtyEmulator::start_with_presentations(cfg, impressions) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("apg-fp-serial-emulator: opening a pseudo-terminal: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", emu.path().display());
    let _ = std::io::stdout().flush();
    eprintln!(
        "apg-fp-serial-emulator: module on {} (any baud; the agent config entry is `path: {}`); Ctrl-C stops",
        emu.path().display(),
        emu.path().display()
    );
    loop {
        std::thread::park();
    }
}
