//! Your own digit (src/digit/) against its reference in PIL, numpy and scipy
//! (scripts/reference/preprocess.py), on real-world-like images that
//! scripts/reference/make_digit_images.py makes at test time (scans and photos: dark on
//! light, grey paper under a gradient, noise, JPEG, off centre, small and large digits,
//! colour, alpha, chalk, specks, EXIF orientation, 16-bit, PGM/PPM, MNIST's own digits).
//!
//! Both sides decode the file themselves (image and PIL), so the comparison covers the whole
//! path from the file to the 28x28 input. Then PyTorch's probabilities on the Python input
//! (the fixture convnet in nn_convnet.py's model, the fixture MLP in nn_torch.py's) against
//! nnmnist's on its own input. Each check reports its largest difference and where.
use crate::common::{self, python, root};
use nnmnist::cmd::show::render;
use nnmnist::data::{COLS, PIXELS};
use nnmnist::digit;
use nnmnist::weights::Weights;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The largest difference allowed between the two 28x28 inputs, per pixel (u8 levels of
/// 255), for a lossless file (PNG, PGM, PPM) and for a JPEG. A lossless file decodes to the
/// same values on both sides, and the steps are the same arithmetic (f64; the 20x20
/// resampling in f32 on both sides), so the inputs are the same. A JPEG is decoded by two
/// different decoders (image's zune-jpeg, PIL's libjpeg-turbo), whose pixels differ by a level
/// here and there; the stretch from the paper's level to the ink's multiplies such a
/// difference by 1 / (the paper's contrast x the ink's level), under 2 for the photos made
/// here (paper about 0.7, ink about 0.8): 2 levels.
pub const PIXEL_TOLERANCE: u8 = 0;
pub const PIXEL_TOLERANCE_JPEG: u8 = 2;

/// The largest difference allowed between the two sides' probabilities (absolute). On the
/// same input the two networks agree to float32's rounding (the convnet: about 1e-7; the
/// MLP, in f64: about 1e-15): 1e-6. On a JPEG's inputs, a level's difference at a few pixels
/// moves a probability by up to about 2e-3 here (measured: 1.6e-3): 5e-3.
pub const PROBABILITY_TOLERANCE: f64 = 1e-6;
pub const PROBABILITY_TOLERANCE_JPEG: f64 = 5e-3;

/// The fixture weights: a convnet PyTorch trained (one epoch on 12,800 images) and nn.py's
/// MLP that nn_torch.py trained (tests/fixtures/pt/expected.json).
pub fn convnet_fixture() -> PathBuf {
    root().join("tests/fixtures/convnet/trained.safetensors")
}
pub fn mlp_fixture() -> PathBuf {
    root().join("tests/fixtures/pt/mlp_state_dict.pth")
}

/// The images make_digit_images.py writes into `dir`: (file, label, kind).
fn make_images(dir: &Path) -> Vec<(PathBuf, u8, String)> {
    let out = common::output_with_patience(
        common::command(python()).args(["-m", "scripts.reference.make_digit_images"]).arg(dir).args(["--data-dir", common::s(&common::repo_data())]).current_dir(root()),
    );
    assert!(out.status.success(), "make_digit_images.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (dir.join(m["file"].as_str().unwrap()), m["label"].as_u64().unwrap() as u8, m["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// preprocess.py's record of each image, in order, with the fixture models' probabilities.
fn reference(files: &[PathBuf]) -> Vec<Value> {
    let out = common::output_with_patience(
        common::command(python())
            .args(["-m", "scripts.reference.preprocess"])
            .current_dir(root())
            .args(files)
            .arg("--convnet")
            .arg(convnet_fixture())
            .arg("--mlp")
            .arg(mlp_fixture()),
    );
    assert!(out.status.success(), "preprocess.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), files.len(), "one record per image");
    records
}

/// Two drawings of `nnmnist show`, side by side.
fn side_by_side(a: &str, b: &str) -> String {
    a.lines().zip(b.lines()).map(|(x, y)| format!("{x}  {y}\n")).collect()
}

fn argmax(p: &[f64]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

/// The largest difference found in one class of files, and where.
#[derive(Default)]
struct Worst<T> {
    diff: T,
    image: String,
    detail: String,
    /// For the pixels: both inputs drawn side by side.
    drawn: String,
}

impl<T: PartialOrd + Copy + std::fmt::Display> Worst<T> {
    fn see(&mut self, diff: T, image: &str, detail: impl FnOnce() -> (String, String)) {
        if self.image.is_empty() || diff > self.diff {
            let (detail, drawn) = detail();
            *self = Worst { diff, image: image.to_string(), detail, drawn };
        }
    }

    fn check(&self, what: &str, tolerance: T) -> Result<String, String> {
        let line = format!("{what}: largest difference {} (tolerance {tolerance}) at {}: {}", self.diff, self.image, self.detail);
        if self.diff > tolerance {
            Err(format!("{line}\n{}", self.drawn))
        } else {
            Ok(line)
        }
    }
}

#[test]
fn rust_and_python_preprocessing_agree_on_real_world_like_images() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let images = make_images(tmp.path());
    let files: Vec<PathBuf> = images.iter().map(|(f, _, _)| f.clone()).collect();
    let records = reference(&files);
    let convnet = nnmnist::networks::load(&Weights::load(&convnet_fixture()).unwrap(), None, tch::Device::Cpu).unwrap();
    let mlp = nnmnist::networks::load(&Weights::load(&mlp_fixture()).unwrap(), None, tch::Device::Cpu).unwrap();

    // Index 0: lossless files, 1: JPEG.
    let mut pixels: [Worst<u8>; 2] = Default::default();
    let mut probs: [Worst<f64>; 2] = Default::default();
    let mut mismatches = Vec::new();
    let mut right = 0;
    let mut report = String::from("image                  kind                                  max|dpixel|  max|dp| convnet (digit)  max|dp| mlp\n");
    for ((file, label, kind), record) in images.iter().zip(&records) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let jpeg = usize::from(name.ends_with(".jpg"));
        assert_eq!(record["image"].as_str(), file.to_str());
        let ours = digit::read(file).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let Some(theirs) = record["pixels"].as_array() else { panic!("{name}: the reference found no digit: {}", record["error"]) };
        let theirs: Vec<u8> = theirs.iter().map(|v| v.as_u64().unwrap() as u8).collect();
        assert_eq!(theirs.len(), PIXELS);
        let (d_max, at) = (0..PIXELS).map(|i| (ours.pixels[i].abs_diff(theirs[i]), i)).fold((0, 0), |a, b| if b.0 > a.0 { b } else { a });
        pixels[jpeg].see(d_max, &name, || {
            let detail = format!("pixel (row {}, column {}): nnmnist {}, reference {}", at / COLS, at % COLS, ours.pixels[at], theirs[at]);
            let drawn = side_by_side(&render(&ours.pixels, false), &render(&theirs, false));
            (detail, format!("the inputs (nnmnist, reference):\n{drawn}"))
        });
        if (record["width"].as_u64(), record["height"].as_u64()) != (Some(ours.width as u64), Some(ours.height as u64)) {
            mismatches.push(format!("{name}: {}x{} here, {}x{} in the reference", ours.width, ours.height, record["width"], record["height"]));
        }
        if record["polarity"].as_str() != Some(ours.polarity.name()) {
            mismatches.push(format!("{name}: polarity {} here, {} in the reference", ours.polarity.name(), record["polarity"]));
        }
        let mut row = format!("{name:<22} {kind:<37} {d_max:>11}");
        for (model, classifier) in [("convnet", &convnet), ("mlp", &mlp)] {
            assert_eq!(classifier.kind().name(), model);
            let p_ours = classifier.probabilities(&ours.pixels).unwrap();
            let p_theirs: Vec<f64> = record[model].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let (d, at) = (0..10).map(|k| ((p_ours[k] - p_theirs[k]).abs(), k)).fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
            probs[jpeg].see(d, &name, || (format!("{model}, digit {at}: nnmnist {:.9}, PyTorch {:.9}", p_ours[at], p_theirs[at]), String::new()));
            let (a, b) = (argmax(&p_ours), argmax(&p_theirs));
            if a != b {
                mismatches.push(format!("{name}: {model} reads {a} from nnmnist's input, {b} from the reference's"));
            }
            row.push_str(&format!(" {d:>15.2e}"));
            if model == "convnet" {
                right += usize::from(a == *label as usize);
                row.push_str(&format!("  ({a})"));
            }
        }
        report.push_str(&format!("{row}  label {label}\n"));
    }
    println!("{report}");
    let n_jpeg = images.iter().filter(|(f, _, _)| f.extension().is_some_and(|e| e == "jpg")).count();
    println!("{} images ({} lossless, {n_jpeg} JPEG); the fixture convnet reads {right} of them right", images.len(), images.len() - n_jpeg);
    let checks = [
        pixels[0].check("28x28 inputs, lossless files (levels of 255)", PIXEL_TOLERANCE),
        pixels[1].check("28x28 inputs, JPEG (levels of 255)", PIXEL_TOLERANCE_JPEG),
        probs[0].check("probabilities, lossless files", PROBABILITY_TOLERANCE),
        probs[1].check("probabilities, JPEG", PROBABILITY_TOLERANCE_JPEG),
    ];
    let mut failed = mismatches;
    for c in checks {
        match c {
            Ok(line) => println!("{line}"),
            Err(e) => failed.push(e),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
