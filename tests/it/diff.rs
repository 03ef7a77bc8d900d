//! `nnmnist diff A B` end to end through the binary: exit status 0 (same within tolerance),
//! 1 (different, the first difference named on the last line), 2 (trouble, the file and the
//! reason). Fixtures are written at test time: safetensors by the safetensors crate, the
//! PyTorch files by PyTorch itself.
use crate::common;
use crate::common::{bin, python, s};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

/// One tensor to write: name, dtype, shape, little-endian bytes.
type T<'a> = (&'a str, Dtype, Vec<usize>, Vec<u8>);

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `tensors` as safetensors, with `order` recorded in the header when given.
fn write(path: &Path, tensors: &[T], order: Option<&[&str]>) {
    let views: Vec<(String, TensorView)> = tensors.iter().map(|(n, d, shape, b)| (n.to_string(), TensorView::new(*d, shape.clone(), b).unwrap())).collect();
    let meta = order.map(|o| HashMap::from([("order".to_string(), serde_json::to_string(o).unwrap())]));
    std::fs::write(path, safetensors::tensor::serialize(views, meta).unwrap()).unwrap();
}

/// A small "model": three float32 tensors.
fn model() -> Vec<T<'static>> {
    vec![
        ("layer.0.weight", Dtype::F32, vec![2, 3], f32s(&[0.5, -1.0, 2.0, 0.25, 3.0, -0.125])),
        ("layer.0.bias", Dtype::F32, vec![2], f32s(&[0.1, -0.2])),
        ("layer.2.weight", Dtype::F32, vec![1, 2], f32s(&[1.5, -2.5])),
    ]
}

/// `model()` with element `i` of tensor `name` replaced by `value`.
fn nudged(name: &str, i: usize, value: f32) -> Vec<T<'static>> {
    let mut m = model();
    for t in &mut m {
        if t.0 == name {
            t.3[4 * i..4 * i + 4].copy_from_slice(&value.to_le_bytes());
        }
    }
    m
}

/// `nnmnist diff ARGS...`: (exit status, stdout, stderr).
fn diff(args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(bin()).arg("diff").args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    for bad in ["panicked", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{args:?}: {stderr}");
    }
    (out.status.code().expect("an exit status, not a signal"), stdout, stderr)
}

fn last_line(stdout: &str) -> &str {
    stdout.trim_end().lines().last().unwrap_or("")
}

/// The table row of `name` (its first field is the name).
fn row<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("no row {name} in\n{stdout}"))
}

#[test]
fn identical_files_exit_0_and_a_nudged_element_exits_1_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"), tmp.path().join("c.safetensors"));
    write(&a, &model(), None);
    write(&b, &model(), None);
    let (code, out, _) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(last_line(&out), "first divergence: none");
    assert!(row(&out, "layer.0.weight").contains("0 of 6"), "{out}");

    // 2.0 -> 2.001 at [0, 2]: outside float32's tolerance (1e-5 + 1.3e-6*2).
    write(&c, &nudged("layer.0.weight", 2, 2.001), None);
    let (code, out, _) = diff(&[s(&c), s(&b)]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(last_line(&out), "first divergence: layer.0.weight");
    let r = row(&out, "layer.0.weight");
    assert!(r.contains("1 of 6") && r.contains("first at [0, 2]: A 2.001 B 2"), "{r}");
    assert!(row(&out, "layer.0.bias").contains("0 of 2"), "{out}");
}

#[test]
fn the_recorded_order_decides_which_divergence_is_first_and_sort_name_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    // Both layer.2.weight and layer.0.bias differ; the writer's causal order puts layer.2 first.
    let mut m = nudged("layer.2.weight", 0, 9.0);
    m[1].3 = f32s(&[0.1, 7.0]);
    let order = ["layer.2.weight", "layer.0.bias", "layer.0.weight"];
    write(&a, &m, Some(&order));
    write(&b, &model(), None);
    let (code, out, _) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 1);
    assert_eq!(last_line(&out), "first divergence: layer.2.weight", "{out}");
    let names: Vec<&str> = out.lines().filter(|l| l.starts_with("layer.")).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, order);
    // B's recorded order is used when A records none.
    let (_, out, _) = diff(&[s(&b), s(&a)]);
    assert_eq!(last_line(&out), "first divergence: layer.2.weight", "{out}");
    let (_, out, _) = diff(&[s(&a), s(&b), "--sort", "name"]);
    assert_eq!(last_line(&out), "first divergence: layer.0.bias", "{out}");

    // Another writer's "order" that is not a list of names: noted, and the data's order used.
    let m = model();
    let views: Vec<(String, TensorView)> = m.iter().map(|(n, d, shape, b)| (n.to_string(), TensorView::new(*d, shape.clone(), b).unwrap())).collect();
    let meta = Some(HashMap::from([("order".to_string(), "by size".to_string())]));
    std::fs::write(&a, safetensors::tensor::serialize(views, meta).unwrap()).unwrap();
    let (code, out, err) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 0, "{out}");
    assert!(err.contains("its metadata \"order\" is not a JSON list of names"), "{err}");
}

#[test]
fn missing_tensors_and_shape_or_dtype_disagreements_are_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    write(&b, &model(), None);
    let mut m = model();
    m.remove(1); // no layer.0.bias
    m.push(("extra", Dtype::I64, vec![1], 3i64.to_le_bytes().to_vec()));
    m[1] = ("layer.2.weight", Dtype::F32, vec![2, 1], f32s(&[1.5, -2.5])); // transposed
    write(&a, &m, None);
    let (code, out, _) = diff(&[s(&a), s(&b), "--sort", "name"]);
    assert_eq!(code, 1, "{out}");
    assert!(row(&out, "layer.0.bias").ends_with("only in B"), "{out}");
    assert!(row(&out, "extra").ends_with("only in A"), "{out}");
    assert!(row(&out, "layer.2.weight").ends_with("shape differs: B 1x2"), "{out}");
    assert!(out.contains("tensors: 4 in all, 1 within tolerance, 0 outside it, 1 only in A, 1 only in B, 1 of another shape, 0 of another dtype"), "{out}");
    assert_eq!(last_line(&out), "first divergence: extra");

    // The same values in float64: another dtype is a difference, its numbers still shown.
    let m64: Vec<T> = model().into_iter().map(|(n, _, shape, b)| (n, Dtype::F64, shape, f64s(&b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect::<Vec<_>>()))).collect();
    write(&a, &m64, None);
    let (code, out, _) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 1, "{out}");
    let r = row(&out, "layer.0.weight");
    assert!(r.contains("float64") && r.contains("0 of 6") && r.ends_with("dtype differs: B float32"), "{r}");
}

#[test]
fn unreadable_files_and_bad_flags_exit_2_naming_the_file_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.safetensors");
    write(&good, &model(), None);
    let garbage = tmp.path().join("garbage.bin");
    std::fs::write(&garbage, b"this is not a tensor file at all").unwrap();
    let empty = tmp.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let cut = tmp.path().join("cut.safetensors");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
    let missing = tmp.path().join("missing.safetensors");
    let none = tmp.path().join("none.safetensors");
    write(&none, &[], None);
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec![s(&none), s(&none)], vec![format!("{} and {} hold no tensors to compare", s(&none), s(&none))]),
        (vec![s(&good), s(&missing)], vec![format!("cannot read tensor file {}", s(&missing)), "No such file".into()]),
        (vec![s(&garbage), s(&good)], vec![format!("{}: neither a safetensors nor a PyTorch file", s(&garbage))]),
        (vec![s(&good), s(&empty)], vec![format!("{}: empty file", s(&empty))]),
        (vec![s(&cut), s(&good)], vec![format!("{}: not a safetensors file (tensor", s(&cut)), "runs past the end of the file".into()]),
        (vec![s(&good), s(tmp.path())], vec!["not a regular file".into()]),
        (vec![s(&good), s(&good), "--rtol", "-1"], vec!["--rtol must be a finite number >= 0".into()]),
        (vec![s(&good), s(&good), "--atol", "nan"], vec!["--atol must be a finite number >= 0".into()]),
        (vec![s(&good), s(&good), "--exact", "--atol", "1"], vec!["--exact asks for bit identity".into()]),
        (vec![s(&good), s(&good), "--only", "nothing*"], vec!["--only nothing*: matches none of the 3 tensor names".into()]),
        (vec![s(&good), s(&good), "--only", "[x"], vec!["--only [x: not a pattern".into()]),
        (vec![s(&good), s(&good), "--sort", "size"], vec!["invalid value 'size'".into()]),
        (vec![s(&good)], vec!["required".into()]),
    ];
    let (_, out, _) = diff(&[s(&none), s(&none)]);
    assert!(out.contains("first divergence: none (no tensors)"), "{out}");
    for (args, phrases) in cases {
        let (code, out, err) = diff(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        for p in phrases {
            assert!(err.contains(&p), "{args:?}: {p:?} not in: {err}");
        }
    }
}

#[test]
fn tolerance_flags_exact_only_and_dtype_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    write(&b, &model(), None);
    // 2.0 -> 2.0001: 1e-4 is outside float32's default, inside --atol 1e-3 or --rtol 1e-4.
    write(&a, &nudged("layer.0.weight", 2, 2.0001), None);
    let code = |extra: &[&str]| diff(&[&[s(&a), s(&b)], extra].concat()).0;
    assert_eq!(code(&[]), 1);
    assert_eq!(code(&["--atol", "1e-3"]), 0);
    assert_eq!(code(&["--rtol", "1e-4"]), 0);
    assert_eq!(code(&["--rtol", "1e-5"]), 1);
    assert_eq!(code(&["--only", "layer.0.b*"]), 0, "--only leaves the nudged tensor out");
    assert_eq!(code(&["--only", "layer.0.b*", "--only", "*.weight"]), 1);

    // -0.0 and 0.0: equal numbers, different bits. NaN at the same place: equal.
    let zeros = |z: f32| vec![("t", Dtype::F32, vec![3], f32s(&[z, f32::NAN, f32::INFINITY]))];
    write(&a, &zeros(-0.0), None);
    write(&b, &zeros(0.0), None);
    assert_eq!(code(&[]), 0);
    let (c, out, _) = diff(&[s(&a), s(&b), "--exact"]);
    assert_eq!((c, last_line(&out)), (1, "first divergence: t"), "{out}");
    assert_eq!(diff(&[s(&b), s(&b), "--exact"]).0, 0);
    // NaN on one side only: outside, whatever the tolerance.
    write(&a, &[("t", Dtype::F32, vec![3], f32s(&[0.0, 1.0, f32::INFINITY]))], None);
    let (c, out, _) = diff(&[s(&a), s(&b), "--atol", "1e9"]);
    assert_eq!(c, 1);
    assert!(row(&out, "t").contains("1 NaN on one side only"), "{out}");

    // bfloat16: a 1% difference is within its default (rtol 1.6e-2), float16's is not (1e-3).
    let half = |d: Dtype, v: f32| -> Vec<u8> {
        match d {
            Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
            _ => half::f16::from_f32(v).to_le_bytes().to_vec(),
        }
    };
    for (d, expect) in [(Dtype::BF16, 0), (Dtype::F16, 1)] {
        write(&a, &[("h", d, vec![1], half(d, 1.0))], None);
        write(&b, &[("h", d, vec![1], half(d, 1.0 / 1.01))], None);
        let (c, out, _) = diff(&[s(&a), s(&b)]);
        assert_eq!(c, expect, "{d:?}: {out}");
    }
    // Integers: exact by default.
    write(&a, &[("n", Dtype::I64, vec![2], [5i64, 6].iter().flat_map(|x| x.to_le_bytes()).collect())], None);
    write(&b, &[("n", Dtype::I64, vec![2], [5i64, 7].iter().flat_map(|x| x.to_le_bytes()).collect())], None);
    let (c, out, _) = diff(&[s(&a), s(&b)]);
    assert!(c == 1 && row(&out, "n").contains("first at [1]: A 6 B 7"), "{out}");
    assert_eq!(code(&["--atol", "1"]), 0);
}

#[test]
fn names_from_files_are_printed_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    write(&a, &[("evil\u{1b}[2J\nforged", Dtype::F32, vec![1], f32s(&[1.0]))], None);
    write(&b, &[("evil\u{1b}[2J\nforged", Dtype::F32, vec![1], f32s(&[2.0]))], None);
    let (code, out, _) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 1);
    assert!(!out.contains('\u{1b}'), "a raw escape character reached the terminal: {out:?}");
    assert!(out.contains("evil\\x1b[2J\\nforged"), "{out}");
    assert_eq!(last_line(&out), "first divergence: evil\\x1b[2J\\nforged");
}

/// The same weights written by PyTorch as safetensors, as a torch.save state_dict (.pth) and
/// as a training checkpoint nesting it (.pt): no difference, bit for bit.
#[test]
fn the_same_weights_as_safetensors_and_as_pth_compare_equal() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, torch
from safetensors.torch import save_file
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3).double())
sd = m.state_dict()
d = sys.argv[1]
save_file({k: v.contiguous() for k, v in sd.items()}, d + "/w.safetensors")
torch.save(sd, d + "/w.pth")
torch.save({"model_state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}}, d + "/ckpt.pt")
sd2 = {k: v.clone() for k, v in sd.items()}
sd2["2.bias"][1] += 1e-3
torch.save(sd2, d + "/w2.pth")
"#;
    let out = Command::new(python()).args(["-c", script, s(tmp.path())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f = |n: &str| tmp.path().join(n);
    let (code, out, _) = diff(&[s(&f("w.safetensors")), s(&f("w.pth")), "--exact"]);
    assert_eq!(code, 0, "{out}");
    // Linear 2 weights and biases, BatchNorm's weight, bias, running mean and var (float32)
    // and num_batches_tracked (int64); the last Linear in float64.
    assert!(out.contains("tensors: 9 in all, 9 within tolerance"), "{out}");
    assert!(row(&out, "1.num_batches_tracked").contains("int64"), "{out}");
    assert!(row(&out, "2.weight").contains("float64"), "{out}");
    let (code, out, err) = diff(&[s(&f("ckpt.pt")), s(&f("w.safetensors")), "--exact"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("a checkpoint; its state_dict under \"model_state_dict\" is read under the state_dict's own names"), "{err}");
    let (code, out, _) = diff(&[s(&f("w2.pth")), s(&f("w.safetensors"))]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(last_line(&out), "first divergence: 2.bias");
}

/// Nothing that may differ is called the same: tensors nested below the top level of a
/// `.pt` (dictionaries, lists, integer keys) are compared under dotted names; tensors
/// nnmnist cannot read (complex) make the comparison trouble, exit 2, not "none"; 64-bit
/// integers beyond 2^53, which f64 cannot tell apart, are compared by their bits; each
/// `--only` pattern must match.
#[test]
fn nested_unreadable_and_large_integer_tensors_are_never_called_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, torch
d = sys.argv[1]
for i, v in [(1, 1.0), (2, 2.0)]:
    t = torch.tensor([v])
    torch.save({"a": torch.tensor([0.5]), "nested": {"deep": {"w": t}}, "lst": [t.clone()], 7: t.clone()}, f"{d}/n_{i}.pt")
    torch.save({"c": torch.tensor([complex(v, 1.0)])}, f"{d}/c_{i}.pt")
"#;
    let out = Command::new(python()).args(["-c", script, s(tmp.path())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f = |n: &str| tmp.path().join(n);
    let (code, out, _) = diff(&[s(&f("n_1.pt")), s(&f("n_2.pt"))]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tensors: 4 in all, 1 within tolerance, 3 outside it"), "{out}");
    for name in ["nested.deep.w", "lst.0", "7"] {
        assert!(row(&out, name).contains("1 of 1"), "{name}: {out}");
    }
    // Every --only pattern must match: one typo among several is not silently ignored.
    let (code, _, err) = diff(&[s(&f("n_1.pt")), s(&f("n_2.pt")), "--only", "a", "--only", "nomatch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--only nomatch: matches none of the 4 tensor names"), "{err}");
    let (code, out, err) = diff(&[s(&f("c_1.pt")), s(&f("c_2.pt"))]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("1 tensor(s) could not be compared") && err.contains("the files may differ there"), "{err}");
    assert!(row(&out, "c").contains("cannot compare: A complex64 tensors are not compared by nnmnist diff"), "{out}");
    assert_eq!(last_line(&out), "first divergence: unknown (not every tensor was compared)");
    let big = |v: i64| vec![("i", Dtype::I64, vec![1], v.to_le_bytes().to_vec())];
    write(&f("i_a.safetensors"), &big((1 << 53) + 1), None);
    write(&f("i_b.safetensors"), &big(1 << 53), None);
    let (code, out, _) = diff(&[s(&f("i_a.safetensors")), s(&f("i_b.safetensors"))]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(last_line(&out), "first divergence: i");
}

/// Tensors are read one at a time: comparing a file with itself, the peak memory grows by
/// far less than the file's size, as it would if either copy were read whole (measured:
/// `nnmnist show --weights` on the same 128 MiB file, which reads it whole, peaks 137 MiB
/// above its run on a tiny file; the baseline, about 460 MiB, is mostly libtorch's code).
#[test]
fn memory_stays_bounded_by_one_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, big) = (tmp.path().join("small.safetensors"), tmp.path().join("big.safetensors"));
    write(&small, &model(), None);
    // 32 tensors of 2^20 float32 (4 MiB each): 128 MiB.
    let names: Vec<String> = (0..32).map(|i| format!("t{i}")).collect();
    let data = f32s(&(0..1 << 20).map(|i| i as f32).collect::<Vec<_>>());
    let tensors: Vec<T> = names.iter().map(|n| (n.as_str(), Dtype::F32, vec![1 << 20], data.clone())).collect();
    write(&big, &tensors, None);
    drop(tensors);
    let file_mib = std::fs::metadata(&big).unwrap().len() as f64 / (1 << 20) as f64;
    let peak_mib = |file: &Path| -> f64 {
        let (ok, stderr, peak_kib) = crate::common::run_measured(crate::common::nnmnist().args(["diff", s(file), s(file)]));
        assert!(ok, "{stderr}");
        peak_kib as f64 / 1024.0
    };
    let (base, peak) = (peak_mib(&small), peak_mib(&big));
    eprintln!("peak resident memory: {base:.0} MiB on a tiny file, {peak:.0} MiB on a {file_mib:.0} MiB file against itself");
    // One tensor per side, as bytes and as f64: 2 * (4 + 8) MiB = 24 MiB, and some slack.
    assert!(peak - base < 48.0, "{peak:.0} MiB against {base:.0} MiB: more than a tensor at a time");
}

/// A name or shape longer than the table's columns overflows its own row, without padding
/// the others to its width (a name of 70,000 characters, beyond what a format width may
/// be, made diff panic).
#[test]
fn long_names_and_shapes_overflow_their_own_row() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("long.safetensors");
    let long = "x".repeat(70_000);
    let dims = vec![1; 40_000];
    write(&file, &[(long.as_str(), Dtype::F32, vec![1], f32s(&[1.0])), ("short", Dtype::F32, dims, f32s(&[2.0]))], None);
    let (code, out, err) = diff(&[s(&file), s(&file)]);
    assert_eq!(code, 0, "{err}");
    let short = row(&out, "short");
    assert!(short.len() < 80_000 + 200 && !short.contains(&" ".repeat(100)), "the short name is not padded to the long one: {}", &short[..200]);
    assert!(row(&out, &long).contains("0 of 1"));
}

/// The CPU time (user and system, in seconds) `nnmnist diff FILE FILE` takes, its output
/// discarded.
fn cpu_seconds(file: &Path) -> f64 {
    let mut child = crate::common::nnmnist().args(["diff", s(file), s(file)]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let (mut status, pid) = (0, child.id() as libc::pid_t);
    // SAFETY: wait4 on our own child, not yet reaped, with a status and a rusage to fill.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut u), pid);
        u
    };
    let _ = child.try_wait();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "diff {}: status {status}", file.display());
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The work of a diff grows with the number of tensors, not with its square: a file of
/// 50,000 (empty) tensors against itself costs a few times what a file of 500 does (mostly
/// the binary's start), where a name looked up by scanning every tensor would cost about a
/// hundred times more.
#[test]
fn many_tensors_cost_time_in_proportion() {
    let tmp = tempfile::tempdir().unwrap();
    let file = |n: usize| {
        let path = tmp.path().join(format!("many{n}.safetensors"));
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let tensors: Vec<T> = names.iter().map(|name| (name.as_str(), Dtype::F32, vec![0], Vec::new())).collect();
        write(&path, &tensors, None);
        path
    };
    let (few, many) = (cpu_seconds(&file(500)), cpu_seconds(&file(50_000)));
    eprintln!("diff of a file with itself: {few:.2} s of CPU for 500 tensors, {many:.2} s for 50000");
    assert!(many < 20.0 * few.max(0.05), "{many:.2} s for 50000 tensors against {few:.2} s for 500: more than in proportion");
}

/// scripts.reference.dump_tensors on nn_convnet.py's model writes the names `nnmnist
/// trace` writes: one step from the same weights on the same batch, and `nnmnist diff`
/// finds every one of the 27 tensors in both files, within tolerance, either way round.
#[test]
fn dump_tensors_py_names_tensors_as_nnmnist_trace_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, dump, trace) = (tmp.path().join("w.safetensors"), tmp.path().join("dump.safetensors"), tmp.path().join("trace.safetensors"));
    let script = r#"
import sys
import numpy as np
import torch
from scripts.reference import common, nn_convnet
from scripts.reference.dump_tensors import dump_step
torch.set_num_threads(1)
model = nn_convnet.build_model(3, None, "cpu")
model.train()
nn_convnet.save_model(model, sys.argv[1])
(images, labels), _ = common.load_mnist("data", train_size=64, test_size=1)
x, y = nn_convnet.to_tensor(images), torch.from_numpy(labels.astype(np.int64))
opt = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=0.001)
names = dump_step(model, x, y, torch.nn.CrossEntropyLoss(), opt, sys.argv[2])
print(len(names))
"#;
    let out = Command::new(python()).args(["-c", script, s(&w), s(&dump)]).current_dir(common::root()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "27");
    let data = common::repo_data();
    let traced = Command::new(bin())
        .args(["trace", "--model", "convnet", "--weights", s(&w), "--out", s(&trace), "--device", "cpu", "--threads", "1", "--data-dir", s(&data)])
        .output()
        .unwrap();
    assert!(traced.status.success(), "{}", String::from_utf8_lossy(&traced.stderr));
    for (a, b) in [(&trace, &dump), (&dump, &trace)] {
        let (code, out, _) = diff(&[s(a), s(b)]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("tensors: 27 in all, 27 within tolerance"), "{out}");
    }
    // The dump's own order: outputs, the loss, gradients, parameters after the step.
    let (_, out, _) = diff(&[s(&dump), s(&trace)]);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("model.") || *n == "loss" || n.starts_with("grad.") || n.starts_with("after.")).collect();
    assert_eq!(names[..11], ["model.0", "model.1", "model.2", "model.3", "model.4", "model.5", "model.6", "model.7", "model.8", "model.9", "loss"]);
    assert!(names[11..19].iter().all(|n| n.starts_with("grad.")) && names[19..].iter().all(|n| n.starts_with("after.")), "{names:?}");
}

/// A checkpoint's numbers, strings and numpy arrays are not tensors: diff compares its tensors
/// and says, in a note per file and in the summary, which values it did not compare.
#[test]
fn values_that_are_not_tensors_are_named_as_not_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, torch, numpy as np
d = sys.argv[1]
torch.save({"w": torch.ones(3), "epoch": 3, "arr": np.zeros(2), "opt": {"lr": 0.1}}, f"{d}/a.pt")
torch.save({"w": torch.ones(3), "epoch": 5, "arr": np.ones(2), "opt": {"lr": 0.2}}, f"{d}/b.pt")
torch.save({"w": torch.ones(3)}, f"{d}/plain.pt")
"#;
    let out = Command::new(python()).args(["-c", script, s(tmp.path())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b, plain) = (tmp.path().join("a.pt"), tmp.path().join("b.pt"), tmp.path().join("plain.pt"));
    let (code, stdout, stderr) = diff(&[s(&a), s(&b)]);
    assert_eq!(code, 0, "the tensors are the same: {stdout}");
    let named = r#"3 value(s) in it are not tensors and are not compared (diff compares tensors): ["epoch"] (int), ["arr"] (numpy._core.multiarray._reconstruct), ["opt"]["lr"] (float)"#;
    for f in [&a, &b] {
        assert!(stderr.contains(&format!("nnmnist: note: {}: {named}", f.display())), "{stderr}");
    }
    assert_eq!(last_line(&stdout), "not compared: the values that are not tensors (3 in A, 3 in B; named in the notes above)");
    let (_, json, _) = diff(&[s(&a), s(&plain), "--format", "json"]);
    let summary: serde_json::Value = serde_json::from_str(last_line(&json)).unwrap();
    assert_eq!((summary["summary"]["not_tensors_a"].as_u64(), summary["summary"]["not_tensors_b"].as_u64()), (Some(3), Some(0)), "{json}");
    let (code, stdout, stderr) = diff(&[s(&plain), s(&plain)]);
    assert!(code == 0 && !stderr.contains("not tensors") && last_line(&stdout) == "first divergence: none", "{stdout}{stderr}");
}
