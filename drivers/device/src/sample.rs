use std::fmt;
use std::time::SystemTime;

use crate::DeviceKind;

/// One presentation captured by a device.
///
/// `Debug` output of every sample type shows sizes, never pixel or audio bytes, so that a
/// sample logged by mistake does not leak biometric data.
#[derive(Clone)]
pub enum Sample {
    /// A fingerprint image.
    Fingerprint(FingerprintImage),
    /// One or more video frames (a single frame for a still, several for active liveness).
    Video(Vec<VideoFrame>),
    /// An utterance.
    Audio(AudioChunk),
    /// A walk recorded by a foot-worn IMU.
    Imu(ImuRecording),
}

impl Sample {
    /// Device family that produces this kind of sample.
    pub fn kind(&self) -> DeviceKind {
        match self {
            Self::Fingerprint(_) => DeviceKind::FingerprintReader,
            Self::Video(_) => DeviceKind::Camera,
            Self::Audio(_) => DeviceKind::Microphone,
            Self::Imu(_) => DeviceKind::Imu,
        }
    }
}

impl fmt::Debug for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fingerprint(s) => s.fmt(f),
            Self::Video(frames) => write!(f, "Video({} frames)", frames.len()),
            Self::Audio(s) => s.fmt(f),
            Self::Imu(s) => s.fmt(f),
        }
    }
}

/// A sensor's own verdict on whether the finger or face is live, passed through unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorLiveness {
    /// True when the sensor judged the presentation live.
    pub live: bool,
    /// The sensor's score, 0..1, where it reports one.
    pub score: Option<f32>,
}

/// An 8-bit grayscale fingerprint image, row-major, dark ridges on a light background.
#[derive(Clone)]
pub struct FingerprintImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Resolution in dots per inch (500 for most readers).
    pub dpi: u16,
    /// `width * height` gray levels.
    pub pixels: Vec<u8>,
    /// The sensor's liveness verdict, if it reports one.
    pub sensor_liveness: Option<SensorLiveness>,
    /// When the image was captured.
    pub captured_at: SystemTime,
}

impl FingerprintImage {
    /// Wraps pixels, checking that the buffer matches the dimensions.
    pub fn new(width: u32, height: u32, dpi: u16, pixels: Vec<u8>) -> Option<Self> {
        (pixels.len() == width as usize * height as usize).then(|| Self {
            width,
            height,
            dpi,
            pixels,
            sensor_liveness: None,
            captured_at: SystemTime::now(),
        })
    }
}

impl fmt::Debug for FingerprintImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerprintImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("dpi", &self.dpi)
            .field("sensor_liveness", &self.sensor_liveness)
            .finish_non_exhaustive()
    }
}

/// Pixel layout of a [`VideoFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit gray (IR cameras, `GREY`).
    Gray8,
    /// 16-bit little-endian gray (`Y16`).
    Gray16,
    /// 8-bit RGB, interleaved.
    Rgb8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Gray8 => 1,
            Self::Gray16 => 2,
            Self::Rgb8 => 3,
        }
    }
}

/// One decoded video frame.
#[derive(Clone)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Layout of `data`.
    pub format: PixelFormat,
    /// `width * height * bytes_per_pixel` bytes, row-major.
    pub data: Vec<u8>,
    /// True when the frame comes from a near-infrared sensor.
    pub infrared: bool,
    /// When the frame was captured.
    pub captured_at: SystemTime,
}

impl VideoFrame {
    /// Wraps frame data, checking that the buffer matches the dimensions and format.
    pub fn new(width: u32, height: u32, format: PixelFormat, data: Vec<u8>) -> Option<Self> {
        let expected = width as usize * height as usize * format.bytes_per_pixel();
        (data.len() == expected).then(|| Self {
            width,
            height,
            format,
            data,
            infrared: false,
            captured_at: SystemTime::now(),
        })
    }
}

impl fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("infrared", &self.infrared)
            .finish_non_exhaustive()
    }
}

/// Mono audio, normalised to -1..1.
#[derive(Clone)]
pub struct AudioChunk {
    /// Samples per second.
    pub sample_rate: u32,
    /// Mono samples.
    pub samples: Vec<f32>,
    /// When recording started.
    pub captured_at: SystemTime,
}

impl AudioChunk {
    /// Duration of the chunk in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

impl fmt::Debug for AudioChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioChunk")
            .field("sample_rate", &self.sample_rate)
            .field("seconds", &self.seconds())
            .finish_non_exhaustive()
    }
}

/// One IMU reading: acceleration in m/s² and angular rate in deg/s, sensor frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImuReading {
    /// Seconds since the start of the recording.
    pub t: f64,
    /// Acceleration x, y, z.
    pub acc: [f32; 3],
    /// Angular rate x, y, z.
    pub gyr: [f32; 3],
}

/// A recording from a foot-worn IMU.
#[derive(Clone)]
pub struct ImuRecording {
    /// Samples per second.
    pub sample_rate: f32,
    /// Readings in time order.
    pub readings: Vec<ImuReading>,
    /// When recording started.
    pub captured_at: SystemTime,
}

impl fmt::Debug for ImuRecording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImuRecording")
            .field("sample_rate", &self.sample_rate)
            .field("readings", &self.readings.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_image_rejects_a_buffer_of_the_wrong_size() {
        assert!(FingerprintImage::new(10, 10, 500, vec![0; 99]).is_none());
        assert!(FingerprintImage::new(10, 10, 500, vec![0; 100]).is_some());
    }

    #[test]
    fn video_frame_checks_bytes_per_pixel() {
        assert!(VideoFrame::new(2, 2, PixelFormat::Rgb8, vec![0; 12]).is_some());
        assert!(VideoFrame::new(2, 2, PixelFormat::Rgb8, vec![0; 4]).is_none());
    }

    #[test]
    fn debug_output_never_contains_pixels() {
        let img = FingerprintImage::new(2, 1, 500, vec![0xAB, 0xCD]).unwrap();
        let text = format!("{:?}", Sample::Fingerprint(img));
        assert!(!text.contains("171") && !text.contains("205"), "{text}");
    }
}
