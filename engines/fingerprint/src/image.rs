//! Input image type and resolution handling.

/// An 8-bit grayscale fingerprint image, row-major, dark ridges on a light background.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Resolution in dots per inch (500 for FVC and most optical readers).
    pub dpi: u16,
    /// `width * height` pixel values.
    pub pixels: Vec<u8>,
}

impl GrayImage {
    /// Builds an image at 500 dpi.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Self {
        Self {
            width,
            height,
            dpi: 500,
            pixels,
        }
    }

    /// Bilinear rescale to `dpi`; the identity when the resolution already matches.
    pub(crate) fn rescaled_to(&self, dpi: u16) -> GrayImage {
        if self.dpi == dpi {
            return self.clone();
        }
        let s = f64::from(dpi) / f64::from(self.dpi);
        let nw = ((f64::from(self.width) * s).round() as u32).max(1);
        let nh = ((f64::from(self.height) * s).round() as u32).max(1);
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; nw as usize * nh as usize];
        for y in 0..nh as usize {
            let fy = ((y as f64 + 0.5) / s - 0.5).clamp(0.0, (h - 1) as f64);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(h - 1);
            let ty = fy - y0 as f64;
            for x in 0..nw as usize {
                let fx = ((x as f64 + 0.5) / s - 0.5).clamp(0.0, (w - 1) as f64);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(w - 1);
                let tx = fx - x0 as f64;
                let p = |xx: usize, yy: usize| f64::from(self.pixels[yy * w + xx]);
                let v = (p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx) * (1.0 - ty)
                    + (p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx) * ty;
                out[y * nw as usize + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        GrayImage {
            width: nw,
            height: nh,
            dpi,
            pixels: out,
        }
    }
}
