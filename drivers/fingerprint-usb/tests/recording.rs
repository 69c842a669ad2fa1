//! The usbmon reader handles every pcapng recording and separates devices sharing a bus.

mod common;

use apg_fp_usb::recording::{device_address, read_pcapng, read_pcapng_device, Kind};
use common::recordings;

#[test]
fn every_pcapng_recording_parses_and_filters_by_device() {
    let mut seen = 0;
    for entry in std::fs::read_dir(recordings()).expect("list recordings") {
        let dir = entry.expect("entry").path();
        let pcap = dir.join("capture.pcapng");
        if !pcap.is_file() {
            continue;
        }
        seen += 1;
        let all = read_pcapng(&pcap).unwrap_or_else(|e| panic!("{e}"));
        let addr = device_address(&dir.join("device")).unwrap_or_else(|e| panic!("{e}"));
        let mine = read_pcapng_device(&pcap, Some(addr)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !mine.is_empty(),
            "{}: no traffic for device {addr:?}",
            pcap.display()
        );
        assert!(mine.len() <= all.len());
        assert!(
            mine.iter()
                .any(|t| t.kind != Kind::Control && !t.in_data.is_empty()),
            "{}: the reader sent no data",
            pcap.display()
        );
    }
    assert!(
        seen >= 4,
        "expected several pcapng recordings, found {seen}"
    );
}

#[test]
fn the_4500_recording_holds_one_image_transfer() {
    let dir = recordings().join("uru4000-4500");
    let t = read_pcapng_device(
        &dir.join("capture.pcapng"),
        Some(device_address(&dir.join("device")).expect("device")),
    )
    .expect("parse");
    let bulk: Vec<_> = t.iter().filter(|t| t.kind == Kind::Bulk).collect();
    assert_eq!(bulk.len(), 1);
    assert_eq!(bulk[0].in_data.len(), 64 + 384 * 289);
}
