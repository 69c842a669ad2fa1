//! ISO/IEC 19794-2:2005 and ANSI/INCITS 378-2004 finger minutiae records.
//!
//! Both records start with `FMR\0` and the version ` 20\0`, then differ:
//!
//! * ISO/IEC 19794-2:2005: record length (4 bytes), capture equipment (2), width (2), height (2),
//!   x and y resolution in pixels per centimetre (2 + 2), number of finger views (1), reserved
//!   (1): a 24-byte header. Minutia angles are in units of 360/256 degrees.
//! * ANSI/INCITS 378-2004: record length (2 bytes, or 0 followed by a 4-byte length), CBEFF
//!   product identifier (4), then the same fields as ISO: a 26-byte header (30 with the long
//!   length). Minutia angles are in units of 2 degrees.
//!
//! Each finger view: finger position (1), view number and impression type (1), finger quality
//! (1), minutiae count (1), then 6 bytes per minutia — type (2 bits: 01 ending, 10
//! bifurcation, 00 other) and x (14 bits); 2 reserved bits and y (14 bits); angle (1); quality
//! (1) — then an extended-data block whose first 2 bytes give its length. All integers are
//! big-endian; the origin is the top-left pixel, y grows downwards and angles are
//! counter-clockwise from the x axis. Import reads the first finger view and rescales
//! coordinates to 500 dpi; export writes one view at 500 dpi (197 pixels/cm).

use std::f32::consts::PI;

use crate::template::{Minutia, MinutiaKind, Template};

/// Which standard a record follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ISO/IEC 19794-2:2005.
    Iso19794_2,
    /// ANSI/INCITS 378-2004.
    Ansi378,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Iso19794_2 => "ISO/IEC 19794-2:2005",
            Format::Ansi378 => "ANSI/INCITS 378-2004",
        })
    }
}

/// Why a standard record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsoError {
    /// The record ends before a field.
    #[error("{format} minutiae record is truncated: {field} needs bytes {need} but the record has {len}; re-export the template from its source")]
    Truncated {
        /// Format being read.
        format: Format,
        /// Field that did not fit.
        field: &'static str,
        /// Bytes needed up to and including the field.
        need: usize,
        /// Bytes present.
        len: usize,
    },
    /// Not a finger minutiae record.
    #[error("not a finger minutiae record (expected \"FMR\\0\" and version \" 20\\0\"); pass an ISO/IEC 19794-2:2005 or ANSI/INCITS 378-2004 record")]
    NotFmr,
    /// The record-length field disagrees with the data.
    #[error("{format} minutiae record says it is {stated} bytes long but {len} bytes were given; the record is truncated or padded")]
    Length {
        /// Format being read.
        format: Format,
        /// Length stated in the header.
        stated: usize,
        /// Bytes given.
        len: usize,
    },
    /// A field holds a value the standard does not allow.
    #[error("{format} minutiae record has an invalid {field}; the record is damaged")]
    Invalid {
        /// Format being read.
        format: Format,
        /// Field name.
        field: &'static str,
    },
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    format: Format,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], IsoError> {
        if self.pos + n > self.b.len() {
            return Err(IsoError::Truncated {
                format: self.format,
                field,
                need: self.pos + n,
                len: self.b.len(),
            });
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, IsoError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, IsoError> {
        let s = self.take(2, field)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, IsoError> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Guesses the format of a record from its length fields.
pub fn detect(b: &[u8]) -> Result<Format, IsoError> {
    if b.len() < 8 || &b[..4] != b"FMR\0" || &b[4..8] != b" 20\0" {
        return Err(IsoError::NotFmr);
    }
    if b.len() >= 12 {
        let iso_len = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        if iso_len == b.len() || (iso_len < b.len() && zero_padded(b, iso_len)) {
            return Ok(Format::Iso19794_2);
        }
        let ansi_len = u16::from_be_bytes([b[8], b[9]]) as usize;
        if ansi_len == b.len()
            || (ansi_len == 0 && b.len() >= 14)
            || (ansi_len < b.len() && zero_padded(b, ansi_len))
        {
            return Ok(Format::Ansi378);
        }
    }
    // Lengths disagree with the data (for example a truncated record): ISO's 4-byte length
    // field starts with zero bytes for any record under 64 KiB.
    if b.len() >= 10 && b[8] == 0 && b[9] == 0 {
        Ok(Format::Iso19794_2)
    } else {
        Ok(Format::Ansi378)
    }
}

/// True when everything from `len` on is zero (records stored in fixed-size slots).
fn zero_padded(b: &[u8], len: usize) -> bool {
    len >= 24 && b[len..].iter().all(|&x| x == 0)
}

/// Reads a record in either format (detected from its length fields).
pub fn import(b: &[u8]) -> Result<Template, IsoError> {
    let f = detect(b)?;
    import_as(b, f)
}

/// Reads a record in the given format.
pub fn import_as(b: &[u8], format: Format) -> Result<Template, IsoError> {
    let mut r = Reader { b, pos: 0, format };
    let b = match format {
        // Trailing zero padding (fixed-size storage slots) is ignored below.
        Format::Iso19794_2 if b.len() >= 12 => {
            let l = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
            if l < b.len() && zero_padded(b, l) {
                &b[..l]
            } else {
                b
            }
        }
        Format::Ansi378 if b.len() >= 10 => {
            let l = u16::from_be_bytes([b[8], b[9]]) as usize;
            if l != 0 && l < b.len() && zero_padded(b, l) {
                &b[..l]
            } else {
                b
            }
        }
        _ => b,
    };
    r.b = b;
    if r.take(4, "format identifier")? != b"FMR\0" || r.take(4, "version")? != b" 20\0" {
        return Err(IsoError::NotFmr);
    }
    let stated = match format {
        Format::Iso19794_2 => r.u32("record length")? as usize,
        Format::Ansi378 => {
            let l = r.u16("record length")? as usize;
            if l == 0 {
                r.u32("extended record length")? as usize
            } else {
                l
            }
        }
    };
    if stated != b.len() && !(stated < b.len() && zero_padded(b, stated)) {
        // Check the fixed header first so a truncated record names the missing field.
        if stated > b.len() && b.len() < 24 {
            let _ = r.take(b.len() + 1 - r.pos.min(b.len()), "record header")?;
        }
        return Err(IsoError::Length {
            format,
            stated,
            len: b.len(),
        });
    }
    if format == Format::Ansi378 {
        r.take(4, "CBEFF product identifier")?;
    }
    r.u16("capture equipment")?;
    let width = r.u16("image width")?;
    let height = r.u16("image height")?;
    let xres = r.u16("x resolution")?;
    let yres = r.u16("y resolution")?;
    let views = r.u8("number of finger views")?;
    r.u8("reserved byte")?;
    if xres == 0 || yres == 0 {
        return Err(IsoError::Invalid {
            format,
            field: "resolution (zero)",
        });
    }
    if views == 0 {
        return Err(IsoError::Invalid {
            format,
            field: "number of finger views (zero)",
        });
    }
    let position = r.u8("finger position")?;
    if position > 10 {
        return Err(IsoError::Invalid {
            format,
            field: "finger position",
        });
    }
    r.u8("view number and impression type")?;
    let quality = r.u8("finger quality")?;
    if quality > 100 {
        return Err(IsoError::Invalid {
            format,
            field: "finger quality (above 100)",
        });
    }
    let n = r.u8("number of minutiae")? as usize;
    // 197 pixels per centimetre is 500 dpi.
    let sx = 197.0 / f32::from(xres);
    let sy = 197.0 / f32::from(yres);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let tx = r.u16("minutia type and x")?;
        let y = r.u16("minutia y")? & 0x3fff;
        let a = r.u8("minutia angle")?;
        let q = r.u8("minutia quality")?;
        let kind = match tx >> 14 {
            0b10 => MinutiaKind::Bifurcation,
            0b01 | 0b00 => MinutiaKind::Ending,
            _ => {
                return Err(IsoError::Invalid {
                    format,
                    field: "minutia type",
                })
            }
        };
        let angle = match format {
            Format::Iso19794_2 => f32::from(a) * 2.0 * PI / 256.0,
            Format::Ansi378 => {
                if a > 179 {
                    return Err(IsoError::Invalid {
                        format,
                        field: "minutia angle (above 179)",
                    });
                }
                f32::from(a) * 2.0 * PI / 180.0
            }
        };
        let x = ((tx & 0x3fff) as f32 * sx).round();
        let y = (f32::from(y) * sy).round();
        if x > 65_535.0 || y > 65_535.0 {
            return Err(IsoError::Invalid {
                format,
                field: "minutia position",
            });
        }
        ms.push(Minutia {
            x: x as u16,
            y: y as u16,
            angle,
            kind,
            quality: q.min(100),
        });
    }
    let ext = r.u16("extended data length")? as usize;
    if ext > 0 {
        r.take(ext.saturating_sub(2), "extended data")?;
    }
    let w = (f32::from(width) * sx).round().min(65_535.0) as u16;
    let h = (f32::from(height) * sy).round().min(65_535.0) as u16;
    Ok(Template::from_minutiae(w, h, quality, ms))
}

/// Writes a one-view record (finger position 0 = unknown, 500 dpi).
pub fn export(t: &Template, format: Format) -> Vec<u8> {
    let ms = &t.minutiae()[..t.minutiae_count().min(255)];
    let header = match format {
        Format::Iso19794_2 => 24,
        Format::Ansi378 => 26,
    };
    let len = header + 4 + 6 * ms.len() + 2;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(b"FMR\0 20\0");
    match format {
        Format::Iso19794_2 => b.extend_from_slice(&(len as u32).to_be_bytes()),
        Format::Ansi378 => {
            b.extend_from_slice(&(len as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]);
        }
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&t.width().to_be_bytes());
    b.extend_from_slice(&t.height().to_be_bytes());
    b.extend_from_slice(&197u16.to_be_bytes());
    b.extend_from_slice(&197u16.to_be_bytes());
    b.push(1);
    b.push(0);
    b.push(0);
    b.push(0);
    b.push(t.quality().min(100));
    b.push(ms.len() as u8);
    for m in ms {
        let kind: u16 = match m.kind {
            MinutiaKind::Ending => 0b01,
            MinutiaKind::Bifurcation => 0b10,
        };
        b.extend_from_slice(&((kind << 14) | (m.x & 0x3fff)).to_be_bytes());
        b.extend_from_slice(&(m.y & 0x3fff).to_be_bytes());
        let a = m.angle.rem_euclid(2.0 * PI);
        b.push(match format {
            Format::Iso19794_2 => ((a / (2.0 * PI) * 256.0).round() as u32 % 256) as u8,
            Format::Ansi378 => ((a / (2.0 * PI) * 180.0).round() as u32 % 180) as u8,
        });
        b.push(m.quality.min(100));
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shared() -> PathBuf {
        std::env::var_os("APG_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/work/shared"))
    }

    fn read(rel: &str) -> Vec<u8> {
        let p = shared().join(rel);
        std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); set APG_SHARED_DIR to the shared data directory",
                p.display()
            )
        })
    }

    fn sample() -> Template {
        let ms = (0..20u16)
            .map(|i| Minutia {
                x: 10 + i * 9,
                y: 20 + i * 11,
                angle: f32::from(i) * 0.3,
                kind: if i % 2 == 0 {
                    MinutiaKind::Ending
                } else {
                    MinutiaKind::Bifurcation
                },
                quality: 60,
            })
            .collect();
        Template::from_minutiae(300, 400, 70, ms)
    }

    #[test]
    fn fvc_records_from_the_commercial_extractor_parse() {
        let t = import(&read("data/fingerprint/fvc2002/DB1_B/101_1.iso")).unwrap();
        assert_eq!(t.minutiae_count(), 25);
        assert_eq!((t.width(), t.height()), (300, 400));
        let m = t.minutiae()[0];
        assert_eq!((m.x, m.y, m.kind), (165, 48, MinutiaKind::Bifurcation));
    }

    #[test]
    fn shared_invalid_records_give_truncation_errors() {
        for name in [
            "101_1_truncate_1_byte.iso",
            "101_1_truncate_2_bytes.iso",
            "101_1_truncate_3_bytes.iso",
        ] {
            let b = read(&format!("data/fingerprint/invalid-iso/{name}"));
            let e = import(&b).unwrap_err();
            assert!(
                matches!(e, IsoError::Truncated { .. } | IsoError::Length { .. }),
                "{name}: {e}"
            );
            assert!(e.to_string().contains("truncated"), "{name}: {e}");
        }
    }

    #[test]
    fn every_prefix_of_a_record_is_rejected() {
        for f in [Format::Iso19794_2, Format::Ansi378] {
            let b = export(&sample(), f);
            for len in 0..b.len() {
                assert!(import_as(&b[..len], f).is_err(), "{f} len {len}");
                assert!(import(&b[..len]).is_err(), "{f} len {len}");
            }
        }
    }

    #[test]
    fn export_then_import_round_trips_in_both_formats() {
        let t = sample();
        for f in [Format::Iso19794_2, Format::Ansi378] {
            let b = export(&t, f);
            assert_eq!(detect(&b).unwrap(), f);
            let u = import(&b).unwrap();
            assert_eq!(u.minutiae_count(), 20);
            for (a, c) in t.minutiae().iter().zip(u.minutiae()) {
                assert_eq!((a.x, a.y, a.kind), (c.x, c.y, c.kind));
                let tol = if f == Format::Ansi378 { 0.02 } else { 0.013 };
                assert!(crate::mcc::dphi(a.angle - c.angle).abs() < tol);
            }
        }
    }

    #[test]
    fn garbage_and_bad_fields_are_named() {
        assert_eq!(
            import(b"hello world, not a template").unwrap_err(),
            IsoError::NotFmr
        );
        let mut b = export(&sample(), Format::Iso19794_2);
        b[28] = 0xc0; // first minutia: type 11 is reserved
        assert!(matches!(
            import(&b).unwrap_err(),
            IsoError::Invalid {
                field: "minutia type",
                ..
            }
        ));
        let mut b = export(&sample(), Format::Ansi378);
        b.push(7);
        assert!(matches!(
            import_as(&b, Format::Ansi378).unwrap_err(),
            IsoError::Length { .. }
        ));
        // Zero padding after the record (fixed-size storage) is accepted.
        let mut b = export(&sample(), Format::Iso19794_2);
        b.extend_from_slice(&[0; 40]);
        assert_eq!(import(&b).unwrap().minutiae_count(), 20);
    }

    #[test]
    fn shared_sample_records_parse() {
        for n in ["iso-probe.dat", "iso-matching.dat", "iso-nonmatching.dat"] {
            let t = import(&read(&format!("data/fingerprint/samples/{n}"))).unwrap();
            assert!(t.minutiae_count() > 10, "{n}");
        }
    }
}
