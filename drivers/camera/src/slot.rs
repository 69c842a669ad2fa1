//! The latest-frame slot between a capture thread and the pipeline.
//!
//! Back-pressure by dropping: the producer overwrites the frame the consumer has not taken
//! yet and counts it as dropped, so memory stays bounded at one frame and the consumer always
//! gets the newest picture, however slow the pipeline is.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use apg_device::VideoFrame;

/// Link state reported by the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet.
    Connecting,
    /// Frames are flowing.
    Streaming,
    /// The source was lost; the producer is reconnecting.
    Lost {
        /// Why, as the source reported it.
        reason: String,
        /// Reconnect attempts so far.
        attempts: u32,
    },
    /// The source ended and will not come back (a file played once).
    Ended,
}

#[derive(Debug)]
struct State {
    latest: Option<VideoFrame>,
    sequence: u64,
    dropped: u64,
    link: Link,
    stop: bool,
}

/// One-frame mailbox with a condition variable.
#[derive(Debug)]
pub struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                latest: None,
                sequence: 0,
                dropped: 0,
                link: Link::Connecting,
                stop: false,
            }),
            changed: Condvar::new(),
        }
    }
}

/// What [`Slot::wait_newer`] found.
#[derive(Debug)]
pub enum Waited {
    /// A frame newer than the one asked about, and its sequence number.
    Frame(VideoFrame, u64),
    /// No new frame in time; the link state at that moment.
    Nothing(Link),
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Producer: publishes a frame, replacing (and counting as dropped) one not yet taken.
    pub fn publish(&self, frame: VideoFrame) {
        let mut s = self.lock();
        if s.latest.is_some() {
            s.dropped += 1;
        }
        s.latest = Some(frame);
        s.sequence += 1;
        s.link = Link::Streaming;
        self.changed.notify_all();
    }

    /// Producer: reports the link state. A lost or ended link also discards the frame not
    /// yet taken: a capture minutes after an unplug must not be answered with the last picture
    /// from before it.
    pub fn set_link(&self, link: Link) {
        let mut s = self.lock();
        if matches!(link, Link::Lost { .. } | Link::Ended) {
            s.latest = None;
        }
        s.link = link;
        self.changed.notify_all();
    }

    /// Current link state.
    pub fn link(&self) -> Link {
        self.lock().link.clone()
    }

    /// Frames overwritten before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Asks the producer to stop.
    pub fn request_stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    /// True once a stop was requested.
    pub fn stopping(&self) -> bool {
        self.lock().stop
    }

    /// Producer: sleeps up to `pause`, waking early on stop. Returns true when stopping.
    pub fn pause(&self, pause: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, pause, |s| !s.stop)
            .unwrap_or_else(|p| p.into_inner());
        s.stop
    }

    /// Consumer: takes the newest frame with a sequence number above `after`, waiting at most
    /// `wait`.
    pub fn wait_newer(&self, after: u64, wait: Duration) -> Waited {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            if s.sequence > after {
                if let Some(frame) = s.latest.take() {
                    return Waited::Frame(frame, s.sequence);
                }
            }
            let now = Instant::now();
            if now >= deadline || s.stop {
                return Waited::Nothing(s.link.clone());
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apg_device::PixelFormat;

    fn frame(value: u8) -> VideoFrame {
        VideoFrame::new(1, 1, PixelFormat::Gray8, vec![value]).unwrap()
    }

    #[test]
    fn a_frame_from_before_a_lost_link_is_never_served_after_it() {
        let slot = Slot::default();
        slot.publish(frame(1));
        slot.set_link(Link::Lost {
            reason: "unplugged".into(),
            attempts: 1,
        });
        match slot.wait_newer(0, Duration::from_millis(10)) {
            Waited::Nothing(Link::Lost { .. }) => {}
            other => panic!("{other:?}"),
        }
        slot.publish(frame(2));
        match slot.wait_newer(0, Duration::from_millis(10)) {
            Waited::Frame(f, _) => assert_eq!(f.data, [2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_and_the_rest_are_counted_as_dropped() {
        let slot = Slot::default();
        for v in 0..5 {
            slot.publish(frame(v));
        }
        let Waited::Frame(f, seq) = slot.wait_newer(0, Duration::ZERO) else {
            panic!()
        };
        assert_eq!((f.data[0], seq), (4, 5));
        assert_eq!(slot.dropped(), 4);
        assert!(matches!(
            slot.wait_newer(seq, Duration::from_millis(10)),
            Waited::Nothing(Link::Streaming)
        ));
    }

    #[test]
    fn a_waiting_consumer_is_woken_by_a_frame_from_another_thread() {
        let slot = std::sync::Arc::new(Slot::default());
        let producer = slot.clone();
        let handle = std::thread::spawn(move || producer.publish(frame(9)));
        let Waited::Frame(f, _) = slot.wait_newer(0, Duration::from_secs(10)) else {
            panic!("no frame")
        };
        assert_eq!(f.data[0], 9);
        handle.join().unwrap();
    }

    #[test]
    fn stop_wakes_a_pausing_producer() {
        let slot = std::sync::Arc::new(Slot::default());
        let other = slot.clone();
        let handle = std::thread::spawn(move || other.pause(Duration::from_secs(60)));
        slot.request_stop();
        assert!(handle.join().unwrap());
    }
}
