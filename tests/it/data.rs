//! MNIST's IDX files: the loader (src/data.rs) on valid and broken inputs, and every command
//! on them through the binary. Every broken case checks that the error names the file and
//! says what is wrong with it; a property test shows the parsers never panic, whatever the
//! bytes; crafted files cost bounded work.
use crate::common;
use crate::common::*;
use nnmnist::data::{self, Mnist, IMAGE_MAGIC, LABEL_MAGIC, PIXELS};
use proptest::prelude::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use tempfile::TempDir;


/// A data directory holding the first `n` training and test images of the real data, as
/// raw IDX files (or gzipped with `gzip`).
fn small_dir(n: usize, gzip: bool) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = real();
    let (train, test) = (m.train.take(n), m.test.take(n));
    let files = [
        (TRAIN_IMAGES, images_idx(&train.images)),
        (TRAIN_LABELS, labels_idx(&train.labels)),
        (TEST_IMAGES, images_idx(&test.images)),
        (TEST_LABELS, labels_idx(&test.labels)),
    ];
    for (name, bytes) in files {
        if gzip {
            std::fs::write(dir.path().join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
    }
    dir
}

/// Loading `dir` fails with an error (all causes joined) containing every one of `phrases`.
fn assert_load_fails(dir: &Path, phrases: &[&str]) -> String {
    let err = match Mnist::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error mentioning {phrases:?}", dir.display()),
        Err(e) => format!("{e:#}"),
    };
    for p in phrases {
        assert!(err.contains(p), "error {err:?} does not mention {p:?}");
    }
    err
}

#[test]
fn committed_data_loads_with_known_labels() {
    let m = real();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!(m.train.images.len(), 60_000 * PIXELS);
    assert_eq!(m.test.images.len(), 10_000 * PIXELS);
    assert_eq!(&m.train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&m.test.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert!(m.train.labels.iter().chain(&m.test.labels).all(|&l| l < 10));
    // Every digit occurs, and images are not blank.
    for d in 0..10u8 {
        assert!(m.test.labels.contains(&d));
    }
    assert!(m.train.image(0).iter().any(|&p| p > 200));
    assert_eq!(
        m.loaded_lines(),
        "Loaded 60000 images of shape (28, 28) and 60000 labels.\n\
         Loaded 10000 test images of shape (28, 28) and 10000 labels."
    );
}

#[test]
fn raw_and_gz_load_the_same() {
    let raw = small_dir(100, false);
    let gzd = small_dir(100, true);
    let a = Mnist::load(raw.path()).unwrap();
    let b = Mnist::load(gzd.path()).unwrap();
    assert_eq!(a.train.len(), 100);
    assert_eq!(a.test.len(), 100);
    assert_eq!(a.train.images, b.train.images);
    assert_eq!(a.train.labels, b.train.labels);
    assert_eq!(a.test.images, b.test.images);
    assert_eq!(a.test.labels, b.test.labels);
    assert_eq!(a.train.images, real().train.take(100).images);
    assert_eq!(a.test.labels, real().test.take(100).labels);
    // read_images / read_labels directly, raw and gz.
    let ri = data::read_images(&raw.path().join(TRAIN_IMAGES)).unwrap();
    let gi = data::read_images(&gzd.path().join(format!("{TRAIN_IMAGES}.gz"))).unwrap();
    assert_eq!(ri, gi);
    let rl = data::read_labels(&raw.path().join(TEST_LABELS)).unwrap();
    let gl = data::read_labels(&gzd.path().join(format!("{TEST_LABELS}.gz"))).unwrap();
    assert_eq!(rl, gl);
}

/// Two copies of one file (raw and `.gz`, or under the dashed and the dotted name): the
/// same bytes load; different ones are refused naming both, never one of them guessed; a
/// copy that is a FIFO is refused without waiting on it; an output onto either copy is
/// refused.
#[test]
fn two_copies_of_one_file_load_only_when_they_agree() {
    let dir = small_dir(100, false);
    let labels = dir.path().join(TEST_LABELS);
    let packed = dir.path().join(format!("{TEST_LABELS}.gz"));
    let same = std::fs::read(&labels).unwrap();
    std::fs::write(&packed, gz(&same)).unwrap();
    assert_eq!(Mnist::load(dir.path()).unwrap().test.labels, real().test.take(100).labels, "identical copies load");
    let mut other = real().test.take(100).labels;
    other[99] = (other[99] + 1) % 10;
    std::fs::write(&packed, gz(&labels_idx(&other))).unwrap();
    assert_load_fails(dir.path(), &[s(&labels), s(&packed), "two copies of one MNIST file with different contents", "will not guess"]);
    // A copy that holds more (the same bytes, then one more) differs too.
    let mut longer = same.clone();
    longer.push(0);
    std::fs::write(&packed, gz(&longer)).unwrap();
    assert_load_fails(dir.path(), &[s(&labels), s(&packed), "different contents"]);
    // Under the other name, raw.
    std::fs::remove_file(&packed).unwrap();
    let dotted = dir.path().join(TEST_LABELS.replace("-idx", ".idx"));
    std::fs::write(&dotted, labels_idx(&other)).unwrap();
    assert_load_fails(dir.path(), &[s(&labels), s(&dotted), "different contents"]);
    std::fs::remove_file(&dotted).unwrap();
    // A FIFO as the second copy: refused at once, by name.
    let c = std::ffi::CString::new(s(&packed)).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_load_fails(dir.path(), &[s(&packed), "it is a FIFO, not a regular file"]);
    std::fs::remove_file(&packed).unwrap();
    // Identical copies: an output onto the one that is not read is refused all the same.
    std::fs::write(&packed, gz(&same)).unwrap();
    let out = output_with_patience(crate::common::nnmnist().args(["mlp", "--train-size", "100", "--metrics", s(&packed), "--data-dir", s(dir.path())]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("--metrics {} is the MNIST file {}", s(&packed), s(&packed))), "{stderr}");
    assert_eq!(std::fs::read(&packed).unwrap(), gz(&same), "the copy is untouched");
}

#[test]
fn dotted_file_names_are_accepted() {
    let dir = small_dir(20, false);
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let dotted = name.replace("-idx", ".idx");
        std::fs::rename(dir.path().join(name), dir.path().join(dotted)).unwrap();
    }
    let m = Mnist::load(dir.path()).unwrap();
    assert_eq!(m.train.len(), 20);
}

#[test]
fn missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no-such-dir");
    assert_load_fails(&dir, &[s(&dir), "does not exist"]);
}

#[test]
fn missing_file() {
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let dir = small_dir(10, false);
        std::fs::remove_file(dir.path().join(name)).unwrap();
        assert_load_fails(dir.path(), &[name, "missing"]);
    }
}

/// Every broken file of the shared table: the loader's error names the file and says what
/// is wrong with it.
#[test]
fn every_broken_file_is_named_with_what_is_wrong() {
    for case in broken_data_cases() {
        let (dir, path) = case.dir();
        match Mnist::load(dir.path()) {
            Ok(_) => panic!("{}: {} loaded", case.case, path.display()),
            Err(e) => case.check(dir.path(), &path, &format!("{e:#}")),
        }
    }
}

#[test]
fn huge_dimensions_are_an_error_not_an_allocation() {
    assert!(format!("{:#}", data::parse_images(&idx(IMAGE_MAGIC, &[u32::MAX, 28, 28], &[])).unwrap_err()).contains("truncated"));
    let err = format!("{:#}", data::parse_images(&idx(IMAGE_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap_err());
    assert!(err.contains("expected 28x28"), "{err}");
    let err = format!("{:#}", data::parse_labels(&idx(LABEL_MAGIC, &[u32::MAX], &[0; 3])).unwrap_err());
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn parsers_accept_exact_files() {
    assert_eq!(data::parse_labels(&labels_idx(&[0, 9, 3])).unwrap(), vec![0, 9, 3]);
    assert_eq!(data::parse_labels(&labels_idx(&[])).unwrap(), Vec::<u8>::new());
    let px: Vec<u8> = (0..2 * PIXELS).map(|i| i as u8).collect();
    assert_eq!(data::parse_images(&images_idx(&px)).unwrap(), px);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = data::parse_images(&bytes);
        let _ = data::parse_labels(&bytes);
    }

    #[test]
    fn parsers_never_panic_after_a_valid_magic(
        dims in proptest::collection::vec(prop_oneof![0u32..40, any::<u32>()], 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        for magic in [IMAGE_MAGIC, LABEL_MAGIC] {
            let bytes = idx(magic, &dims, &body);
            let images = data::parse_images(&bytes);
            let labels = data::parse_labels(&bytes);
            // Whatever they accept is consistent with the header.
            if let Ok(px) = images {
                prop_assert_eq!(magic, IMAGE_MAGIC);
                prop_assert_eq!(px.len() % PIXELS, 0);
                prop_assert_eq!(px.len(), bytes.len() - 16);
            }
            if let Ok(l) = labels {
                prop_assert_eq!(magic, LABEL_MAGIC);
                prop_assert!(l.iter().all(|&x| x < 10));
                prop_assert_eq!(l.len(), bytes.len() - 8);
            }
        }
    }

    #[test]
    fn image_parser_never_panics_near_valid_files(count in 0u32..4, extra in -20i64..20, fill in any::<u8>()) {
        // A 28x28 header with a body just short of, exactly, or just past what it promises.
        let len = (count as i64 * PIXELS as i64 + extra).max(0) as usize;
        let bytes = idx(IMAGE_MAGIC, &[count, 28, 28], &vec![fill; len]);
        let result = data::parse_images(&bytes);
        prop_assert_eq!(result.is_ok(), len == count as usize * PIXELS);
    }

    #[test]
    fn labels_round_trip(labels in proptest::collection::vec(0u8..10, 0..500)) {
        prop_assert_eq!(data::parse_labels(&labels_idx(&labels)).unwrap(), labels);
    }
}

// ---------------------------------------------------------------- through the binary

#[test]
fn small_data_dir_trains() {
    // The baseline the broken directories differ from: it works.
    let dir = small_data(100);
    let out = common::nnmnist()
        .args(["convnet", "--device", "cpu", "--epochs", "1", "--batch-size", "10", "--data-dir", s(dir.path())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Done!"));
}

#[test]
fn missing_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nowhere");
    refused(&["convnet", "--device", "cpu", "--data-dir", s(&dir)], &[s(&dir), "data directory", "does not exist"]);
    refused(&["show", "0", "--data-dir", s(&dir)], &[s(&dir), "does not exist"]);
    refused(&["eval", "--model", "convnet", "--weights", s(&convnet_weights_file(tmp.path())), "--device", "cpu", "--data-dir", s(&dir)], &[
        s(&dir),
        "does not exist",
    ]);
}

#[test]
fn missing_data_file() {
    for name in [TRAIN_IMAGES, TEST_LABELS] {
        let dir = small_data(100);
        std::fs::remove_file(dir.path().join(name)).unwrap();
        refused(&["convnet", "--device", "cpu", "--data-dir", s(dir.path())], &[s(dir.path()), name, "missing MNIST file"]);
    }
}

#[test]
fn a_data_directory_that_is_a_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    refused(&["show", "0", "--data-dir", s(&file)], &[s(&file), "is a regular file, not a directory"]);
}

/// Every broken file of the shared table (tests/common): `nnmnist convnet` fails before
/// training, naming the file and what is wrong with it.
#[test]
fn every_broken_data_file_is_named() {
    for case in broken_data_cases() {
        let (dir, path) = case.dir();
        let stderr = refused(&["convnet", "--device", "cpu", "--epochs", "1", "--data-dir", s(dir.path())], &[]);
        case.check(dir.path(), &path, &stderr);
    }
}

#[test]
fn every_command_reports_bad_data() {
    let mut labels = real().test.take(100).labels;
    labels[3] = 200;
    let (dir, file) = broken_data(TEST_LABELS, TEST_LABELS, &labels_idx(&labels));
    let tmp = tempfile::tempdir().unwrap();
    let weights = convnet_weights_file(tmp.path());
    let phrases = [s(&file), "label 200 at index 3 is out of range"];
    refused(&["show", "0", "--data-dir", s(dir.path())], &phrases);
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&weights), "--data-dir", s(dir.path())], &phrases);
}

#[test]
fn the_mlp_reports_bad_data() {
    let (dir, file) = broken_data(TRAIN_LABELS, TRAIN_LABELS, &[]);
    refused(&["mlp", "--epochs", "1", "--data-dir", s(dir.path())], &[s(&file), "empty file"]);
}

#[test]
fn empty_data_sets_are_refused() {
    let empty_test = data_dir_of(&real().train.take(700), &real().test.take(0));
    for model in ["mlp", "convnet"] {
        refused(&[model, "--train-size", "640", "--data-dir", s(empty_test.path())], &["the test set in", "has no images: nothing to evaluate on"]);
    }
    let empty_train = data_dir_of(&real().train.take(0), &real().test.take(10));
    refused(&["convnet", "--data-dir", s(empty_train.path())], &["the training set in", "has no images"]);
}

#[test]
fn a_fifo_as_a_data_file_is_refused_instead_of_waited_on() {
    let data = small_data(100);
    let labels = data.path().join(TEST_LABELS);
    std::fs::remove_file(&labels).unwrap();
    mkfifo(&labels);
    refused(&["show", "0", "--data-dir", s(data.path())], &[s(&labels), "it is a FIFO, not a regular file"]);
}

/// A .gz of 1.3 MB that inflates to 1 GiB behind a header promising 100 labels: refused
/// after reading what the header promises and counting at most 64 MiB more, in bounded
/// memory (inflated whole, it would take over 1 GiB).
#[test]
fn a_gzip_bomb_is_refused_in_bounded_memory() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let data = small_data(100);
    let path = data.path().join(format!("{TEST_LABELS}.gz"));
    std::fs::remove_file(data.path().join(TEST_LABELS)).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&labels_idx(&real().test.take(100).labels)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let started = Instant::now();
    let child = common::nnmnist().args(["show", "0", "--data-dir", s(data.path())]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    // SAFETY: getrusage fills the struct it is given.
    let peak_kib = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    };
    let stderr = stderr_of(&out);
    eprintln!("gzip bomb: {took:?}, peak RSS of the largest child so far {} MiB: {stderr}", peak_kib / 1024);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(s(&path)) && stderr.contains("more than 67108864 unexpected bytes after the 100 data bytes"), "{stderr}");
    assert!(peak_kib < 900 * 1024, "peak RSS {} MiB: the stream was inflated whole", peak_kib / 1024);
}

#[test]
fn gzip_with_several_members_reads_as_zcat_does_and_counts_are_compared_first() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let data = small_data(100);
    let bytes = labels_idx(&real().test.take(100).labels);
    let member = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut two = member(&bytes[..50]);
    two.extend(member(&bytes[50..]));
    std::fs::remove_file(data.path().join(TEST_LABELS)).unwrap();
    std::fs::write(data.path().join(format!("{TEST_LABELS}.gz")), two).unwrap();
    let out = run(&["show", "3", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // An image file whose header promises 5,000,000 images beside 100 labels: refused by the
    // count, before a byte of the images is read.
    let images = data.path().join(TEST_IMAGES);
    std::fs::write(&images, common::idx(nnmnist::data::IMAGE_MAGIC, &[5_000_000, 28, 28], &[0; 784])).unwrap();
    refused(&["show", "0", "--data-dir", s(data.path())], &["holds 5000000 images but", "holds 100 labels"]);
}

/// The label line `nnmnist show 0` prints, run in `cwd` with `data_dir` as `--data-dir` (if
/// any) and `env` as NNMNIST_DATA_DIR (if any): (success, stdout + stderr).
fn show_label(cwd: &Path, data_dir: Option<&Path>, env: Option<&Path>) -> (bool, String) {
    let mut cmd = nnmnist();
    cmd.args(["show", "0"]).current_dir(cwd);
    if let Some(dir) = data_dir {
        cmd.args(["--data-dir", s(dir)]);
    }
    if let Some(dir) = env {
        cmd.env("NNMNIST_DATA_DIR", dir);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_data_directory_is_the_flag_then_the_variable_then_dot_data_then_the_repositorys() {
    // Test image 0 is a 7; a copy of the data whose first test label says 3 tells which
    // directory was read.
    let m = real();
    let mut relabelled = m.test.take(10);
    relabelled.labels[0] = 3;
    let elsewhere = data_dir_of(&m.train.take(10), &relabelled);
    let cwd = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();

    // Nothing given, no ./data: the repository's data/.
    let (ok, text) = show_label(cwd.path(), None, None);
    assert!(ok && text.contains("Test image 0: label 7"), "{text}");
    // The variable.
    let (ok, text) = show_label(cwd.path(), None, Some(elsewhere.path()));
    assert!(ok && text.contains("Test image 0: label 3"), "{text}");
    // The flag before the variable.
    let (ok, text) = show_label(cwd.path(), Some(elsewhere.path()), Some(empty.path()));
    assert!(ok && text.contains("Test image 0: label 3"), "{text}");
    // A variable naming a directory without MNIST is an error about that directory, not a
    // silent fall back.
    let (ok, text) = show_label(cwd.path(), None, Some(empty.path()));
    assert!(!ok && text.contains(&format!("{}: missing MNIST file t10k-images-idx3-ubyte", empty.path().display())), "{text}");
    // ./data before the repository's, once it holds the four files.
    std::fs::create_dir(cwd.path().join("data")).unwrap();
    let (ok, text) = show_label(cwd.path(), None, None);
    assert!(ok && text.contains("Test image 0: label 7"), "an empty ./data is passed over: {text}");
    for entry in std::fs::read_dir(elsewhere.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), cwd.path().join("data").join(entry.file_name())).unwrap();
    }
    let (ok, text) = show_label(cwd.path(), None, None);
    assert!(ok && text.contains("Test image 0: label 3"), "{text}");
}
