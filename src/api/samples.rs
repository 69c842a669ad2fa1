//! Samples uploaded in request bodies.

use std::path::Path;

use apg_device::Sample;
use base64::Engine as _;
use serde::Deserialize;

use super::error::ApiError;
use crate::decision::Source;
use crate::modality::Modality;

/// One uploaded sample: a file's bytes in base64 (PNG, TIFF, BMP, PGM or JPEG images; WAV or
/// FLAC audio; IMU CSV).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleUpload {
    /// Base64 of the file.
    pub data: String,
    /// File name, for error messages and audio format detection.
    #[serde(default)]
    pub name: Option<String>,
    /// Resolution of fingerprint images.
    #[serde(default = "default_dpi")]
    pub dpi: u16,
}

fn default_dpi() -> u16 {
    500
}

impl std::fmt::Debug for SampleUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleUpload")
            .field("name", &self.name)
            .field("base64_len", &self.data.len())
            .finish()
    }
}

/// Decodes uploads for a modality; `field` names them in errors (`sample`, `samples[2]`).
pub fn decode(upload: &SampleUpload, modality: Modality, field: &str) -> Result<Sample, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(upload.data.trim())
        .map_err(|e| ApiError::field(format!("{field}.data"), format!("not valid base64: {e}")))?;
    if !(100..=2000).contains(&upload.dpi) {
        return Err(ApiError::field(format!("{field}.dpi"), "100 to 2000 dpi"));
    }
    let name = upload
        .name
        .clone()
        .unwrap_or_else(|| format!("uploaded {field}"));
    apg_sim::decode_bytes(
        modality.device_kind(),
        &bytes,
        Path::new(&name),
        upload.dpi,
        204.8,
    )
    .map_err(|e| ApiError::field(format!("{field}.data"), e.to_string()))
}

/// Where a decision's samples come from: a device, or uploads (never both).
pub fn source(
    modality: Modality,
    device_id: Option<String>,
    uploads: Vec<&SampleUpload>,
    field: &str,
) -> Result<Source, ApiError> {
    match (device_id, uploads.is_empty()) {
        (Some(_), false) => Err(ApiError::field(
            "device_id",
            format!("give either device_id or {field}, not both"),
        )),
        (device, true) => Ok(Source::Device(device)),
        (None, false) => {
            let samples = uploads
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    decode(
                        u,
                        modality,
                        &if field == "sample" {
                            field.to_string()
                        } else {
                            format!("{field}[{i}]")
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Source::Upload(samples))
        }
    }
}
