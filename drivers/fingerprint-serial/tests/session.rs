//! Normal operation against the emulator over a real PTY pair.

mod common;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, DeviceProvider, DeviceState, FaultKind, Sample};
use apg_fp_serial::emulator::{EmulatorConfig, CHAR_FILE_LEN};
use apg_fp_serial::image::{synthetic_ridges, HEIGHT, WIDTH};
use apg_fp_serial::protocol::{ins, Confirmation};
use apg_fp_serial::{
    ErrorKind, LedColor, LedMode, SerialModuleConfig, SerialProvider, SerialReader,
};
use common::*;

#[test]
fn handshake_with_the_right_password_and_system_parameters() {
    let emu = emulator(EmulatorConfig {
        password: 0x1234_5678,
        library_size: 1000,
        packet_size_code: 3,
        baud_n: 12,
        ..EmulatorConfig::default()
    });
    let mut m = open(
        &emu,
        apg_fp_serial::ModuleSettings {
            password: 0x1234_5678,
            ..settings()
        },
    );
    let p = m.connect().expect("right password is accepted");
    assert_eq!(p.library_size, 1000);
    assert_eq!(p.packet_size, 256);
    assert_eq!(p.baud, 115_200);
    assert_eq!(p.address, 0xFFFF_FFFF);
    assert_eq!(p.security_level, 3);
    assert_ne!(
        p.status & 0b100,
        0,
        "status register shows the password verified"
    );
    assert_eq!(m.template_count().unwrap(), 0);
    assert!(
        m.skipped_bytes() <= 1,
        "only the power-on byte may be skipped"
    );
}

#[test]
fn wrong_password_is_a_clear_error_naming_the_port() {
    let emu = emulator(EmulatorConfig {
        password: 42,
        ..EmulatorConfig::default()
    });
    let mut m = open(&emu, settings());
    let e = m.connect().expect_err("password 0 must be refused");
    assert!(matches!(e.kind, ErrorKind::WrongPassword), "{e}");
    assert_eq!(e.confirmation(), Some(Confirmation::WrongPassword));
    let msg = e.to_string();
    assert!(msg.contains("password"), "{msg}");
    assert!(msg.contains(emu.path().to_str().unwrap()), "{msg}");
    // Without a verified password the module refuses work, and the driver keeps saying why.
    let e = m.template_count().expect_err("still refused");
    assert!(matches!(e.kind, ErrorKind::WrongPassword), "{e}");
    assert!(m.is_out_of_sync(), "every call tries the password again");
}

#[test]
fn capture_uploads_the_stored_image_exactly() {
    let (emu, mut m) = connected();
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("capture");
    assert_eq!((img.width, img.height, img.dpi), (256, 288, 500));
    assert_eq!(img.pixels.len(), WIDTH * HEIGHT);
    assert!(
        img.pixels == quantised(1),
        "uploaded pixels differ from the 4-bit quantised source"
    );
    assert!(
        !m.finger_still_down(),
        "the emulated finger is lifted after one poll"
    );
    assert!(emu.commands().contains(&ins::UP_IMAGE));
    // A second capture works and sees a new image.
    emu.set_image(synthetic_ridges(7));
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("second capture");
    assert!(img.pixels == quantised(7));
}

#[test]
fn capture_through_the_capture_device_and_provider() {
    let emu = emulator(EmulatorConfig::default());
    let path = emu.path().to_str().unwrap().to_string();
    let mut cfg = SerialModuleConfig::new(&path, 57_600);
    cfg.id = Some("door-1".into());
    cfg.led_ring = true;
    let provider = SerialProvider::new(vec![cfg]).unwrap();
    let list = provider.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "door-1");
    assert_eq!(list[0].state, DeviceState::Ready);
    assert!(list[0].capabilities.image && list[0].capabilities.match_on_chip);
    assert!(list[0].capabilities.led);
    let mut dev = provider.open("door-1").expect("open through the provider");
    match dev.capture(&CancelToken::new(), Duration::from_secs(5)) {
        Ok(Sample::Fingerprint(f)) => assert!(f.pixels == quantised(1)),
        other => panic!("expected a fingerprint, got {other:?}"),
    }
    dev.close().unwrap();
    let e = provider.open("door-2").err().expect("unknown id");
    assert!(e.to_string().contains("door-2"));
}

#[test]
fn enroll_search_count_delete_empty() {
    let (emu, mut m) = connected();
    let cancel = CancelToken::new();
    let t = Duration::from_secs(5);
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(1).unwrap();
    assert!(m.wait_removal(&cancel, t).unwrap());
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(2).unwrap();
    m.reg_model().unwrap();
    m.store(1, 7).unwrap();
    assert_eq!(m.template_count().unwrap(), 1);
    assert_eq!(emu.template_count(), 1);

    // Same finger again: found at page 7.
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(1).unwrap();
    let hit = m
        .search(1, 0, 200)
        .unwrap()
        .expect("enrolled finger is found");
    assert_eq!(hit.page, 7);
    assert!(hit.score > 0);
    // Outside the searched range it is not.
    assert_eq!(m.search(1, 8, 100).unwrap(), None);

    // Another finger is not found.
    emu.set_image(synthetic_ridges(9));
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(1).unwrap();
    assert_eq!(m.search(1, 0, 200).unwrap(), None);

    // Two different fingers do not combine.
    m.wait_finger(&cancel, t).unwrap();
    emu.set_image(synthetic_ridges(1));
    m.img2tz(1).unwrap();
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(2).unwrap(); // buffer 2 from image 1, buffer 1 from image 9
    let e = m.reg_model().expect_err("different fingers");
    assert_eq!(e.confirmation(), Some(Confirmation::EnrollMismatch));

    assert_eq!(
        m.match_buffers().unwrap(),
        None,
        "different fingers do not match"
    );

    m.store(2, 8).unwrap();
    assert_eq!(m.template_count().unwrap(), 2);
    // Page 8 (image 1) loaded next to a fresh extraction of image 1 matches 1:1.
    m.load_char(2, 8).unwrap();
    m.wait_finger(&cancel, t).unwrap();
    m.img2tz(1).unwrap();
    assert!(m.match_buffers().unwrap().is_some());
    let e = m.load_char(1, 150).expect_err("empty page");
    assert_eq!(e.confirmation(), Some(Confirmation::ReadTemplate));
    m.delete(7, 1).unwrap();
    assert_eq!(m.template_count().unwrap(), 1);
    let e = m.store(1, 5000).expect_err("page beyond the library");
    assert_eq!(e.confirmation(), Some(Confirmation::BadLocation));
    m.empty().unwrap();
    assert_eq!(m.template_count().unwrap(), 0);
    assert_eq!(emu.template_count(), 0);
}

#[test]
fn reader_enroll_then_identify_on_the_module() {
    let emu = emulator(EmulatorConfig::default());
    let cfg = SerialModuleConfig::new(emu.path().to_str().unwrap(), 57_600);
    let mut r = SerialReader::open(&cfg).expect("open");
    let cancel = CancelToken::new();
    r.enroll(3, &cancel, Duration::from_secs(5))
        .expect("enroll");
    let hit = r
        .identify(&cancel, Duration::from_secs(5))
        .expect("identify")
        .expect("a hit");
    assert_eq!(hit.page, 3);
    emu.set_image(synthetic_ridges(4));
    assert_eq!(r.identify(&cancel, Duration::from_secs(5)).unwrap(), None);
}

#[test]
fn char_files_upload_and_download() {
    let (_emu, mut m) = connected();
    m.wait_finger(&CancelToken::new(), Duration::from_secs(5))
        .unwrap();
    m.img2tz(1).unwrap();
    let c = m.up_char(1).expect("UpChar");
    assert_eq!(c.len(), CHAR_FILE_LEN);
    m.down_char(2, &c).expect("DownChar");
    // Both buffers now hold the same file, so they combine.
    m.reg_model()
        .expect("downloaded file equals the extracted one");
    assert_eq!(m.up_char(2).unwrap(), c);
}

#[test]
fn led_ring_config_reaches_the_module() {
    let (emu, mut m) = connected();
    m.led(LedMode::Breathing, 0x80, LedColor::Blue, 0).unwrap();
    assert_eq!(emu.led(), Some([1, 0x80, 2, 0]));
    m.led(LedMode::Flashing, 0x10, LedColor::Red, 3).unwrap();
    assert_eq!(emu.led(), Some([2, 0x10, 1, 3]));
}

#[test]
fn every_module_baud_rate_is_accepted_and_others_refused() {
    let (emu, mut m) = connected();
    for n in 1..=12u32 {
        m.set_baud(n * 9600)
            .unwrap_or_else(|e| panic!("{}: {e}", n * 9600));
        assert_eq!(emu.baud(), n * 9600);
        assert_eq!(m.template_count().unwrap(), 0, "talks after the change");
    }
    let before = emu.commands().len();
    for bad in [0, 4800, 10_000, 124_800, 230_400] {
        let e = m.set_baud(bad).expect_err("not a module baud rate");
        assert!(matches!(e.kind, ErrorKind::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("9600"), "{e}");
    }
    assert_eq!(
        emu.commands().len(),
        before,
        "refused before anything was sent"
    );
    assert_eq!(emu.baud(), 115_200);
    // The module itself refuses a baud control N outside 1..12.
    let e = m
        .set_parameter(4, 13, "raw SetSysPara")
        .expect_err("N = 13");
    assert_eq!(e.confirmation(), Some(Confirmation::BadRegisterValue));
    assert!(
        m.template_count().is_ok(),
        "a refusal does not break the session"
    );
}

#[test]
fn finger_arrives_after_some_polls() {
    let emu = emulator(EmulatorConfig {
        absent_polls: 5,
        ..EmulatorConfig::default()
    });
    let mut m = open(&emu, settings());
    m.connect().unwrap();
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("capture after 5 empty polls");
    assert!(img.pixels == quantised(1));
    assert!(
        emu.gen_img_polls() >= 7,
        "5 absent, 1 image, then removal polls"
    );
}

#[test]
fn finger_left_on_the_sensor_is_handled_gracefully() {
    let (emu, mut m) = connected();
    emu.set_finger(Some(true));
    let start = Instant::now();
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("the image is returned even if the finger stays");
    assert!(img.pixels == quantised(1));
    assert!(m.finger_still_down());
    assert!(start.elapsed() < Duration::from_secs(3));
    // The next capture insists on a lift first; with the finger never lifted it times out.
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_millis(300))
        .expect_err("no new presentation");
    assert!(matches!(e.kind, ErrorKind::NoFinger { .. }), "{e}");
    assert!(e.to_string().contains("lifted"), "{e}");
    emu.set_finger(None);
    m.capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("after the lift, capture works");
}

#[test]
fn opening_a_missing_port_says_what_to_check() {
    let cfg = SerialModuleConfig::new("/dev/ttyUSB-apg-missing", 57_600);
    let provider = SerialProvider::new(vec![cfg.clone()]).unwrap();
    assert_eq!(provider.list()[0].state, DeviceState::Disconnected);
    let e = provider.open(&cfg.device_id()).err().expect("missing port");
    match &e {
        apg_device::CaptureError::Fault { kind, detail, .. } => {
            assert_eq!(*kind, FaultKind::NotFound);
            assert!(detail.contains("/dev/ttyUSB-apg-missing"), "{detail}");
            assert!(detail.contains("cable"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn permission_denied_mentions_the_group_and_udev_rules() {
    let err = serialport::Error::new(
        serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied),
        "Permission denied",
    );
    let e = apg_fp_serial::port::open_error("fp-1", "/dev/ttyS0", &err);
    let msg = e.to_string();
    assert!(matches!(
        e,
        apg_device::CaptureError::Fault {
            kind: FaultKind::PermissionDenied,
            ..
        }
    ));
    assert!(
        msg.contains("apg-biometric") && msg.contains("udev"),
        "{msg}"
    );
    assert!(msg.contains("/dev/ttyS0") && msg.contains("fp-1"), "{msg}");
}

#[test]
fn config_parses_with_defaults_and_rejects_duplicates() {
    let cfg: SerialModuleConfig =
        serde_json::from_str(r#"{"path": "/dev/ttyUSB0"}"#).expect("minimal entry");
    assert_eq!(cfg.baud, 57_600);
    assert_eq!(cfg.address, 0xFFFF_FFFF);
    assert_eq!(cfg.password, 0);
    assert_eq!(cfg.device_id(), "zhiantec-ttyUSB0");
    assert!(serde_json::from_str::<SerialModuleConfig>(r#"{"path": "/x", "pasword": 1}"#).is_err());
    assert!(SerialProvider::new(vec![cfg.clone(), cfg]).is_err());
}
