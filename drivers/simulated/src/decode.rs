//! Turning sample files into [`Sample`]s.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use apg_device::{
    AudioChunk, DeviceKind, FingerprintImage, ImuReading, ImuRecording, PixelFormat, Sample,
    VideoFrame,
};

/// File extensions each device kind replays.
pub const SUPPORTED_EXTENSIONS: &[(DeviceKind, &[&str])] = &[
    (
        DeviceKind::FingerprintReader,
        &["tif", "tiff", "png", "bmp", "pgm", "jpg", "jpeg"],
    ),
    (DeviceKind::Camera, &["jpg", "jpeg", "png", "bmp"]),
    (DeviceKind::Microphone, &["wav", "flac"]),
    (DeviceKind::Imu, &["csv"]),
];

/// Why a sample file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read.
    #[error("cannot read sample file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file's content is not a valid sample.
    #[error("sample file {path} is not a valid {what}: {detail}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Expected content.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
}

/// Decodes one file into a sample of the given device kind.
pub fn decode_file(
    kind: DeviceKind,
    path: &Path,
    dpi: u16,
    imu_rate: f32,
) -> Result<Sample, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(kind, &bytes, path, dpi, imu_rate)
}

/// Decodes sample bytes (an uploaded file); `name` labels the bytes in errors and its
/// extension tells audio formats apart.
pub fn decode_bytes(
    kind: DeviceKind,
    bytes: &[u8],
    name: &Path,
    dpi: u16,
    imu_rate: f32,
) -> Result<Sample, DecodeError> {
    match kind {
        DeviceKind::FingerprintReader => fingerprint(bytes, name, dpi).map(Sample::Fingerprint),
        DeviceKind::Camera => still(bytes, name).map(|f| Sample::Video(vec![f])),
        DeviceKind::Microphone => audio(bytes, name).map(Sample::Audio),
        DeviceKind::Imu => imu(bytes, name, imu_rate).map(Sample::Imu),
    }
}

fn invalid(path: &Path, what: &'static str, detail: impl ToString) -> DecodeError {
    DecodeError::Invalid {
        path: path.to_path_buf(),
        what,
        detail: detail.to_string(),
    }
}

fn fingerprint(bytes: &[u8], path: &Path, dpi: u16) -> Result<FingerprintImage, DecodeError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| invalid(path, "image", e))?
        .into_luma8();
    let (w, h) = img.dimensions();
    FingerprintImage::new(w, h, dpi, img.into_raw())
        .ok_or_else(|| invalid(path, "image", "size mismatch"))
}

/// Decodes a still photo upright: phone and camera JPEGs often store the sensor's raster and
/// an EXIF orientation tag, and a face on its side fails detection and head-pose quality.
fn still(bytes: &[u8], path: &Path) -> Result<VideoFrame, DecodeError> {
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| invalid(path, "image", e))?
        .into_decoder()
        .map_err(|e| invalid(path, "image", e))?;
    let orientation = image::ImageDecoder::orientation(&mut decoder).ok();
    let mut img =
        image::DynamicImage::from_decoder(decoder).map_err(|e| invalid(path, "image", e))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let img = img.into_rgb8();
    let (w, h) = img.dimensions();
    VideoFrame::new(w, h, PixelFormat::Rgb8, img.into_raw())
        .ok_or_else(|| invalid(path, "image", "size mismatch"))
}

fn audio(bytes: &[u8], path: &Path) -> Result<AudioChunk, DecodeError> {
    let is_flac = bytes.starts_with(b"fLaC");
    let (rate, samples) = if is_flac {
        flac(bytes, path)?
    } else {
        wav(bytes, path)?
    };
    if samples.is_empty() {
        return Err(invalid(path, "recording", "no samples"));
    }
    Ok(AudioChunk {
        sample_rate: rate,
        samples,
        captured_at: SystemTime::now(),
    })
}

/// Averages interleaved channels into mono.
fn to_mono(interleaved: Vec<f32>, channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved;
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

fn flac(bytes: &[u8], path: &Path) -> Result<(u32, Vec<f32>), DecodeError> {
    let mut reader = claxon::FlacReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(path, "FLAC recording", e))?;
    let info = reader.streaminfo();
    if !(1..=32).contains(&info.bits_per_sample) {
        return Err(invalid(
            path,
            "FLAC recording",
            format!("{} bits per sample", info.bits_per_sample),
        ));
    }
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
    let samples = reader
        .samples()
        .map(|s| s.map(|v| v as f32 * scale))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, "FLAC recording", e))?;
    Ok((info.sample_rate, to_mono(samples, info.channels as usize)))
}

fn wav(bytes: &[u8], path: &Path) -> Result<(u32, Vec<f32>), DecodeError> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(path, "WAV recording", e))?;
    let spec = reader.spec();
    let samples: Result<Vec<f32>, _> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    };
    let samples = samples.map_err(|e| invalid(path, "WAV recording", e))?;
    Ok((spec.sample_rate, to_mono(samples, spec.channels as usize)))
}

/// Reads a gaitmap-style IMU CSV: two header rows (`sensor`, `axis`) naming each column's
/// sensor and axis, then one row per sample with the sample index first. The first sensor's
/// `acc_x..gyr_z` columns are replayed. A single header row (`t,acc_x,...,gyr_z`, time in
/// seconds) is accepted too.
fn imu(bytes: &[u8], path: &Path, rate: f32) -> Result<ImuRecording, DecodeError> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| invalid(path, "IMU CSV", e))?;
    let mut lines = text.lines();
    let first: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let (axes, sensor_of): (Vec<&str>, Vec<&str>) = if first.first() == Some(&"sensor") {
        let axes: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        (axes, first)
    } else {
        let n = first.len();
        (first, vec![""; n])
    };
    let wanted_sensor = sensor_of.get(1).copied().unwrap_or("");
    let column = |axis: &str| {
        axes.iter()
            .enumerate()
            .position(|(i, a)| {
                *a == axis && sensor_of.get(i).copied().unwrap_or("") == wanted_sensor
            })
            .ok_or_else(|| invalid(path, "IMU CSV", format!("no {axis} column")))
    };
    let names = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"];
    let cols: Vec<usize> = names.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
    let timed = axes.first() == Some(&"t");
    let mut readings = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let value = |i: usize| -> Result<f32, DecodeError> {
            fields
                .get(i)
                .and_then(|f| f.trim().parse::<f32>().ok())
                .ok_or_else(|| {
                    invalid(
                        path,
                        "IMU CSV",
                        format!("row {} column {} is not a number", n + 3, i + 1),
                    )
                })
        };
        let t = if timed {
            f64::from(value(0)?)
        } else {
            n as f64 / f64::from(rate)
        };
        readings.push(ImuReading {
            t,
            acc: [value(cols[0])?, value(cols[1])?, value(cols[2])?],
            gyr: [value(cols[3])?, value(cols[4])?, value(cols[5])?],
        });
    }
    if readings.is_empty() {
        return Err(invalid(path, "IMU CSV", "no readings"));
    }
    Ok(ImuRecording {
        sample_rate: rate,
        readings,
        captured_at: SystemTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gaitmap_csv_replays_the_first_sensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("walk.csv");
        std::fs::write(
            &path,
            "sensor,left,right,left,left,left,left,left\naxis,acc_x,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n0,1,9,2,3,4,5,6\n1,1.5,9,2,3,4,5,6\n",
        )
        .unwrap();
        let Sample::Imu(rec) = decode_file(DeviceKind::Imu, &path, 500, 100.0).unwrap() else {
            panic!()
        };
        assert_eq!(rec.readings.len(), 2);
        assert_eq!(rec.readings[1].acc, [1.5, 2.0, 3.0]);
        assert_eq!(rec.readings[1].t, 0.01);
    }

    #[test]
    fn a_corrupt_image_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("finger.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = decode_file(DeviceKind::FingerprintReader, &path, 500, 0.0).unwrap_err();
        assert!(err.to_string().contains("finger.png"), "{err}");
    }

    #[test]
    fn a_csv_with_text_in_a_number_column_names_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(
            &path,
            "t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n0,1,2,x,4,5,6\n",
        )
        .unwrap();
        let err = decode_file(DeviceKind::Imu, &path, 500, 100.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column 4"), "{err}");
    }

    #[test]
    fn a_wav_is_read_as_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..100 {
            w.write_sample(16384i16).unwrap();
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        let Sample::Audio(a) = decode_file(DeviceKind::Microphone, &path, 500, 0.0).unwrap() else {
            panic!()
        };
        assert_eq!(a.samples.len(), 100);
        assert!((a.samples[0] - 0.25).abs() < 1e-6);
    }
}
