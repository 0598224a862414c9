//! The text recogniser: PP-OCRv6's recognition network (an SVTR encoder with a CTC head),
//! converted to TorchScript by `ops/fetch-models.sh` beside the detector, and its decoding as
//! PaddleOCR does it: each line of words brought to 48 pixels high (a tall, narrow box turned
//! a quarter first, as PaddleOCR turns vertical lines), the most likely character of each
//! column taken, repeats and blanks dropped, and a reading kept only when the network is sure
//! of it.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use super::layout::Image;
use crate::ModelError;
use lamina_families::design::TEXT_RECOGNISER_SHA256;

/// The TorchScript file in the models folder; its record (`.pt.source`) and its character
/// list (`.txt`, one character a line, from the ONNX file's metadata) lie beside it.
pub const FILE: &str = "ppocr_rec.pt";

/// The height the network reads a line at (PaddleOCR's `rec_image_shape`).
const HEIGHT: usize = 48;
/// The widest line it reads: a longer one is squeezed to this width (50 characters' worth at
/// the network's aspect), so one line's memory and time stay bounded.
const MAX_WIDTH: usize = 50 * HEIGHT;
/// Lines read in one pass (rapidocr's `rec_batch_num`), narrowest first so a batch's lines
/// need little padding.
const BATCH: usize = 6;
/// A reading whose characters' mean probability is under this is dropped (rapidocr's
/// `text_score`).
const MIN_CONFIDENCE: f32 = 0.5;
/// A box this many times taller than wide is a vertical line, turned before reading.
const VERTICAL: f64 = 1.5;

pub struct TextReader {
    module: tch::CModule,
    /// The characters by class: class 0 is CTC's blank, the last a space.
    chars: Vec<String>,
    pub path: PathBuf,
}

/// A line of words: its box in image pixels, `x1` and `y1` exclusive.
pub type Line = [usize; 4];

impl TextReader {
    /// Loads the recogniser and its characters, refusing files that are not the conversion
    /// of the pinned ONNX file.
    pub fn load(device: Device) -> Result<TextReader, ModelError> {
        let super::pinned::Pinned { module, path, beside } = super::pinned::load(FILE, "text recogniser", TEXT_RECOGNISER_SHA256, &[("txt", "characters")], device)?;
        let listed = beside.into_iter().next().unwrap_or_default();
        let listed = String::from_utf8(listed).map_err(|_| super::pinned::load_error(&path, "its characters are not UTF-8"))?;
        let mut chars = vec![String::new()];
        chars.extend(listed.split('\n').map(str::to_owned));
        chars.push(" ".to_owned());
        Ok(TextReader { module, chars, path })
    }

    /// The number of classes the network scores: the characters, the blank and the space.
    pub fn classes(&self) -> usize {
        self.chars.len()
    }

    /// The network on a prepared input (`[B,3,48,W]`, BGR in [-1,1]): each column's class
    /// probabilities `[B,W/8,classes]`, for checks against the ONNX file.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, tch::TchError> {
        tch::no_grad(|| self.module.forward_ts(&[input]))
    }

    /// The input the network gets for `line` of `image`: `[3,48,W]` BGR in [-1,1], W the
    /// line's width at 48 pixels high (at most [`MAX_WIDTH`]).
    pub fn input(image: &Image<'_>, line: Line) -> Result<Tensor, tch::TchError> {
        let [x0, y0, x1, y1] = line;
        let (bw, bh) = (x1 - x0, y1 - y0);
        let (w, n) = (image.width, image.width * image.height);
        // BGR, as PaddleOCR's models were trained.
        let mut crop = Vec::with_capacity(3 * bw * bh);
        for c in [2, 1, 0] {
            for y in y0..y1 {
                crop.extend_from_slice(&image.rgb[c * n + y * w + x0..c * n + y * w + x1]);
            }
        }
        let mut crop = Tensor::from_slice(&crop).view([1, 3, bh as i64, bw as i64]);
        let (mut cw, mut ch) = (bw, bh);
        if bh as f64 >= VERTICAL * bw as f64 {
            crop = crop.f_rot90(1, [2, 3])?;
            (cw, ch) = (bh, bw);
        }
        let width = ((HEIGHT * cw) as f64 / ch as f64).ceil().clamp(1.0, MAX_WIDTH as f64) as i64;
        Ok(crop.f_upsample_bilinear2d([HEIGHT as i64, width], false, None, None)?.squeeze_dim(0) * 2.0 - 1.0)
    }

    /// What each of `lines` of `image` says, `None` where the network is not sure of it.
    pub fn read(&self, image: &Image<'_>, lines: &[Line], device: Device) -> Result<Vec<Option<String>>, tch::TchError> {
        let inputs = lines.iter().map(|&l| Self::input(image, l)).collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| inputs[i].size()[2]);
        let mut read = vec![None; lines.len()];
        for chunk in order.chunks(BATCH) {
            let widest = chunk.iter().map(|&i| inputs[i].size()[2]).max().unwrap_or(1);
            // Padded on the right with 0, mid grey after scaling, as PaddleOCR pads.
            let batch: Vec<Tensor> = chunk.iter().map(|&i| inputs[i].constant_pad_nd([0, widest - inputs[i].size()[2]])).collect();
            let probs = self.forward(&Tensor::f_stack(&batch, 0)?.to_device(device))?;
            let (_, steps, _) = probs.size3()?;
            let (best, class) = probs.f_max_dim(2, false)?;
            let (steps, best, class) = (steps as usize, best.to_kind(Kind::Float).to_device(Device::Cpu), class.to_device(Device::Cpu));
            let best = Vec::<f32>::try_from(best.view([-1]))?;
            let class = Vec::<i64>::try_from(class.view([-1]))?;
            for (k, &i) in chunk.iter().enumerate() {
                let span = k * steps..(k + 1) * steps;
                read[i] = decode(&class[span.clone()], &best[span], &self.chars);
            }
        }
        Ok(read)
    }
}

/// CTC's greedy decoding of one line: each column's class and its probability, repeats and
/// blanks dropped; `None` when nothing is read or the kept characters' mean probability is
/// under [`MIN_CONFIDENCE`].
pub fn decode(class: &[i64], best: &[f32], chars: &[String]) -> Option<String> {
    let (mut text, mut sum, mut count) = (String::new(), 0.0f32, 0usize);
    let mut previous = 0;
    for (&c, &p) in class.iter().zip(best) {
        if c != 0 && c != previous {
            text.push_str(chars.get(c as usize).map_or("", String::as_str));
            sum += p;
            count += 1;
        }
        previous = c;
    }
    let text = text.trim().to_owned();
    (count > 0 && sum / count as f32 >= MIN_CONFIDENCE && !text.is_empty()).then_some(text)
}

/// A text layer's lines in reading order: rows top to bottom (lines overlapping by half the
/// smaller one's height are one row), each row left to right; the words of a row joined by a
/// space and the rows by a newline. `None` when no line was read.
pub fn words(lines: &[(Line, Option<String>)]) -> Option<String> {
    let mut sorted: Vec<&(Line, Option<String>)> = lines.iter().filter(|(_, t)| t.is_some()).collect();
    sorted.sort_by_key(|(l, _)| (l[1] + l[3], l[0]));
    let mut rows: Vec<Vec<&(Line, Option<String>)>> = Vec::new();
    for line in sorted {
        let same = rows.last().and_then(|row| row.last()).is_some_and(|(last, _)| {
            let overlap = line.0[3].min(last[3]) as f64 - line.0[1].max(last[1]) as f64;
            overlap >= 0.5 * (line.0[3] - line.0[1]).min(last[3] - last[1]) as f64
        });
        match rows.last_mut() {
            Some(row) if same => row.push(line),
            _ => rows.push(vec![line]),
        }
    }
    let text: Vec<String> = rows
        .into_iter()
        .map(|mut row| {
            row.sort_by_key(|(l, _)| l[0]);
            row.iter().filter_map(|(_, t)| t.as_deref()).collect::<Vec<_>>().join(" ")
        })
        .collect();
    (!text.is_empty()).then(|| text.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars() -> Vec<String> {
        ["", "a", "b", "c", " "].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ctc_drops_repeats_and_blanks_and_keeps_a_letter_said_twice_across_a_blank() {
        // a a _ b _ b c c: "abbc".
        let class = [1, 1, 0, 2, 0, 2, 3, 3];
        assert_eq!(decode(&class, &[0.9; 8], &chars()).as_deref(), Some("abbc"));
        // Nothing but blanks, or an unsure reading: nothing.
        assert_eq!(decode(&[0, 0, 0], &[0.99; 3], &chars()), None);
        assert_eq!(decode(&[1, 2], &[0.3, 0.4], &chars()), None);
        // A class past the list (a network that disagrees with its list) reads as nothing.
        assert_eq!(decode(&[1, 9], &[0.9, 0.9], &chars()).as_deref(), Some("a"));
    }

    #[test]
    fn a_line_is_brought_to_48_pixels_high_and_a_tall_one_turned_first() {
        let (w, h) = (40, 120);
        let n = w * h;
        // Red on the left half, blue on the right: BGR order and the quarter turn show.
        let rgb: Vec<f32> = (0..3 * n).map(|i| ((i / n == 0 && i % w < 20) || (i / n == 2 && i % w >= 20)) as u8 as f32).collect();
        let image = Image { rgb: &rgb, width: w, height: h };
        let wide = TextReader::input(&image, [0, 0, 40, 12]).unwrap();
        assert_eq!(wide.size(), [3, 48, 160]);
        // Channel 0 is blue: -1 on the left (red), 1 on the right.
        assert_eq!((wide.double_value(&[0, 24, 10]), wide.double_value(&[0, 24, 150])), (-1.0, 1.0));
        // 40 x 120 is tall: turned a quarter (counter-clockwise, as np.rot90), 120 x 40, so
        // 144 wide at 48 high, the left half (red) at the bottom.
        let tall = TextReader::input(&image, [0, 0, 40, 120]).unwrap();
        assert_eq!(tall.size(), [3, 48, 144]);
        assert_eq!((tall.double_value(&[2, 44, 70]), tall.double_value(&[2, 3, 70])), (1.0, -1.0));
        // A line 200 pixels long and one high would be 9600 wide: squeezed to the widest the
        // network reads.
        let strip = vec![0.5f32; 3 * 200];
        let line = TextReader::input(&Image { rgb: &strip, width: 200, height: 1 }, [0, 0, 200, 1]).unwrap();
        assert_eq!(line.size(), [3, 48, MAX_WIDTH as i64]);
    }

    #[test]
    fn lines_are_read_in_rows_top_to_bottom_and_left_to_right() {
        let line = |x0, y0, t: &str| ([x0, y0, x0 + 40, y0 + 20], Some(t.to_owned()));
        let lines = vec![line(60, 52, "lines"), line(10, 50, "two"), line(10, 0, "first"), line(60, 3, "row"), ([0, 100, 9, 120], None)];
        assert_eq!(words(&lines).as_deref(), Some("first row\ntwo lines"));
        assert_eq!(words(&[([0, 0, 5, 5], None)]), None);
    }
}
