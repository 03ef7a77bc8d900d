//! `nnmnist predict IMAGE... --weights FILE...` end to end through the built binary: MNIST's
//! own test digits given as 28x28 PNGs read as `eval` reads them; bad images and bad usage,
//! each with its exact message; the JSON lines; `--show`; `--save-input` and the output rule.
use crate::common::{self, output_with_patience, real, root, s};
use crate::digit::{convnet_fixture, mlp_fixture};
use image::ImageEncoder;
use nnmnist::data::{COLS, PIXELS, ROWS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The first test images given as PNGs.
const N_IMAGES: usize = 1000;

/// `pixels` (28x28, u8) as an 8-bit grey PNG.
fn png(pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(pixels, COLS as u32, ROWS as u32, image::ExtendedColorType::L8).unwrap();
    bytes
}

/// Runs `nnmnist args...`: (exit code, stdout, stderr); never a panic.
fn nnmnist(args: &[&str]) -> (Option<i32>, String, String) {
    let out = output_with_patience(common::nnmnist().args(args).env_remove("RUST_BACKTRACE").env("NO_COLOR", "1"));
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "nnmnist {args:?}: {stderr}");
    (out.status.code(), stdout, stderr)
}

/// `nnmnist eval`'s prediction for each of the first `n` test images: the label, unless
/// `--errors` lists the image with another prediction.
fn eval_predictions(model: &str, weights: &Path, n: usize) -> Vec<u8> {
    let n_s = n.to_string();
    let (code, stdout, stderr) = nnmnist(&["eval", "--model", model, "--weights", s(weights), "--test-size", &n_s, "--errors", &n_s, "--data-dir", s(&common::repo_data())]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut predictions: Vec<u8> = real().test.labels[..n].to_vec();
    let table = stdout.split(" index  label  prediction  probability\n").nth(1).unwrap_or("");
    for line in table.lines().take_while(|l| !l.starts_with('(')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (index, label, prediction): (usize, u8, u8) = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(label, predictions[index], "{line}");
        predictions[index] = prediction;
    }
    predictions
}

#[test]
fn mnist_test_digits_as_png_read_as_eval_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let test = &real().test;
    let files: Vec<PathBuf> = (0..N_IMAGES)
        .map(|i| {
            let f = tmp.path().join(format!("{i}.png"));
            std::fs::write(&f, png(test.image(i))).unwrap();
            f
        })
        .collect();
    // What the preprocessing makes of MNIST's own digits: themselves, or nearly.
    let (mut identical, mut worst, mut worst_at, mut moved) = (0, 0u8, 0, 0);
    for (i, f) in files.iter().enumerate() {
        let input = nnmnist::digit::read(f).unwrap();
        let d = input.pixels.iter().zip(test.image(i)).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        identical += usize::from(d == 0);
        moved += usize::from(input.geometry.size != [input.geometry.bbox[2], input.geometry.bbox[3]] || [input.geometry.bbox[0], input.geometry.bbox[1]] != [input.geometry.shift[0] as usize, input.geometry.shift[1] as usize]);
        if d > worst {
            (worst, worst_at) = (d, i);
        }
    }
    println!(
        "the first {N_IMAGES} test images through the preprocessing: {identical} unchanged, {moved} scaled or moved, the largest pixel difference {worst} (image {worst_at})"
    );

    let mut args = vec!["predict".to_string(), "--format".into(), "json".into()];
    args.extend(["--weights".into(), s(&convnet_fixture()).into(), "--weights".into(), s(&mlp_fixture()).into()]);
    args.extend(files.iter().map(|f| s(f).to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = nnmnist(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let mut read: BTreeMap<(String, String), u8> = BTreeMap::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        read.insert((v["image"].as_str().unwrap().into(), v["model"].as_str().unwrap().into()), v["digit"].as_u64().unwrap() as u8);
    }
    assert_eq!(read.len(), 2 * N_IMAGES, "one line per image and network");
    for (model, weights) in [("convnet", convnet_fixture()), ("mlp", mlp_fixture())] {
        let eval = eval_predictions(model, &weights, N_IMAGES);
        let differ: Vec<String> = files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let p = read[&(s(f).to_string(), model.to_string())];
                (p != eval[i]).then(|| format!("image {i}: predict {p}, eval {}", eval[i]))
            })
            .collect();
        println!("{model}: predict agrees with eval on {} of {N_IMAGES} images", N_IMAGES - differ.len());
        assert!(differ.is_empty(), "{model}: predict and eval differ on {} images: {}", differ.len(), differ.join("; "));
    }
}

/// A PNG whose header says `width` x `height` (8-bit grey), holding the first row of pixels
/// only (a few bytes: the rest of the file is cut off).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    use std::io::Write;
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(&body);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(body);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&vec![0u8; width as usize + 1]).unwrap();
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(chunk(b"IHDR", &ihdr));
    bytes.extend(chunk(b"IDAT", &z.finish().unwrap()));
    bytes
}

/// A small JPEG whose frame header (SOF0) is made to say `width` x `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut bytes).write_image(&[128u8; 64], 8, 8, image::ExtendedColorType::L8).unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG has SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

#[test]
fn bad_images_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = png(real().test.image(0));
    // A digit in ink barely darker than the paper: 221 on 230, 4% of the paper's level.
    let faint: Vec<u8> = real().test.image(0).iter().map(|&p| if p > 128 { 221 } else { 230 }).collect();
    let good_jpeg = {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).write_image(real().test.image(0), COLS as u32, ROWS as u32, image::ExtendedColorType::L8).unwrap();
        bytes
    };
    let sos = good_jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a JPEG has a scan");
    let claims_jpeg = {
        let mut bytes = good_jpeg.clone();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG has SOF0");
        bytes[sof + 5..sof + 9].copy_from_slice(&[0x17, 0x70, 0x17, 0x70]);
        bytes
    };
    // Uniform noise from a seeded generator: nothing but noise, no blank page.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..PIXELS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("blank.png", png(&[255u8; PIXELS]), "no digit found in image {}: no pixel differs from the paper's level by more than 0.030 (0 black, 1 white): a blank image".into()),
        ("notes.png", b"my shopping list\n".to_vec(), "cannot read image {}: not a PNG, JPEG or PNM (PGM, PPM) image: its first bytes are none of their signatures".into()),
        ("empty.png", Vec::new(), "cannot read image {}: not a PNG, JPEG or PNM (PGM, PPM) image: its first bytes are none of their signatures".into()),
        ("cut.png", good[..good.len() / 2].to_vec(), "cannot read image {}: PNG data that cannot be decoded (…".into()),
        // A JPEG cut anywhere in its scan, or whose header claims more pixels than its data
        // holds, is refused: never read with the missing part filled in.
        ("cut.jpg", good_jpeg[..good_jpeg.len() / 2].to_vec(), "cannot read image {}: JPEG data that cannot be decoded (…".into()),
        ("scan-cut.jpg", good_jpeg[..sos + 14].to_vec(), "cannot read image {}: JPEG data that cannot be decoded (…".into()),
        ("claims.jpg", claims_jpeg.clone(), format!("cannot read image {{}}: JPEG data that ends early: 6000x6000 pixels need at least 70312 bytes (a bit for each 8x8 block), the file has {}", claims_jpeg.len())),
        ("claims.pgm", b"P5\n6000 6000\n255\n\0\0\0".to_vec(), "cannot read image {}: PNM data that ends early: 6000x6000 pixels need at least 36000000 bytes (a byte for each sample), the file has 20".into()),
        ("noise.png", png(&noise), "no digit found in image {}: its pixels scatter by …".into()),
        ("huge.png", png_claiming(20000, 20000), "cannot read image {}: 20000x20000 pixels, over the limit of 40000000 (40 megapixels): scale it down first".into()),
        ("faint.png", png(&faint), "no digit found in image {}: the ink stands only 0.039 from the paper, within its noise or fainter than 0.05: no digit to read".into()),
        ("huge.jpg", jpeg_claiming(20000, 20000), "cannot read image {}: 20000x20000 pixels, over the limit of 40000000 (40 megapixels): scale it down first".into()),
        ("huge.pgm", b"P5\n20000 20000\n255\n\0\0\0".to_vec(), "cannot read image {}: 20000x20000 pixels, over the limit of 40000000 (40 megapixels): scale it down first".into()),
        ("picture.gif", b"GIF89a\x01\0\x01\0\0\0\0".to_vec(), "cannot read image {}: a GIF image; nnmnist reads PNG, JPEG and PNM (PGM, PPM)".into()),
    ];
    let weights = convnet_fixture();
    for (name, bytes, message) in &cases {
        let f = tmp.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let (code, stdout, stderr) = nnmnist(&["predict", s(&f), "--weights", s(&weights)]);
        eprintln!("[{code:?}] {name}: {}", stderr.trim_end());
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        if let Some(start) = message.strip_suffix('…') {
            // The decoder's own words, or a figure of the image's, after ours.
            assert!(stderr.starts_with(&format!("error: {}", start.replace("{}", s(&f)))), "{name}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        } else {
            assert_eq!(stderr, format!("error: {}\n", message.replace("{}", s(&f))), "{name}");
        }
        // In-process too (the API serve uses), with the source named as given.
        let e = nnmnist::digit::decode(bytes, "the upload").unwrap_err();
        assert!(format!("{e:#}").contains("the upload: "), "{e:#}");
    }
    // A directory, a missing file, a FIFO (never waited on): the file rule's messages.
    let fifo = tmp.path().join("fifo.png");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, _, stderr) = nnmnist(&["predict", s(&fifo), "--weights", s(&weights)]);
    assert_eq!((code, stderr), (Some(1), format!("error: cannot read image {}: it is a FIFO, not a regular file\n", fifo.display())));
    let (code, _, stderr) = nnmnist(&["predict", s(tmp.path()), "--weights", s(&weights)]);
    assert_eq!((code, stderr), (Some(1), format!("error: cannot read image {}: it is a directory, not a regular file\n", tmp.path().display())));
    let missing = tmp.path().join("missing.png");
    let (code, _, stderr) = nnmnist(&["predict", s(&missing), "--weights", s(&weights)]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with(&format!("error: cannot read image {}: No such file or directory", missing.display())), "{stderr}");

    // Among good ones: each bad image named, the others read, exit status 1.
    let seven = tmp.path().join("seven.png");
    std::fs::write(&seven, &good).unwrap();
    let notes = tmp.path().join("notes.png");
    let (code, stdout, stderr) = nnmnist(&["predict", s(&seven), s(&notes), s(&seven), "--weights", s(&weights), "--format", "json"]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(
        stderr,
        format!("error: cannot read image {}: not a PNG, JPEG or PNM (PGM, PPM) image: its first bytes are none of their signatures\nerror: 1 of 3 images could not be read (see above)\n", notes.display())
    );
}

/// Names print so that two files never look alike: a backslash and a byte that is not UTF-8
/// escaped in the table; a JSON line, which holds text, refuses a name that is not UTF-8
/// rather than print another name.
#[test]
fn names_print_as_no_other_name() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let seven = png(real().test.image(0));
    let slash = tmp.path().join("new\\nline.png");
    let newline = tmp.path().join("new\nline.png");
    let bytes = tmp.path().join(std::ffi::OsStr::from_bytes(b"bad\xff.png"));
    let replaced = tmp.path().join("bad\u{fffd}.png");
    for f in [&slash, &newline, &bytes, &replaced] {
        std::fs::write(f, &seven).unwrap();
    }
    let weights = convnet_fixture();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = output_with_patience(common::nnmnist().arg("predict").args(args).arg("--weights").arg(&weights).env("NO_COLOR", "1"));
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, stdout, stderr) = run(&[slash.as_os_str(), newline.as_os_str(), bytes.as_os_str(), replaced.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    let dir = tmp.path().display();
    for shown in ["new\\\\nline.png:", "new\\nline.png:", "bad\\xff.png:", "bad\u{fffd}.png:"] {
        assert_eq!(stdout.lines().filter(|l| l.starts_with(&format!("{dir}/{shown}"))).count(), 1, "{shown} once in:\n{stdout}");
    }
    let (code, stdout, stderr) = run(&[replaced.as_os_str(), bytes.as_os_str(), "--format".as_ref(), "json".as_ref()]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    assert_eq!(stderr, format!("error: --format json: the name {dir}/bad\\xff.png is not UTF-8, so a JSON line cannot hold it exactly; rename the file, or leave out --format json\n"));
}

#[test]
fn bad_weights_and_usage_are_refused_before_any_image() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("seven.png");
    std::fs::write(&image, png(real().test.image(0))).unwrap();
    let (code, _, stderr) = nnmnist(&["predict", s(&image)]);
    assert_eq!(
        (code, stderr.as_str()),
        (Some(1), "error: give the networks to read the images with: --weights FILE (repeatable); or --show / --save-input DIR to see the 28x28 inputs alone\n")
    );
    let (code, _, stderr) = nnmnist(&["predict", s(&image), "--weights", s(&convnet_fixture()), "--show", "--format", "json"]);
    assert_eq!(
        (code, stderr.as_str()),
        (Some(1), "error: --show draws for people and --format json writes for scripts: choose one (--save-input DIR writes the inputs as PNG)\n")
    );
    // Weights that are no network: the classifier's message, and no image read.
    let not_weights = root().join("tests/fixtures/mlp/quadratic.safetensors");
    let (code, stdout, stderr) = nnmnist(&["predict", s(&image), "--weights", s(&not_weights)]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.starts_with(&format!("error: {}: neither convnet weights (model.0.weight, ...) nor MLP weights (0.weight, ...)", not_weights.display())), "{stderr}");
}

#[test]
fn json_lines_have_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = (0..3)
        .map(|i| {
            let f = tmp.path().join(format!("digit {i}.png"));
            std::fs::write(&f, png(real().test.image(i))).unwrap();
            f
        })
        .collect();
    let pt = root().join("tests/fixtures/pt/convnet_state_dict.pt");
    let (code, stdout, stderr) =
        nnmnist(&["predict", s(&images[0]), s(&images[1]), s(&images[2]), "--weights", s(&convnet_fixture()), "--weights", s(&mlp_fixture()), "--weights", s(&pt), "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9, "three images x three networks");
    assert!(stdout.lines().all(|l| l.starts_with("{\"image\":") && l.contains(",\"model\":") && l.ends_with("]}")), "the documented key order: {stdout}");
    for (k, v) in lines.iter().enumerate() {
        let (image, net) = (&images[k / 3], k % 3);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec!["image", "model", "weights", "digit", "probabilities"];
        want.sort();
        assert_eq!(keys, want, "{v}");
        assert_eq!(v["image"], s(image));
        assert_eq!(v["model"], ["convnet", "mlp", "convnet"][net]);
        assert_eq!(v["weights"], s(&[convnet_fixture(), mlp_fixture(), pt.clone()][net]));
        let p: Vec<f64> = v["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(p.len(), 10);
        assert!(p.iter().all(|x| (0.0..=1.0).contains(x)) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
        let argmax = (0..10).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        assert_eq!(v["digit"].as_u64(), Some(argmax as u64));
    }
    // The same weights in safetensors and in torch.save's .pt: the same probabilities.
    for k in 0..3 {
        assert_eq!(lines[3 * k]["probabilities"], lines[3 * k + 2]["probabilities"]);
    }
    // The text table holds the same digits.
    let (code, text, _) = nnmnist(&["predict", s(&images[0]), "--weights", s(&convnet_fixture()), "--weights", s(&mlp_fixture())]);
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert_eq!(rows[0], format!("{}: light on dark, 28x28", images[0].display()));
    assert!(rows[1].starts_with("  network  weights") && rows[1].ends_with("      9"), "{text}");
    for (row, v) in rows[2..].iter().zip([&lines[0], &lines[1]]) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], v["model"]);
        assert_eq!(cells[2], v["digit"].to_string(), "{row}");
        assert_eq!(cells.len(), 13, "{row}");
    }
}

#[test]
fn show_draws_the_input_and_a_bar_chart_per_network() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("seven.png");
    std::fs::write(&image, png(real().test.image(0))).unwrap();
    let (code, out, stderr) = nnmnist(&["predict", s(&image), "--weights", s(&convnet_fixture()), "--weights", s(&mlp_fixture()), "--show"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("┌{}┐", "─".repeat(28)));
    assert_eq!(lines[15], format!("└{}┘", "─".repeat(28)));
    assert!(!out.contains('\x1b'), "NO_COLOR: no escape codes");
    assert_eq!(lines[16], format!("{}: light on dark, 28x28", image.display()));
    assert!(lines[17].starts_with("Prediction: 7 (") && lines[17].contains("softmax of the logits"), "{out}");
    assert!(lines[28].starts_with("Prediction: ") && lines[28].contains("the sigmoid outputs divided by their sum"), "{out}");
    assert_eq!(lines.len(), 39, "{out}");
    assert_eq!(out.matches("<- prediction").count(), 2, "{out}");
    // Without weights, the input alone.
    let (code, out, _) = nnmnist(&["predict", s(&image), "--show"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 17, "{out}");
}

#[test]
fn save_input_writes_each_input_as_a_png_never_over_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    // A scan (dark on light, larger): its input is what the networks read.
    let mut scan = vec![255u8; 4 * PIXELS];
    for (i, p) in real().test.image(1).iter().enumerate() {
        let (y, x) = (i / COLS, i % COLS);
        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            scan[(2 * y + dy) * 2 * COLS + 2 * x + dx] = 255 - p;
        }
    }
    let mut scan_png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut scan_png).write_image(&scan, 56, 56, image::ExtendedColorType::L8).unwrap();
    let a = src.join("two.png");
    std::fs::write(&a, &scan_png).unwrap();
    let (code, _, stderr) = nnmnist(&["predict", s(&a), "--save-input", s(&out)]);
    assert_eq!(code, Some(0), "{stderr}");
    let saved = out.join("two.28x28.png");
    let img = image::open(&saved).unwrap();
    assert_eq!((img.width(), img.height(), img.color()), (28, 28, image::ColorType::L8));
    assert_eq!(img.as_bytes(), &nnmnist::digit::read(&a).unwrap().pixels[..]);
    // An existing file is replaced as cp would; a link is followed, and stays.
    let target = tmp.path().join("kept.png");
    std::fs::write(&target, b"old").unwrap();
    std::fs::remove_file(&saved).unwrap();
    std::os::unix::fs::symlink(&target, &saved).unwrap();
    let (code, _, stderr) = nnmnist(&["predict", s(&a), "--save-input", s(&out)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::symlink_metadata(&saved).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(&saved).unwrap());
    assert_eq!(image::open(&target).unwrap().as_bytes(), img.as_bytes());

    // Never over an input: an image named like another's saved input is refused, before
    // anything is written.
    let b = src.join("two.28x28.png");
    std::fs::write(&b, png(real().test.image(2))).unwrap();
    let before = std::fs::read(&b).unwrap();
    let (code, stdout, stderr) = nnmnist(&["predict", s(&a), s(&b), "--save-input", s(&src)]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr, format!("error: --save-input {} is the image {} that predict reads: writing there would destroy it\n", b.display(), b.display()));
    assert_eq!(std::fs::read(&b).unwrap(), before);
    assert!(!src.join("two.28x28.28x28.png").exists());
    // Two images of one name: their inputs would be one file.
    let c = out.join("two.png");
    std::fs::write(&c, &scan_png).unwrap();
    let (code, _, stderr) = nnmnist(&["predict", s(&a), s(&c), "--save-input", s(&tmp.path().join("src"))]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("are the same file: one output would destroy the other"), "{stderr}");
    // A directory that is not there.
    let (code, _, stderr) = nnmnist(&["predict", s(&a), "--save-input", s(&tmp.path().join("nowhere"))]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not exist"), "{stderr}");
}
