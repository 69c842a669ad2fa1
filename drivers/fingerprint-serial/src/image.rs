//! The module's image format: 256 × 288 pixels, 4 bits each, two pixels per byte.

/// Image width in pixels.
pub const WIDTH: usize = 256;
/// Image height in pixels.
pub const HEIGHT: usize = 288;
/// Bytes of one uploaded image.
pub const PACKED_LEN: usize = WIDTH * HEIGHT / 2;
/// Resolution of the sensors of this family.
pub const DPI: u16 = 500;

/// Packs 8-bit gray pixels into the upload format: the upper 4 bits of each pixel, the first
/// pixel of a pair in the high nibble.
pub fn pack(pixels: &[u8]) -> Vec<u8> {
    pixels
        .chunks(2)
        .map(|p| (p[0] & 0xF0) | (p.get(1).copied().unwrap_or(0) >> 4))
        .collect()
}

/// Expands uploaded bytes to 8-bit gray: each 4-bit sample `v` becomes `v * 17`, so 0 stays
/// black and 15 becomes 255.
pub fn unpack(packed: &[u8]) -> Vec<u8> {
    packed
        .iter()
        .flat_map(|&b| [(b >> 4) * 17, (b & 0x0F) * 17])
        .collect()
}

/// What a pixel looks like after a trip through the module: its 4-bit level, expanded.
pub fn quantise(pixel: u8) -> u8 {
    (pixel >> 4) * 17
}

/// Fits an image of any size to 256 × 288 by centring it: larger images are cropped, smaller
/// ones padded with white (the background of a fingerprint image).
pub fn fit(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF; WIDTH * HEIGHT];
    let (x0, y0) = (
        width as isize - WIDTH as isize,
        height as isize - HEIGHT as isize,
    );
    let (x0, y0) = (x0 / 2, y0 / 2);
    for y in 0..HEIGHT {
        let sy = y as isize + y0;
        if sy < 0 || sy >= height as isize {
            continue;
        }
        for x in 0..WIDTH {
            let sx = x as isize + x0;
            if sx < 0 || sx >= width as isize {
                continue;
            }
            if let Some(&p) = pixels.get(sy as usize * width + sx as usize) {
                out[y * WIDTH + x] = p;
            }
        }
    }
    out
}

/// A synthetic fingerprint-like pattern: dark concentric ridges around a core, with some
/// variation so that every row differs. `seed` changes the pattern.
pub fn synthetic_ridges(seed: u32) -> Vec<u8> {
    let (cx, cy) = (
        WIDTH as f64 / 2.0 + f64::from(seed % 17),
        HEIGHT as f64 / 2.0,
    );
    let period = 8.0 + f64::from(seed % 5);
    let mut out = Vec::with_capacity(WIDTH * HEIGHT);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let dx = x as f64 - cx;
            let dy = (y as f64 - cy) * 0.8;
            let r = (dx * dx + dy * dy).sqrt() + 3.0 * (dx * 0.05).sin();
            let v = 0.5 + 0.5 * (r * std::f64::consts::TAU / period).cos();
            out.push((40.0 + 200.0 * v) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_puts_the_first_pixel_in_the_high_nibble() {
        assert_eq!(pack(&[0xA3, 0x5F, 0x00, 0xFF]), vec![0xA5, 0x0F]);
        assert_eq!(unpack(&[0xA5]), vec![0xAA, 0x55]);
    }

    #[test]
    fn unpack_of_pack_is_the_quantised_image() {
        let img = synthetic_ridges(3);
        assert_eq!(img.len(), WIDTH * HEIGHT);
        let back = unpack(&pack(&img));
        assert_eq!(back, img.iter().map(|&p| quantise(p)).collect::<Vec<_>>());
        assert_eq!(pack(&img).len(), PACKED_LEN);
    }

    #[test]
    fn fit_centres_crops_and_pads() {
        let big = vec![7u8; 300 * 300];
        assert!(fit(300, 300, &big).iter().all(|&p| p == 7));
        let small = vec![0u8; 10 * 10];
        let f = fit(10, 10, &small);
        assert_eq!(f[0], 0xFF);
        assert_eq!(f[(HEIGHT / 2) * WIDTH + WIDTH / 2], 0);
    }
}
