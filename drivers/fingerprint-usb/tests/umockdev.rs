//! The umockdev ioctl reader handles every ioctl recording of a USB reader.

mod common;

use apg_fp_usb::recording::{device_address, Kind};
use apg_fp_usb::umockdev::{parse_ioctl, read_ioctl_recording, IoctlError};
use common::recordings;

#[test]
fn every_ioctl_recording_parses() {
    let mut parsed = Vec::new();
    let mut skipped = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(recordings())
        .expect("list recordings")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "ioctl"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let rec = match parse_ioctl(&text) {
                Ok(r) => r,
                Err(IoctlError::NotUsbdevfs(dev)) => {
                    // umockdev's SPI script format (TW/CR lines) and other non-usbdevfs
                    // devices hold no USB transfers.
                    eprintln!("skipped {}: not usbdevfs ({dev})", file.display());
                    assert!(!dev.starts_with("/dev/bus/usb"), "{dev}");
                    skipped.push(file);
                    continue;
                }
                Err(e) => panic!("{}: {e}", file.display()),
            };
            let addr = device_address(&dir.join("device")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                rec.usb_address(),
                Some(addr),
                "{}: @DEV differs from the device file",
                file.display()
            );
            let t = rec.transfers();
            assert!(!t.is_empty(), "{}: no transfers", file.display());
            assert!(
                t.iter()
                    .any(|t| t.endpoint & 0x80 != 0 && !t.in_data.is_empty()),
                "{}: the reader sent no data",
                file.display()
            );
            for t in &t {
                if t.endpoint & 0x80 == 0 {
                    assert!(t.in_data.is_empty(), "{}: OUT with IN data", file.display());
                } else {
                    assert!(
                        t.out_data.is_empty(),
                        "{}: IN with OUT data",
                        file.display()
                    );
                }
            }
            eprintln!(
                "{}: {} transfers, {} OUT, {} IN, {} not completed",
                file.display(),
                t.len(),
                t.iter().filter(|t| t.endpoint & 0x80 == 0).count(),
                t.iter().filter(|t| t.endpoint & 0x80 != 0).count(),
                t.iter().filter(|t| t.status != 0).count()
            );
            parsed.push(file);
        }
    }
    assert!(
        parsed.len() >= 8,
        "expected the usbdevfs ioctl recordings (aes3500, elan, nb1010, vfs*), parsed {parsed:?}"
    );
    assert!(
        skipped
            .iter()
            .all(|f| f.to_string_lossy().contains("elanspi")),
        "only the SPI recording may be skipped: {skipped:?}"
    );
}

#[test]
fn the_nb1010_recording_holds_three_commands_and_ninety_image_chunks() {
    let rec = read_ioctl_recording(&recordings().join("nb1010/capture.ioctl")).expect("parses");
    let t = rec.transfers();
    let outs: Vec<_> = t.iter().filter(|t| t.endpoint == 0x02).collect();
    let ins: Vec<_> = t.iter().filter(|t| t.endpoint == 0x83).collect();
    assert_eq!(t.len(), outs.len() + ins.len());
    assert!(t.iter().all(|t| t.kind == Kind::Bulk && t.status == 0));
    assert_eq!(outs.len(), 3);
    assert_eq!(outs[0].out_data, [0x80, 0x38, 0x01, 0, 0x08, 0, 0, 0]);
    assert_eq!(ins.len(), 93);
    assert_eq!(ins.iter().filter(|t| t.in_data.len() == 540).count(), 90);
    // The image chunks are a run of reads, each nested one level below the previous one.
    let last = rec.records.last().expect("records");
    assert_eq!(last.depth, 91);
    assert_eq!(last.parent, Some(rec.records.len() - 2));
    assert!(t.iter().all(|t| t.submitted == 0.0 && t.completed == 0.0));
}
