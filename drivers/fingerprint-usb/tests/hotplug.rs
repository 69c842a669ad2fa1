//! Hotplug: a fake event source adds and removes a replayed U.are.U 4500; unplugging it in the
//! middle of a capture fails that capture with a disconnect error, and replugging brings it back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use apg_device::{CancelToken, DeviceProvider, HotplugEvent, Sample};
use apg_fp_usb::provider::{UsbEvent, UsbLocation, UsbProvider};
use apg_fp_usb::recording::read_pcapng;
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::UsbTransport;

fn recording() -> PathBuf {
    let base = std::env::var_os("APG_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let p = base.join("data/usb-recordings/uru4000-4500/capture.pcapng");
    assert!(
        p.is_file(),
        "{} is missing: set APG_SHARED_DIR to the shared data directory",
        p.display()
    );
    p
}

#[test]
fn plug_unplug_mid_capture_and_replug() {
    let transfers = read_pcapng(&recording()).expect("recording parses");
    let nonce = apg_fp_usb::uru4000::recorded_nonce(&transfers).expect("recorded nonce");
    // The first open is cut after 9 transfers (the finger is on the sensor, the image transfer
    // is next): that is the unplug mid-capture. The second open replays the whole recording.
    let opens = Arc::new(AtomicUsize::new(0));
    let o2 = Arc::clone(&opens);
    let provider = Arc::new(UsbProvider::new(Arc::new(
        move |_loc: &UsbLocation, _e: &_| {
            let r = ReplayTransport::new(transfers.clone()).with_nonce(nonce);
            let r = if o2.fetch_add(1, Ordering::SeqCst) == 0 {
                r.unplug_after(9)
            } else {
                r
            };
            Ok(Box::new(r) as Box<dyn UsbTransport>)
        },
    )));
    let (events_tx, events_rx) = mpsc::channel();
    provider.watch(events_tx).expect("watch");
    let (fake_tx, fake_rx) = mpsc::channel();
    let follower = provider.follow(fake_rx);
    let loc = UsbLocation {
        bus: 1,
        port_path: "10".into(),
        vendor_id: 0x05ba,
        product_id: 0x000a,
    };
    let other = UsbLocation {
        bus: 1,
        port_path: "3".into(),
        vendor_id: 0x046d,
        product_id: 0xc52b,
    };
    let wait = |rx: &mpsc::Receiver<HotplugEvent>| {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("hotplug event")
    };

    assert!(provider.list().is_empty());
    fake_tx
        .send(UsbEvent::Plugged(other.clone()))
        .expect("send");
    fake_tx.send(UsbEvent::Plugged(loc.clone())).expect("send");
    let HotplugEvent::Arrived(info) = wait(&events_rx) else {
        panic!("expected an arrival")
    };
    assert_eq!(info.id, "uru4000-1-10");
    assert_eq!(
        provider.list().len(),
        1,
        "unsupported devices are not listed"
    );

    let (late_tx, late_rx) = mpsc::channel();
    provider.watch(late_tx).expect("late watch");
    assert!(
        matches!(wait(&late_rx), HotplugEvent::Arrived(ref i) if i.id == info.id),
        "a late watcher is told about devices already present"
    );

    let mut dev = provider.open(&info.id).expect("open");
    fake_tx
        .send(UsbEvent::Unplugged(loc.clone()))
        .expect("send");
    assert_eq!(
        wait(&events_rx),
        HotplugEvent::Left {
            id: info.id.clone()
        }
    );
    let err = dev
        .capture(&CancelToken::new(), Duration::from_secs(10))
        .expect_err("unplugged mid-capture");
    assert!(err.is_disconnect(), "{err}");
    assert!(err.to_string().contains("uru4000-1-10"), "{err}");
    assert!(
        provider.open(&info.id).is_err(),
        "an unplugged reader cannot be opened"
    );

    fake_tx.send(UsbEvent::Plugged(loc)).expect("send");
    assert!(matches!(wait(&events_rx), HotplugEvent::Arrived(_)));
    let mut dev = provider.open(&info.id).expect("reopen after replug");
    let sample = dev
        .capture(&CancelToken::new(), Duration::from_secs(10))
        .expect("capture after replug");
    let Sample::Fingerprint(img) = sample else {
        panic!("fingerprint expected")
    };
    assert_eq!((img.width, img.height), (384, 290));
    drop(fake_tx);
    follower.join().expect("follower thread");
}
