//! `nnmnist show N [--weights F]`: the drawing, the label line, the prediction and the bar
//! chart for convnet and MLP weights, and the rendering itself (plain and colour).
use crate::common;
use crate::common::repo_data as data_dir;
use nnmnist::checkpoint;
use nnmnist::data::{Mnist, PIXELS};
use nnmnist::cmd::show::{bar_chart, render};


/// Runs `nnmnist show args...` with stdout piped (so no colour); returns stdout.
fn show(args: &[&str]) -> String {
    let data = data_dir();
    let out = common::nnmnist()
        .arg("show")
        .args(args)
        .args(["--data-dir", data.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nnmnist show {args:?} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The ten bar lines `  d <bar> pp.p%...` -> the percentages.
fn percentages(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("  ") && l.contains('%'))
        .map(|l| {
            let pct = l.split('%').next().unwrap().rsplit(' ').next().unwrap();
            pct.parse::<f64>().unwrap_or_else(|_| panic!("bad bar line {l:?}"))
        })
        .collect()
}

#[test]
fn draws_the_image_and_its_label() {
    let out = show(&["0"]);
    let lines: Vec<&str> = out.lines().collect();
    // A frame around 14 lines of 28 characters (two pixel rows each), then the label.
    assert_eq!(lines.len(), 17, "{out}");
    assert_eq!(lines[0], format!("┌{}┐", "─".repeat(28)));
    assert_eq!(lines[15], format!("└{}┘", "─".repeat(28)));
    for l in &lines[1..15] {
        assert_eq!(l.chars().count(), 30, "{l:?}");
        assert!(l.starts_with('│') && l.ends_with('│'));
    }
    assert_eq!(lines[16], "Test image 0: label 7");
    // Piped: plain characters, no escape codes; ink where the digit is.
    assert!(!out.contains('\x1b'), "colour codes in piped output");
    assert!(lines[1..15].iter().any(|l| l.contains('█')), "{out}");
    assert!(lines[1].trim_matches('│').trim().is_empty(), "the top rows of MNIST are blank");

    assert!(show(&["9999"]).contains("Test image 9999: label 6"));
}

#[test]
fn with_convnet_weights_prints_prediction_and_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("convnet.safetensors");
    // A convnet trained for one short epoch (5000 images, batches of 16): it knows image 0 is a 7.
    let data = data_dir();
    let status = common::nnmnist()
        .args(["convnet", "--device", "cpu", "--threads", "1", "--epochs", "1", "--train-size", "5000"])
        .args(["--batch-size", "16", "--test-size", "100", "--data-dir", data.to_str().unwrap(), "--save"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));

    let out = show(&["0", "--weights", path.to_str().unwrap()]);
    assert!(out.contains("Test image 0: label 7"), "{out}");
    assert!(out.contains("Prediction: 7 (correct; convnet; probabilities: softmax of the logits)"), "{out}");
    let pct = percentages(&out);
    assert_eq!(pct.len(), 10, "{out}");
    assert!((pct.iter().sum::<f64>() - 100.0).abs() < 1.0, "{pct:?}");
    assert!(pct[7] > 50.0, "{pct:?}");
    assert!(out.lines().any(|l| l.starts_with("  7 ") && l.ends_with("<- prediction, label")), "{out}");
}

#[test]
fn with_mlp_weights_prints_prediction_and_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mlp.safetensors");
    let net = nnmnist::mlp::Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0);
    checkpoint::save_to(&path, &net.entries(), None).unwrap();
    let out = show(&["3", "--weights", path.to_str().unwrap()]);
    assert!(out.contains("Test image 3: label 0"), "{out}");
    // An untrained network: whatever it predicts, it is the largest of the normalised outputs.
    let pct = percentages(&out);
    assert_eq!(pct.len(), 10, "{out}");
    assert!((pct.iter().sum::<f64>() - 100.0).abs() < 1.0, "{pct:?}");
    let line = out.lines().find(|l| l.starts_with("Prediction: ")).expect("a prediction line");
    assert!(line.contains("MLP 784,30,10; probabilities: the sigmoid outputs divided by their sum"), "{line}");
    let predicted: usize = line["Prediction: ".len()..].split(' ').next().unwrap().parse().unwrap();
    let max = pct.iter().cloned().fold(0.0, f64::max);
    assert_eq!(pct[predicted], max, "{out}");
}

#[test]
fn render_plain_and_colour() {
    let mnist = Mnist::load(&data_dir()).unwrap();
    let image = mnist.test.image(0);
    let plain = render(image, false);
    assert_eq!(plain.lines().count(), 16);
    assert!(!plain.contains('\x1b'));
    let colour = render(image, true);
    assert_eq!(colour.lines().count(), 16);
    // Every cell: a foreground (top pixel) and background (bottom pixel) grey, then ▀.
    let body: Vec<&str> = colour.lines().skip(1).take(14).collect();
    for l in &body {
        assert_eq!(l.matches('▀').count(), 28, "{l:?}");
        assert_eq!(l.matches("\x1b[38;5;").count(), 28);
        assert_eq!(l.matches("\x1b[48;5;").count(), 28);
        assert!(l.ends_with("\x1b[0m│"), "colours reset before the frame: {l:?}");
    }
    // Background is black (16), ink is a light grey of the 232-255 ramp.
    assert!(colour.contains("\x1b[38;5;16m\x1b[48;5;16m▀"));
    // Full ink is the ramp's brightest grey (255), on both halves of a cell.
    let full = format!("│{}\x1b[0m│", "\x1b[38;5;255m\x1b[48;5;255m▀".repeat(28));
    assert!(render(&[255; PIXELS], true).lines().skip(1).take(14).all(|l| l == full), "{}", render(&[255; PIXELS], true));

    // Plain shading: an all-ink image is all full blocks, a blank one all spaces, and a
    // top-ink / bottom-blank stripe is drawn as upper half blocks.
    assert!(render(&[255; PIXELS], false).lines().skip(1).take(14).all(|l| l == format!("│{}│", "█".repeat(28))));
    assert!(render(&[0; PIXELS], false).lines().skip(1).take(14).all(|l| l == format!("│{}│", " ".repeat(28))));
    let mut stripes = [0u8; PIXELS];
    for row in (0..28).step_by(2) {
        stripes[row * 28..(row + 1) * 28].fill(255);
    }
    assert!(render(&stripes, false).lines().skip(1).take(14).all(|l| l == format!("│{}│", "▀".repeat(28))));
}

#[test]
fn bar_chart_lengths_follow_the_probabilities() {
    let mut probs = vec![0.0; 10];
    probs[2] = 0.5;
    probs[9] = 0.5;
    let chart = bar_chart(&probs, 2, 9);
    let lines: Vec<&str> = chart.lines().collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[2].matches('█').count(), 15, "{chart}");
    assert!(lines[2].ends_with(" 50.0%  <- prediction"), "{chart}");
    assert!(lines[9].ends_with(" 50.0%  <- label"), "{chart}");
    assert!(lines[0].ends_with("  0.0%"), "{chart}");
    let full = bar_chart(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0, 0);
    assert_eq!(full.lines().next().unwrap().matches('█').count(), 30);
}
