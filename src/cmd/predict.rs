//! `nnmnist predict IMAGE... --weights FILE...`: your own digit, read by the networks. Each
//! image (PNG, JPEG, PGM/PPM, any size, grey or colour) goes through MNIST's own
//! preprocessing ([`crate::digit`]) to a 28x28 input, which every network given reads: the
//! digit and the ten probabilities (the convnet: the softmax of its logits; an MLP: its
//! sigmoid outputs divided by their sum, as `nnmnist show` gives them; the digit is the
//! argmax either way, as `eval` takes it).
//!
//! Output: a table per image (`--format text`), or one JSON object per line for each image
//! and network (`--format json`); `--show` draws each input as `nnmnist show` does, with a
//! bar chart per network; `--save-input DIR` writes each input as a PNG, `DIR/NAME.28x28.png`.
//! A bad image is reported (naming it) and the others are still read; the exit status is 1
//! when any image could not be read.
use crate::classifier::Classifier;
use crate::cmd::show::{bar_chart, render, use_color};
use crate::data::{CLASSES, COLS, ROWS};
use crate::device;
use crate::digit::{self, Input};
use crate::evaluation::argmax;
use crate::files::SaveTarget;
use crate::networks;
use crate::outputs::Plan;
use crate::terminal::{print, Shown};
use crate::weights::Weights;
use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How the readings are written on stdout.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictFormat {
    /// A table per image, for people
    Text,
    /// One JSON object per line for each image and network, for scripts
    Json,
}

/// A resolved `nnmnist predict` command.
#[derive(Clone, Debug)]
pub struct PredictSpec {
    pub images: Vec<PathBuf>,
    pub weights: Vec<PathBuf>,
    pub format: PredictFormat,
    pub show: bool,
    pub save_input: Option<PathBuf>,
}

/// One network given by `--weights`.
struct Network {
    weights: PathBuf,
    classifier: Box<dyn Classifier>,
}

impl Network {
    fn model(&self) -> &'static str {
        self.classifier.kind().name()
    }
}

/// A network's reading of one image: the digit and the ten probabilities.
type Verdict = (usize, [f64; CLASSES]);

/// One line of `--format json`.
#[derive(Serialize)]
struct Reading<'a> {
    image: String,
    model: &'a str,
    weights: String,
    digit: usize,
    probabilities: &'a [f64],
}

/// The `nnmnist predict` command.
pub fn run(spec: &PredictSpec) -> Result<()> {
    // The weights first: a bad file is reported before any image is read. Each network is
    // told from its tensor names and runs on the CPU, with one libtorch thread: one image at
    // a time, a second thread would only wait (and spin) for the first.
    if spec.format == PredictFormat::Json {
        // A JSON string holds text: a name that is not UTF-8 would print as another name.
        if let Some(name) = spec.weights.iter().chain(&spec.images).find(|p| p.to_str().is_none()) {
            bail!("--format json: the name {} is not UTF-8, so a JSON line cannot hold it exactly; rename the file, or leave out --format json", name.shown());
        }
    }
    let cpu = device::Flags { device: Some("cpu".into()), threads: Some(1) };
    let mut nets = Vec::new();
    for path in &spec.weights {
        let weights = Weights::load(path)?;
        let model = networks::tell(&weights, None)?;
        let classifier = model.load(&weights, model.place(&cpu)?)?;
        nets.push(Network { weights: path.clone(), classifier });
    }
    let networks = nets;
    let outputs = plan_outputs(spec)?;
    let color = use_color();
    let mut failed = Vec::new();
    for (i, image) in spec.images.iter().enumerate() {
        let input = match digit::read(image) {
            Ok(input) => input,
            Err(e) => {
                if spec.images.len() == 1 {
                    return Err(e);
                }
                crate::terminal::error(format_args!("{e:#}"));
                failed.push(image);
                continue;
            }
        };
        let mut readings = Vec::new();
        for net in &networks {
            let probs = net.classifier.probabilities(&input.pixels).with_context(|| format!("reading image {} with {}", image.shown(), net.weights.shown()))?;
            readings.push((argmax(&probs), probs));
        }
        let text = match spec.format {
            PredictFormat::Json => json_lines(image, &networks, &readings)?,
            PredictFormat::Text if spec.show => drawing(image, &input, &networks, &readings, color),
            PredictFormat::Text => table(image, &input, &networks, &readings),
        };
        print(text)?;
        if let Some(out) = outputs.get(i) {
            SaveTarget::open(out)?.write(&png(&input)?)?;
        }
    }
    match failed.len() {
        0 => Ok(()),
        n => Err(anyhow!("{n} of {} images could not be read (see above)", spec.images.len())),
    }
}

/// The files `--save-input` writes, one per image, each checked against the output rule
/// before any image is read (none is an input, no two are the same file); the locks are
/// taken again as each is written.
fn plan_outputs(spec: &PredictSpec) -> Result<Vec<PathBuf>> {
    let Some(dir) = &spec.save_input else { return Ok(Vec::new()) };
    let mut plan = Plan::new("predict");
    for w in &spec.weights {
        plan.reads("the weights file --weights reads", w);
    }
    for image in &spec.images {
        plan.reads(format!("the image {} that predict reads", image.shown()), image);
    }
    let mut outputs = Vec::new();
    for image in &spec.images {
        let out = dir.join(input_name(image));
        drop(plan.replace("--save-input", &out)?);
        outputs.push(out);
    }
    Ok(outputs)
}

/// The name of an image's saved input: its file stem and `.28x28.png`.
pub fn input_name(image: &Path) -> PathBuf {
    let mut name = image.file_stem().unwrap_or(image.as_os_str()).to_os_string();
    name.push(".28x28.png");
    PathBuf::from(name)
}

/// The input as an 8-bit grey PNG, 28x28, as MNIST stores it (white ink on black).
fn png(input: &Input) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(&input.pixels, COLS as u32, ROWS as u32, image::ExtendedColorType::L8).context("encoding the input as PNG")?;
    Ok(bytes)
}

/// One JSON object per line for each network.
fn json_lines(image: &Path, networks: &[Network], readings: &[Verdict]) -> Result<String> {
    let mut out = String::new();
    for (net, (digit, probs)) in networks.iter().zip(readings) {
        let r = Reading { image: image.to_string_lossy().into_owned(), model: net.model(), weights: net.weights.to_string_lossy().into_owned(), digit: *digit, probabilities: probs };
        out.push_str(&serde_json::to_string(&r)?);
        out.push('\n');
    }
    Ok(out)
}

/// What the preprocessing found, in a few words: "dark on light, 1200x900, reduced 3x, 2 specks erased".
fn found(input: &Input) -> String {
    let mut s = format!("{}, {}x{}", input.polarity.name().replace('-', " "), input.width, input.height);
    if input.reduce > 1 {
        s.push_str(&format!(", reduced {}x", input.reduce));
    }
    match input.specks {
        0 => {}
        1 => s.push_str(", 1 speck erased"),
        n => s.push_str(&format!(", {n} specks erased")),
    }
    s
}

/// The image's line, then a row per network: its weights, the digit, the ten probabilities
/// as percentages.
fn table(image: &Path, input: &Input, networks: &[Network], readings: &[Verdict]) -> String {
    let mut out = format!("{}: {}\n", image.shown(), found(input));
    if networks.is_empty() {
        return out;
    }
    let width = networks.iter().map(|n| n.weights.shown().to_string().chars().count()).max().unwrap_or(0).max("weights".len());
    out.push_str(&format!("  network  {:<width$}  digit", "weights"));
    for d in 0..CLASSES {
        out.push_str(&format!("  {d:>6}"));
    }
    out.push('\n');
    for (net, (digit, probs)) in networks.iter().zip(readings) {
        out.push_str(&format!("  {:<7}  {:<width$}  {digit:>5}", net.model(), net.weights.shown().to_string()));
        for p in probs {
            out.push_str(&format!("  {:>5.1}%", 100.0 * p));
        }
        out.push('\n');
    }
    out
}

/// `--show`: the input drawn as `nnmnist show` draws a test image, what the preprocessing
/// found, and a bar chart per network.
fn drawing(image: &Path, input: &Input, networks: &[Network], readings: &[Verdict], color: bool) -> String {
    let mut out = render(&input.pixels, color);
    out.push_str(&format!("{}: {}\n", image.shown(), found(input)));
    for (net, (digit, probs)) in networks.iter().zip(readings) {
        out.push_str(&format!("Prediction: {digit} ({}; {})\n", net.weights.shown(), net.classifier.describe()));
        // No label to mark: CLASSES is no digit.
        out.push_str(&bar_chart(probs, *digit, CLASSES));
    }
    out
}
