//! Prints the udev rules for every supported reader, or writes them to the path given.
//!
//! Usage: `apg-udev-rules [OUTPUT]` (the repository keeps them in `udev/60-apg-biometric.rules`).

fn main() {
    let text = apg_fp_usb::udev::rules();
    match std::env::args_os().nth(1) {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!(
                    "apg-udev-rules: cannot write {}: {e}",
                    std::path::Path::new(&path).display()
                );
                std::process::exit(1);
            }
        }
        None => print!("{text}"),
    }
}
