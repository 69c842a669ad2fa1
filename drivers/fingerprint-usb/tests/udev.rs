//! The checked-in udev rules match the driver table and parse.

use apg_fp_usb::provider::DRIVERS;
use apg_fp_usb::udev::{parse, rules, GROUP, SERIAL_BRIDGES};

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../udev/60-apg-biometric.rules"
);

#[test]
fn rules_file_is_in_sync_with_the_driver_table() {
    let on_disk = std::fs::read_to_string(FILE).unwrap_or_else(|e| panic!("{FILE}: {e}"));
    assert!(
        on_disk == rules(),
        "{FILE} is stale: regenerate with `cargo run -p apg-fp-usb --bin apg-udev-rules -- udev/60-apg-biometric.rules`"
    );
}

#[test]
fn rules_parse_and_cover_every_reader_and_bridge() {
    let lines = parse(&rules()).expect("rules parse");
    let has = |vid: u16, pid: u16, attr: &str| {
        lines.iter().any(|l| {
            let get = |k: &str| l.iter().find(|t| t.key == k).map(|t| t.value.clone());
            get(&format!("{attr}{{idVendor}}")) == Some(format!("{vid:04x}"))
                && get(&format!("{attr}{{idProduct}}")) == Some(format!("{pid:04x}"))
                && get("GROUP").as_deref() == Some(GROUP)
                && get("MODE").as_deref() == Some("0660")
        })
    };
    for d in DRIVERS {
        assert!(
            has(d.vendor_id, d.product_id, "ATTR"),
            "no rule for {}",
            d.driver
        );
    }
    for (v, p, n) in SERIAL_BRIDGES {
        assert!(has(*v, *p, "ATTRS"), "no rule for {n}");
    }
    for subsystem in ["video4linux", "sound"] {
        assert!(lines.iter().any(|l| l
            .iter()
            .any(|t| t.key == "SUBSYSTEM" && t.value == subsystem)));
    }
    assert!(lines.iter().any(|l| l
        .iter()
        .any(|t| t.key == "KERNEL" && t.value == "ttyACM[0-9]*")));
}

#[test]
fn parser_rejects_broken_rules() {
    assert!(parse("SUBSYSTEM==\"usb\", GROUP=\"x").is_err());
    assert!(parse("SUBSYSTEM==\"usb\"").is_err());
    assert!(parse("BOGUS==\"usb\", GROUP=\"x\"").is_err());
    assert!(parse("SUBSYSTEM=~\"usb\", GROUP=\"x\"").is_err());
}
