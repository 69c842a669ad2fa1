//! Minutiae templates and the crate's own compact, versioned binary format.
//!
//! Layout of format version 1 (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `APGF` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | flags (0) |
//! | 6 | 2 | image width in pixels at 500 dpi |
//! | 8 | 2 | image height in pixels at 500 dpi |
//! | 10 | 1 | sample quality 0..100 |
//! | 11 | 1 | minutiae count n |
//! | 12 | 6n | minutiae: x u16, y u16, angle u8 (2π/256 units), kind (bit 7: bifurcation) and quality 0..100 (bits 0-6) u8 |
//! | 12+6n | 4 | CRC-32 (IEEE) of all previous bytes |

use std::f32::consts::PI;
use std::sync::{Arc, OnceLock};

use crate::mcc::Prepared;

const MAGIC: &[u8; 4] = b"APGF";
const VERSION: u8 = 1;
const HEADER: usize = 12;
/// Most minutiae a template holds; the extractor keeps the best ones by quality.
pub const MAX_MINUTIAE: usize = 128;

/// Kind of a minutia.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinutiaKind {
    /// A ridge ends.
    Ending,
    /// A ridge forks in two.
    Bifurcation,
}

/// One minutia in pixel coordinates of the 500 dpi image (origin top left, y down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Minutia {
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Direction in radians, in `[0, 2π)`, counter-clockwise from the x axis with y pointing up
    /// (the ISO/IEC 19794-2 convention). For an ending it points from the end back along its
    /// ridge; for a bifurcation it points from the fork into the valley between the branches.
    pub angle: f32,
    /// Ending or bifurcation.
    pub kind: MinutiaKind,
    /// Reliability 0..100 (orientation coherence and distance from the print's border).
    pub quality: u8,
}

/// Error reading a template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// Fewer bytes than the format needs.
    #[error("fingerprint template is truncated: {len} bytes, at least {need} needed; re-enrol or re-export the template")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Not a template of this crate.
    #[error("not an apg fingerprint template (bad magic); pass a template made by apg-fingerprint, or import ISO/ANSI records with the iso module")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("fingerprint template format version {0} is not supported (this build reads version 1); upgrade the agent")]
    UnsupportedVersion(u8),
    /// The length does not match the minutiae count.
    #[error("fingerprint template length is {actual} bytes but its header implies {expected}; the template is damaged")]
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// The checksum does not match: the bytes were altered.
    #[error("fingerprint template checksum mismatch; the template is damaged, re-enrol")]
    Checksum,
    /// A field is out of range.
    #[error("fingerprint template field out of range: {0}; the template is damaged")]
    Invalid(&'static str),
}

/// A minutiae template. Cheap to clone (the matcher's derived data is shared).
#[derive(Clone)]
pub struct Template {
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) quality: u8,
    pub(crate) minutiae: Vec<Minutia>,
    pub(crate) prepared: OnceLock<Arc<Prepared>>,
}

impl std::fmt::Debug for Template {
    // Minutiae positions are biometric data: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("quality", &self.quality)
            .field("minutiae", &self.minutiae.len())
            .finish()
    }
}

impl Template {
    /// Builds a template from minutiae (500 dpi coordinates). Keeps at most [`MAX_MINUTIAE`],
    /// preferring higher quality; angles are wrapped into `[0, 2π)`.
    pub fn from_minutiae(width: u16, height: u16, quality: u8, mut minutiae: Vec<Minutia>) -> Self {
        for m in &mut minutiae {
            m.angle = m.angle.rem_euclid(2.0 * PI);
            m.quality = m.quality.min(100);
        }
        if minutiae.len() > MAX_MINUTIAE {
            minutiae.sort_by_key(|m| std::cmp::Reverse(m.quality));
            minutiae.truncate(MAX_MINUTIAE);
        }
        Self {
            width,
            height,
            quality: quality.min(100),
            minutiae,
            prepared: OnceLock::new(),
        }
    }

    /// Number of minutiae.
    pub fn minutiae_count(&self) -> usize {
        self.minutiae.len()
    }

    /// The minutiae.
    pub fn minutiae(&self) -> &[Minutia] {
        &self.minutiae
    }

    /// Width of the source image at 500 dpi.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height of the source image at 500 dpi.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// Sample quality 0..100 recorded at extraction.
    pub fn quality(&self) -> u8 {
        self.quality
    }

    pub(crate) fn prepared(&self) -> &Arc<Prepared> {
        self.prepared
            .get_or_init(|| Arc::new(Prepared::new(&self.minutiae)))
    }

    /// Serialises to format version 1.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.minutiae.len().min(MAX_MINUTIAE);
        let mut b = Vec::with_capacity(HEADER + 6 * n + 4);
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.push(0);
        b.extend_from_slice(&self.width.to_le_bytes());
        b.extend_from_slice(&self.height.to_le_bytes());
        b.push(self.quality);
        b.push(n as u8);
        for m in &self.minutiae[..n] {
            b.extend_from_slice(&m.x.to_le_bytes());
            b.extend_from_slice(&m.y.to_le_bytes());
            b.push(angle_to_u8(m.angle));
            let kind = if m.kind == MinutiaKind::Bifurcation {
                0x80
            } else {
                0
            };
            b.push(kind | m.quality.min(100));
        }
        let c = crc32(&b);
        b.extend_from_slice(&c.to_le_bytes());
        b
    }

    /// Parses format version 1; truncated, altered or foreign bytes give a [`TemplateError`].
    pub fn from_bytes(b: &[u8]) -> Result<Template, TemplateError> {
        if b.len() >= 4 && &b[..4] != MAGIC {
            return Err(TemplateError::BadMagic);
        }
        if b.len() < HEADER + 4 {
            return Err(TemplateError::Truncated {
                len: b.len(),
                need: HEADER + 4,
            });
        }
        if b[4] != VERSION {
            return Err(TemplateError::UnsupportedVersion(b[4]));
        }
        let n = b[11] as usize;
        let expected = HEADER + 6 * n + 4;
        if b.len() < expected {
            return Err(TemplateError::Truncated {
                len: b.len(),
                need: expected,
            });
        }
        if b.len() != expected {
            return Err(TemplateError::LengthMismatch {
                expected,
                actual: b.len(),
            });
        }
        let body = &b[..expected - 4];
        let stored = u32::from_le_bytes([
            b[expected - 4],
            b[expected - 3],
            b[expected - 2],
            b[expected - 1],
        ]);
        if crc32(body) != stored {
            return Err(TemplateError::Checksum);
        }
        if b[5] != 0 {
            return Err(TemplateError::Invalid("flags"));
        }
        let width = u16::from_le_bytes([b[6], b[7]]);
        let height = u16::from_le_bytes([b[8], b[9]]);
        let quality = b[10];
        if quality > 100 {
            return Err(TemplateError::Invalid("sample quality above 100"));
        }
        let mut minutiae = Vec::with_capacity(n);
        for i in 0..n {
            let o = HEADER + 6 * i;
            let x = u16::from_le_bytes([b[o], b[o + 1]]);
            let y = u16::from_le_bytes([b[o + 2], b[o + 3]]);
            if (width > 0 && x >= width) || (height > 0 && y >= height) {
                return Err(TemplateError::Invalid("minutia outside the image"));
            }
            let q = b[o + 5] & 0x7f;
            if q > 100 {
                return Err(TemplateError::Invalid("minutia quality above 100"));
            }
            minutiae.push(Minutia {
                x,
                y,
                angle: u8_to_angle(b[o + 4]),
                kind: if b[o + 5] & 0x80 != 0 {
                    MinutiaKind::Bifurcation
                } else {
                    MinutiaKind::Ending
                },
                quality: q,
            });
        }
        Ok(Template {
            width,
            height,
            quality,
            minutiae,
            prepared: OnceLock::new(),
        })
    }
}

/// Radians to 256ths of a turn.
pub(crate) fn angle_to_u8(a: f32) -> u8 {
    ((a.rem_euclid(2.0 * PI) / (2.0 * PI) * 256.0).round() as u32 % 256) as u8
}

/// 256ths of a turn to radians.
pub(crate) fn u8_to_angle(v: u8) -> f32 {
    f32::from(v) * (2.0 * PI / 256.0)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &byte in data {
        c ^= u32::from(byte);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Template {
        let ms = (0..30)
            .map(|i| Minutia {
                x: 20 + i * 7,
                y: 30 + (i * 13) % 200,
                angle: f32::from(i) * 0.2,
                kind: if i % 3 == 0 {
                    MinutiaKind::Bifurcation
                } else {
                    MinutiaKind::Ending
                },
                quality: (40 + i) as u8,
            })
            .collect();
        Template::from_minutiae(300, 400, 77, ms)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let t = sample();
        let b = t.to_bytes();
        assert_eq!(b.len(), 12 + 30 * 6 + 4);
        let u = Template::from_bytes(&b).unwrap();
        assert_eq!(u.minutiae_count(), 30);
        assert_eq!((u.width, u.height, u.quality), (300, 400, 77));
        for (a, c) in t.minutiae.iter().zip(&u.minutiae) {
            assert_eq!((a.x, a.y, a.kind, a.quality), (c.x, c.y, c.kind, c.quality));
            let d = (a.angle - c.angle).abs();
            assert!(d < 0.02 || (2.0 * PI - d) < 0.02);
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let b = sample().to_bytes();
        for len in 0..b.len() {
            assert!(Template::from_bytes(&b[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn flipped_bit_fails_the_checksum() {
        let mut b = sample().to_bytes();
        b[20] ^= 0x04;
        assert_eq!(
            Template::from_bytes(&b).unwrap_err(),
            TemplateError::Checksum
        );
    }

    #[test]
    fn garbage_and_future_versions_are_named() {
        assert_eq!(
            Template::from_bytes(b"FMR\0 20\0garbage garbage").unwrap_err(),
            TemplateError::BadMagic
        );
        let mut b = sample().to_bytes();
        b[4] = 9;
        assert_eq!(
            Template::from_bytes(&b).unwrap_err(),
            TemplateError::UnsupportedVersion(9)
        );
        let msg = TemplateError::Truncated { len: 3, need: 16 }.to_string();
        assert!(msg.contains("truncated"));
    }
}
