//! `nnmnist show N [--weights F]`: draws test image N in the terminal, prints its label and,
//! given weights (either network's, told from the tensor names), the prediction and the ten class
//! probabilities as a bar chart: the original's `show_image`, in a terminal.
//!
//! The image takes 14 lines of 28 characters, two pixel rows per line (Unicode half blocks).
//! On a colour terminal each pixel gets its own grey (ANSI 256 colours, `▀` with the top
//! pixel as foreground, the bottom one as background). Where NO_COLOR is set or stdout is
//! not a terminal (a log, a pipe), the pair is drawn with plain characters ` ░▒▓█▀▄`, which
//! read well in any file.
use crate::data::{Mnist, COLS, PIXELS, ROWS};
use crate::evaluation::argmax;
use crate::networks::{self, ModelKind};
use crate::terminal::{print, Shown};
use crate::weights::Weights;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Shades from blank to full, for the plain drawing.
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// What `nnmnist show` shows: test image `index` of `data_dir`, classified with `weights`.
#[derive(Debug, Clone)]
pub struct ShowSpec {
    pub index: usize,
    pub weights: Option<PathBuf>,
    /// `--model`; None: told from the weights.
    pub model: Option<ModelKind>,
    pub data_dir: PathBuf,
}

/// The `nnmnist show` command.
pub fn run(spec: &ShowSpec) -> Result<()> {
    // Weights first: a bad file is reported without waiting for the data.
    let net = match &spec.weights {
        Some(path) => Some(networks::load(&Weights::load(path)?, spec.model, tch::Device::Cpu)?),
        None => None,
    };
    let test = &Mnist::load_test(&spec.data_dir)?;
    if spec.index >= test.len() {
        bail!(
            "test image {} does not exist: the test set in {} has {} images (0 to {})",
            spec.index,
            spec.data_dir.shown(),
            test.len(),
            test.len().saturating_sub(1)
        );
    }
    let image = test.image(spec.index);
    let label = test.labels[spec.index];
    let color = use_color();
    let mut text = render(image, color);
    text.push_str(&format!("Test image {}: label {label}\n", spec.index));
    if let Some(net) = net {
        let probs = net.probabilities(image)?;
        let predicted = argmax(&probs);
        let verdict = if predicted == label as usize { "correct" } else { "wrong" };
        text.push_str(&format!("Prediction: {predicted} ({verdict}; {})\n", net.describe()));
        text.push_str(&bar_chart(&probs, predicted, label as usize));
    }
    print(text)?;
    Ok(())
}

/// Colour where stdout takes it ([`crate::terminal::colour`]: a terminal, NO_COLOR,
/// CLICOLOR, CLICOLOR_FORCE, TERM=dumb).
pub fn use_color() -> bool {
    crate::terminal::colour(&std::io::stdout())
}

/// Draws a 28x28 image (784 u8, row-major, 0 = background) as 14 framed lines of 28
/// characters, each showing two pixel rows.
pub fn render(pixels: &[u8], color: bool) -> String {
    assert_eq!(pixels.len(), PIXELS, "render: an image has {PIXELS} pixels");
    let mut out = String::new();
    out.push('┌');
    out.push_str(&"─".repeat(COLS));
    out.push_str("┐\n");
    for row in (0..ROWS).step_by(2) {
        out.push('│');
        for col in 0..COLS {
            let top = pixels[row * COLS + col];
            let bottom = pixels[(row + 1) * COLS + col];
            if color {
                out.push_str(&format!("\x1b[38;5;{}m\x1b[48;5;{}m▀", grey(top), grey(bottom)));
            } else {
                out.push(plain_cell(top, bottom));
            }
        }
        if color {
            out.push_str("\x1b[0m");
        }
        out.push_str("│\n");
    }
    out.push('└');
    out.push_str(&"─".repeat(COLS));
    out.push_str("┘\n");
    out
}

/// The ANSI 256-colour grey ramp (232 = near black .. 255 = near white) for a pixel, with
/// 0 (background) as 16, pure black.
fn grey(p: u8) -> u8 {
    if p == 0 {
        16
    } else {
        232 + (p as u16 * 23 / 255) as u8
    }
}

/// One character for a top and a bottom pixel: a shade when they are alike, a half block
/// when one is ink and the other blank.
fn plain_cell(top: u8, bottom: u8) -> char {
    let level = |p: u8| ((p as usize * 4 + 127) / 255).min(4);
    let (t, b) = (level(top), level(bottom));
    match (t, b) {
        _ if t == b => SHADES[t],
        (3.., ..=1) => '▀',
        (..=1, 3..) => '▄',
        _ => SHADES[(t + b).div_ceil(2)],
    }
}

/// The ten probabilities as bars of up to 30 characters, with percentages; the prediction
/// and the label are marked.
pub fn bar_chart(probs: &[f64], predicted: usize, label: usize) -> String {
    const WIDTH: f64 = 30.0;
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let mut out = String::new();
    for (digit, &p) in probs.iter().enumerate() {
        let eighths = (p.clamp(0.0, 1.0) * WIDTH * 8.0).round() as usize;
        let mut bar = "█".repeat(eighths / 8);
        if !eighths.is_multiple_of(8) {
            bar.push(EIGHTHS[eighths % 8]);
        }
        let mut marks = Vec::new();
        if digit == predicted {
            marks.push("prediction");
        }
        if digit == label {
            marks.push("label");
        }
        let marks = if marks.is_empty() { String::new() } else { format!("  <- {}", marks.join(", ")) };
        out.push_str(&format!("  {digit} {bar:<30} {:>5.1}%{marks}\n", 100.0 * p));
    }
    out
}
