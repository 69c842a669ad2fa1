//! Turning the sensor's strips into one image, the way the reference (libfprint) does it:
//! background subtraction and finger detection per frame, movement estimation between
//! consecutive strips by exhaustive search, blitting onto a wider canvas, a 2× bilinear
//! upscale, then flips and inversion. See the egis0570 section of PROTOCOL.md.
//!
//! Every step reproduces the reference's integer arithmetic (error normalisation, first-best
//! tie breaking, the clipping of strips that leave the canvas, pixman's 7-bit bilinear
//! weights), so that the result is identical pixel for pixel.

/// Width of one sensor frame in pixels.
pub const FRAME_WIDTH: usize = 114;
/// Height of one sensor frame in rows.
pub const FRAME_HEIGHT: usize = 57;
/// Frames delivered by one image read.
pub const FRAMES_PER_READ: usize = 5;
/// Bytes of one image read: five frames and 22 trailing bytes that carry no image.
pub const READ_LEN: usize = 32512;
/// Rows of each frame that are used (the middle band).
pub const STRIP_ROWS: usize = 17;
/// First used row of each frame.
pub const STRIP_TOP: usize = (FRAME_HEIGHT - STRIP_ROWS) / 2;
/// Pixels of one strip.
pub const STRIP_LEN: usize = FRAME_WIDTH * STRIP_ROWS;
/// Width of the canvas the strips are placed on (4/3 of the sensor width).
pub const CANVAS_WIDTH: usize = FRAME_WIDTH * 4 / 3;
/// Upscale factor applied to the assembled canvas.
pub const SCALE: usize = 2;
/// A pixel counts as covered when it exceeds the background by more than this.
const BACKGROUND_MARGIN: i32 = 3;
/// A strip holds a finger when its mean background-subtracted level exceeds this.
const FINGER_MEAN: usize = 20;
/// Horizontal search range of the movement estimation: offsets -8..=7.
const SEARCH_DX: std::ops::Range<i32> = -8..8;
/// Smallest vertical offset considered between consecutive strips.
const MIN_DY: i32 = 2;

fn strip_of(raw: &[u8], k: usize) -> &[u8] {
    let start = k * FRAME_WIDTH * FRAME_HEIGHT + STRIP_TOP * FRAME_WIDTH;
    &raw[start..start + STRIP_LEN]
}

/// Per-pixel minimum over the strips of the first read of a session: the empty sensor.
pub fn background(raw: &[u8]) -> Result<Vec<u8>, String> {
    check_len(raw)?;
    let mut bg = vec![u8::MAX; STRIP_LEN];
    for k in 0..FRAMES_PER_READ {
        for (b, &p) in bg.iter_mut().zip(strip_of(raw, k)) {
            *b = (*b).min(p);
        }
    }
    Ok(bg)
}

fn check_len(raw: &[u8]) -> Result<(), String> {
    if raw.len() < FRAMES_PER_READ * FRAME_WIDTH * FRAME_HEIGHT {
        return Err(format!(
            "image read has {} bytes, expected {READ_LEN}",
            raw.len()
        ));
    }
    Ok(())
}

/// One image read after background subtraction.
#[derive(Debug, Clone)]
pub struct Read {
    /// The five strips, background subtracted (pixels not clearly above the background are 0).
    pub strips: Vec<Vec<u8>>,
    /// Mean level of each strip.
    pub means: Vec<usize>,
}

impl Read {
    /// Whether strip `k` shows a finger.
    pub fn finger(&self, k: usize) -> bool {
        self.means.get(k).is_some_and(|&m| m > FINGER_MEAN)
    }

    /// Whether any strip shows a finger.
    pub fn any_finger(&self) -> bool {
        (0..self.strips.len()).any(|k| self.finger(k))
    }

    /// The leading strips that show a finger, up to the first one that does not. The
    /// reference keeps only these: a strip without a finger ends the presentation, and strips
    /// after it in the same read are dropped.
    pub fn leading_finger_strips(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.strips
            .iter()
            .enumerate()
            .take_while(|(k, _)| self.finger(*k))
            .map(|(_, s)| s)
    }

    /// Whether a strip without a finger ends the run of finger strips in this read.
    pub fn ends_presentation(&self) -> bool {
        (0..self.strips.len()).any(|k| !self.finger(k))
    }
}

/// Subtracts the background from the strips of one read and measures each strip.
pub fn subtract_background(raw: &[u8], bg: &[u8]) -> Result<Read, String> {
    check_len(raw)?;
    if bg.len() != STRIP_LEN {
        return Err("background has the wrong size".into());
    }
    let mut strips = Vec::with_capacity(FRAMES_PER_READ);
    let mut means = Vec::with_capacity(FRAMES_PER_READ);
    for k in 0..FRAMES_PER_READ {
        let s: Vec<u8> = strip_of(raw, k)
            .iter()
            .zip(bg)
            .map(|(&p, &b)| {
                if i32::from(p) - BACKGROUND_MARGIN > i32::from(b) {
                    p - b
                } else {
                    0
                }
            })
            .collect();
        means.push(s.iter().map(|&v| v as usize).sum::<usize>() / STRIP_LEN);
        strips.push(s);
    }
    Ok(Read { strips, means })
}

/// A strip with the offset the movement estimation assigned to it.
#[derive(Debug, Clone)]
struct Strip<'a> {
    px: &'a [u8],
    dx: i32,
    dy: i32,
}

/// Mean absolute difference of `a` and `b` overlapped so that row `r` of `a` lies on row
/// `r + dy` of `b` and column `c + dx` of `a` on column `c` of `b` (scaled to a full strip).
fn overlap_error(a: &[u8], b: &[u8], dx: i32, dy: i32) -> u32 {
    let (w, h) = (FRAME_WIDTH as i32, STRIP_ROWS as i32);
    let ow = w - dx.abs();
    let oh = h - dy;
    if ow <= 0 || oh <= 0 {
        return u32::MAX;
    }
    let (ax, bx) = (dx.max(0), (-dx).max(0));
    let mut err: u32 = 0;
    for r in 0..oh {
        let ra = (r * w + ax) as usize;
        let rb = ((r + dy) * w + bx) as usize;
        for (p, q) in a[ra..ra + ow as usize].iter().zip(&b[rb..rb + ow as usize]) {
            err += u32::from(p.abs_diff(*q));
        }
    }
    err * (w * h) as u32 / (ow * oh) as u32
}

/// Searches the offset of `b` relative to `a` with the smallest error. Returns the smallest
/// error and, if any offset beat the initial bound, the horizontal shift and vertical offset.
fn best_overlap(a: &[u8], b: &[u8]) -> (u32, Option<(i32, i32)>) {
    let mut best = 255 * STRIP_LEN as u32;
    let mut found = None;
    for dy in MIN_DY..STRIP_ROWS as i32 {
        for dx in SEARCH_DX {
            let e = overlap_error(a, b, dx, dy);
            if e < best {
                best = e;
                found = Some((-dx, dy));
            }
        }
    }
    (best, found)
}

/// One estimation pass over all strips; returns the summed best error divided by the number
/// of strips.
///
/// Every strip after the first is matched against the one before it and gets the offset
/// that places it relative to its predecessor. Forward: the later strip's row `r` lies on
/// the earlier strip's row `r + dy` (the finger moves towards row 0). Reverse: the other
/// way round, stored negated. An offset is only replaced when the search beats its initial
/// bound.
fn estimation_pass(strips: &mut [Strip<'_>], reverse: bool) -> u32 {
    let mut total: u64 = 0;
    for i in 1..strips.len() {
        let (earlier, later) = (strips[i - 1].px, strips[i].px);
        let (err, found) = if reverse {
            best_overlap(earlier, later)
        } else {
            best_overlap(later, earlier)
        };
        if let Some((dx, dy)) = found {
            strips[i].dx = dx;
            strips[i].dy = dy;
        }
        if reverse {
            strips[i].dx = -strips[i].dx;
            strips[i].dy = -strips[i].dy;
        }
        total += u64::from(err);
    }
    (total / strips.len() as u64) as u32
}

/// The assembled canvas before scaling.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels ([`CANVAS_WIDTH`]).
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Pixels, background 0, ridges bright.
    pub px: Vec<u8>,
    /// Whether the strips were laid out top-down (the image must then be rotated by 180°).
    pub flipped: bool,
}

/// Copies a strip onto the canvas at (x, y), clipping as the reference does.
fn blit(canvas: &mut Canvas, s: &[u8], x: i32, y: i32) {
    let (fw, fh) = (FRAME_WIDTH as i32, STRIP_ROWS as i32);
    let (cw, ch) = (canvas.width as i32, canvas.height as i32);
    let (ix0, fx0, mut width) = if x < 0 { (0, -x, fw + x) } else { (x, 0, fw) };
    if ix0 + width > cw {
        width = cw - ix0;
    }
    let (mut iy, mut fy, mut height) = if y < 0 { (0, -y, fh + y) } else { (y, 0, fh) };
    if fx0 > fw || fy > fh || ix0 > cw || iy > ch {
        return;
    }
    if iy + height > ch {
        height = ch - iy;
    }
    while fy < height {
        let (mut ix, mut fx) = (ix0, fx0);
        while fx < width {
            let (Ok(d), Ok(sidx)) = (usize::try_from(ix + iy * cw), usize::try_from(fx + fy * fw))
            else {
                return;
            };
            if let (Some(dst), Some(&v)) = (canvas.px.get_mut(d), s.get(sidx)) {
                *dst = v;
            }
            fx += 1;
            ix += 1;
        }
        fy += 1;
        iy += 1;
    }
}

/// Estimates the movement between consecutive strips and lays them out on the canvas.
pub fn assemble(strips: &[Vec<u8>]) -> Result<Canvas, String> {
    if strips.is_empty() {
        return Err("no strips to assemble".into());
    }
    if strips.iter().any(|s| s.len() != STRIP_LEN) {
        return Err("strip has the wrong size".into());
    }
    let mut st: Vec<Strip<'_>> = strips
        .iter()
        .map(|s| Strip {
            px: s,
            dx: 0,
            dy: 0,
        })
        .collect();
    // Forward, then reverse; forward again if it was better.
    let forward = estimation_pass(&mut st, false) as i32;
    let reverse = estimation_pass(&mut st, true) as i32;
    if forward < reverse {
        estimation_pass(&mut st, false);
    }
    st[0].dx = 0;
    st[0].dy = 0;
    let sum: i32 = st.iter().map(|s| s.dy).sum();
    let upward = sum < 0;
    let height = sum.unsigned_abs() as usize + STRIP_ROWS;
    if height > 1 << 15 {
        return Err(format!("assembled image would be {height} rows high"));
    }
    let mut canvas = Canvas {
        width: CANVAS_WIDTH,
        height,
        px: vec![0; CANVAS_WIDTH * height],
        flipped: !upward,
    };
    // Downward movement starts at the top, upward at the bottom; each strip is placed at its
    // predecessor's position plus its own offset, later strips covering earlier ones.
    let mut y = if upward {
        (height - STRIP_ROWS) as i32
    } else {
        0
    };
    let mut x = ((CANVAS_WIDTH - FRAME_WIDTH) / 2) as i32;
    for s in &st {
        y += s.dy;
        x += s.dx;
        blit(&mut canvas, s.px, x, y);
    }
    Ok(canvas)
}

/// Bilinear 2× upscale with the reference's arithmetic (pixman, 7-bit weights, samples outside
/// the canvas count as 0): output pixel (X, Y) samples the source at (X/2 - 1/4, Y/2 - 1/4).
pub fn upscale(src: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (ow, oh) = (width * SCALE, height * SCALE);
    let at = |x: i64, y: i64| -> u64 {
        if x < 0 || y < 0 || x >= width as i64 || y >= height as i64 {
            0
        } else {
            u64::from(src[y as usize * width + x as usize])
        }
    };
    // Position in 16.16 fixed point, left neighbour and 8-bit weight of the right neighbour.
    let split = |o: usize| -> (i64, u64) {
        let centre = ((o as i64) << 16) + 0x8000;
        let pos = centre / SCALE as i64 - 0x8000;
        let w7 = ((pos >> 9) & 0x7f) as u64;
        (pos >> 16, w7 << 1)
    };
    let mut out = Vec::with_capacity(ow * oh);
    for oy in 0..oh {
        let (y1, wy) = split(oy);
        for ox in 0..ow {
            let (x1, wx) = split(ox);
            let v = at(x1, y1) * (256 - wx) * (256 - wy)
                + at(x1 + 1, y1) * wx * (256 - wy)
                + at(x1, y1 + 1) * (256 - wx) * wy
                + at(x1 + 1, y1 + 1) * wx * wy;
            out.push((v >> 16) as u8);
        }
    }
    out
}

/// The final image: upscaled canvas, rotated by 180° when the strips were laid out top-down,
/// inverted so that ridges are dark. Returns (width, height, pixels).
pub fn finish(canvas: &Canvas) -> (usize, usize, Vec<u8>) {
    let (w, h) = (canvas.width * SCALE, canvas.height * SCALE);
    let mut px = upscale(&canvas.px, canvas.width, canvas.height);
    if canvas.flipped {
        px.reverse();
    }
    for p in &mut px {
        *p = 255 - *p;
    }
    (w, h, px)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..STRIP_LEN)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn overlap_of_a_shifted_copy_is_found() {
        // b is a moved down by 5 rows and right by 3 columns: row r of b equals row r+5 of a.
        let a = strip(7);
        let mut b = vec![0u8; STRIP_LEN];
        for r in 0..STRIP_ROWS - 5 {
            for c in 0..FRAME_WIDTH - 3 {
                b[r * FRAME_WIDTH + c + 3] = a[(r + 5) * FRAME_WIDTH + c];
            }
        }
        let (err, found) = best_overlap(&b, &a);
        assert_eq!(found, Some((-3, 5)));
        assert!(err < 400, "{err}");
    }

    /// Cuts strips out of a tall random picture at known offsets and checks that the
    /// estimation finds them and the canvas shows the picture again.
    fn assemble_synthetic(upward: bool) {
        let rows = 120;
        let mut big = Vec::new();
        for r in 0..rows {
            big.extend(strip(r as u32 + 1)[..FRAME_WIDTH].iter().copied());
        }
        let steps = [3, 5, 2, 7, 4, 9, 3, 6];
        let mut offsets = vec![0usize];
        for s in steps {
            offsets.push(offsets.last().copied().unwrap_or(0) + s);
        }
        let mut strips: Vec<Vec<u8>> = offsets
            .iter()
            .map(|&o| big[o * FRAME_WIDTH..(o + STRIP_ROWS) * FRAME_WIDTH].to_vec())
            .collect();
        if upward {
            strips.reverse();
        }
        let c = assemble(&strips).expect("assembles");
        let span = offsets.last().copied().unwrap_or(0) + STRIP_ROWS;
        assert_eq!(c.height, span);
        assert_eq!(c.flipped, !upward);
        let left = (CANVAS_WIDTH - FRAME_WIDTH) / 2;
        for r in 0..span {
            assert_eq!(
                &c.px[r * CANVAS_WIDTH + left..r * CANVAS_WIDTH + left + FRAME_WIDTH],
                &big[r * FRAME_WIDTH..(r + 1) * FRAME_WIDTH],
                "row {r}"
            );
            assert!(c.px[r * CANVAS_WIDTH..r * CANVAS_WIDTH + left]
                .iter()
                .all(|&v| v == 0));
        }
    }

    #[test]
    fn strips_moving_down_are_reassembled() {
        assemble_synthetic(false);
    }

    #[test]
    fn strips_moving_up_are_reassembled() {
        assemble_synthetic(true);
    }

    #[test]
    fn upscale_weights_and_zero_border() {
        let src = [100u8, 200, 40, 80];
        let out = upscale(&src, 2, 2);
        assert_eq!(out.len(), 16);
        // Corner: 9/16 of the source pixel, the rest outside (0).
        assert_eq!(out[0], ((100 * 192 * 192) >> 16) as u8);
        // Output (2, 1) samples source (0.75, 0.25): weights 3/4 right, 1/4 down.
        let v = (100 * 64 * 192 + 200 * 192 * 192 + 40 * 64 * 64 + 80 * 192 * 64) >> 16;
        assert_eq!(out[4 + 2], v as u8);
    }

    #[test]
    fn short_reads_are_errors_not_panics() {
        assert!(background(&[0; 100]).is_err());
        assert!(subtract_background(&[0; 100], &[0; STRIP_LEN]).is_err());
        assert!(subtract_background(&[0; READ_LEN], &[0; 3]).is_err());
        assert!(assemble(&[]).is_err());
        assert!(assemble(&[vec![0; 5]]).is_err());
    }

    #[test]
    fn background_is_subtracted_and_fingers_detected() {
        let mut raw = vec![100u8; READ_LEN];
        let bg = background(&raw).expect("background");
        // Strips 0 and 1 covered, strip 2 empty, strips 3 and 4 covered again.
        for k in [0, 1, 3, 4] {
            let start = k * FRAME_WIDTH * FRAME_HEIGHT + STRIP_TOP * FRAME_WIDTH;
            raw[start..start + STRIP_LEN].fill(150);
        }
        let r = subtract_background(&raw, &bg).expect("read");
        assert_eq!(r.means, vec![50, 50, 0, 50, 50]);
        assert_eq!(r.leading_finger_strips().count(), 2);
        assert!(r.ends_presentation() && r.any_finger());
        // Within the margin counts as background.
        let r = subtract_background(&vec![103u8; READ_LEN], &bg).expect("read");
        assert!(r.strips.iter().all(|s| s.iter().all(|&v| v == 0)));
    }
}
