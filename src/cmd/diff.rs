//! `nnmnist diff A B`: where two files of named tensors part, for anyone porting a PyTorch
//! model (two state_dicts, or two dumps of intermediate tensors: one from PyTorch, one from
//! the port). No model is assumed: any two files nnmnist can read, in any mix of formats.
//!
//! - Files are read through [`crate::tensors`]: every tensor of each file is listed under
//!   one unique name, or the file is refused (exit 2) naming the place it cannot account
//!   for. Then one tensor of each file at a time is read: only the bytes its storage holds.
//! - Every tensor is compared or the comparison is trouble (exit 2): a tensor nnmnist
//!   cannot read (a meta-device, sparse or complex one) is a row of its own, never a silent
//!   "none".
//! - B is the expected side, as in `torch.testing.assert_close(A, B)`: an element is within
//!   tolerance when |a - b| <= atol + rtol*|b|, with assert_close's default (rtol, atol)
//!   for B's dtype ([`default_tolerance`]), or `--rtol`/`--atol` for every dtype, or
//!   `--exact` for bit identity. Floats are compared in f64 (exact for every float dtype);
//!   integers and bools by their exact values (never rounded through f64; their exact
//!   difference is held against the tolerance, as assert_close does). NaN equals NaN only
//!   at the same place (assert_close's `equal_nan=True`); an infinity equals only the same
//!   infinity.
//! - A view that repeats its storage (a stride-0 expansion) is compared without laying it
//!   out: a dimension along which both sides repeat counts each of its elements once, with
//!   its multiplicity, so the work is bounded by the bytes the files hold.
//! - Order of the rows: the order a file records under the safetensors metadata key
//!   [`ORDER_KEY`] (a JSON list of names: `nnmnist trace`, the reference scripts' traces and
//!   scripts/reference/dump_tensors.py record their causal order there), A's first, else
//!   B's; without one, A's order in the file. Names only in the other file go after their
//!   predecessor in that file. `--sort name` sorts by name, numbers by value (`layer.2`
//!   before `layer.10`).
//! - Names only in A or only in B, and shape or dtype disagreements, are differences.
//! - Output: a table, or with `--format json` one JSON object per row and a summary object
//!   with the verdict (docs/diff.md).
//! - Exit status as diff(1): 0 when every tensor is within tolerance, 1 when any differs
//!   ([`Outcome::Different`]), 2 on trouble (an unreadable file or tensor, a bad flag), with
//!   the file and the reason.
use crate::outcome::Outcome;
use crate::tensors::{DType, Tensor, TensorFile, View};
use crate::terminal::Shown;
use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use serde_json::json;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

pub use crate::tensors::ORDER_KEY;

/// The rows' order.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// The order a file records (a trace's causal order), else A's order
    File,
    /// By name, numbers by value
    Name,
}

/// How the comparison is written on stdout.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A table for people
    Table,
    /// One JSON object per row, then a summary object (for scripts)
    Json,
}

/// What counts as equal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// |a - b| <= atol + rtol*|b|; each `None` is the dtype's default.
    Close { rtol: Option<f64>, atol: Option<f64> },
    /// Bit for bit (same dtype, same bytes).
    Exact,
}

/// A resolved `nnmnist diff` command.
#[derive(Debug, Clone)]
pub struct DiffSpec {
    /// The file checked.
    pub a: PathBuf,
    /// The reference (expected).
    pub b: PathBuf,
    pub tolerance: Tolerance,
    pub sort: SortOrder,
    /// Shell-style patterns (`*`, `?`, `[...]`); a tensor is compared when its name matches
    /// one. Empty: every tensor.
    pub only: Vec<glob::Pattern>,
    pub format: OutputFormat,
}

impl DiffSpec {
    /// Checks the tolerances and compiles the patterns.
    #[allow(clippy::too_many_arguments)]
    pub fn new(a: PathBuf, b: PathBuf, rtol: Option<f64>, atol: Option<f64>, exact: bool, sort: SortOrder, only: &[String], format: OutputFormat) -> Result<DiffSpec> {
        for (flag, v) in [("--rtol", rtol), ("--atol", atol)] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{flag} must be a finite number >= 0, not {v}");
                }
            }
        }
        if exact && (rtol.is_some() || atol.is_some()) {
            bail!("--exact asks for bit identity: leave out --rtol and --atol");
        }
        let only = only
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| anyhow!("--only {}: not a pattern ({e})", p.shown())))
            .collect::<Result<_>>()?;
        let tolerance = if exact { Tolerance::Exact } else { Tolerance::Close { rtol, atol } };
        Ok(DiffSpec { a, b, tolerance, sort, only, format })
    }
}

/// torch.testing.assert_close's default (rtol, atol) for a dtype: float16 (1e-3, 1e-5),
/// bfloat16 (1.6e-2, 1e-5), float32 (1.3e-6, 1e-5), float64 (1e-7, 1e-7); integers and
/// bool exact.
pub fn default_tolerance(d: DType) -> (f64, f64) {
    match d {
        DType::F16 => (1e-3, 1e-5),
        DType::BF16 => (1.6e-2, 1e-5),
        DType::F32 | DType::C64 => (1.3e-6, 1e-5),
        DType::F64 | DType::C128 => (1e-7, 1e-7),
        _ => (0.0, 0.0),
    }
}

// ------------------------------------------------------------------------------ comparing

/// One element's value: integers and bools exactly, floats as f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
}

impl Value {
    fn of(dtype: DType, b: &[u8]) -> Value {
        if dtype.is_integer() {
            Value::Int(dtype.int_at(b))
        } else {
            Value::Float(dtype.float_at(b))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }

    /// As the dtype prints it (f32's shortest digits for float32, integers exactly).
    fn show(self, dtype: DType) -> String {
        match (self, dtype) {
            (Value::Int(i), _) => i.to_string(),
            (Value::Float(v), DType::F16 | DType::BF16 | DType::F32) => format!("{}", v as f32),
            (Value::Float(v), _) => format!("{v}"),
        }
    }

    fn json(self) -> serde_json::Value {
        match self {
            Value::Int(i) => i64::try_from(i).map(serde_json::Value::from).or_else(|_| u64::try_from(i).map(serde_json::Value::from)).unwrap_or_else(|_| json!(i.to_string())),
            Value::Float(f) if f.is_finite() => json!(f),
            Value::Float(f) => json!(f.to_string()),
        }
    }
}

/// One tensor compared: A against B (expected), same shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub numel: u128,
    /// Over the elements where neither side is NaN.
    pub max_abs: f64,
    pub max_rel: f64,
    pub mean_abs: f64,
    pub median_abs: f64,
    /// Elements outside tolerance (NaN on one side only included).
    pub outside: u128,
    /// Elements NaN on one side only.
    pub nan_one_side: u128,
    /// The first element outside tolerance: (flat index, a, b).
    pub first: Option<(u128, Value, Value)>,
}

/// How one pair of elements compares: the absolute difference (None when NaN is on either
/// side), and whether the pair counts as equal.
fn pair(x: Value, y: Value, rtol: f64, atol: f64) -> (Option<f64>, bool) {
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => {
            let d = a.abs_diff(b);
            (Some(d as f64), d == 0 || (d as f64) <= atol + rtol * (b.unsigned_abs() as f64))
        }
        _ => {
            let (x, y) = (x.as_f64(), y.as_f64());
            if x.is_nan() || y.is_nan() {
                (None, x.is_nan() && y.is_nan())
            } else if x.is_infinite() || y.is_infinite() {
                (Some(if x == y { 0.0 } else { f64::INFINITY }), x == y)
            } else {
                let d = (x - y).abs();
                (Some(d), d <= atol + rtol * y.abs())
            }
        }
    }
}

/// Elements compared one by one at most, beyond four times what both files hold of the two
/// tensors: views that repeat their storage along different dimensions.
const EXTRA_ELEMENTS: u128 = 1 << 20;

/// Compares view `a` with `b` (expected, same shape) elementwise with (rtol, atol); with
/// `exact`, "equal" is bit identity instead. Dimensions along which both views repeat
/// (stride 0) are counted, not walked (see the module comment).
pub fn compare(a: &View, b: &View, rtol: f64, atol: f64, exact: bool) -> std::result::Result<Stats, String> {
    let shape = &a.shape;
    let numel: u128 = shape.iter().map(|&d| d as u128).product();
    // The dimensions walked, and how many times each walked pair stands for.
    let walked: Vec<usize> = (0..shape.len()).filter(|&k| shape[k] > 1 && !(a.strides[k] == 0 && b.strides[k] == 0)).collect();
    let pairs: u128 = walked.iter().map(|&k| shape[k] as u128).product();
    let times = numel.checked_div(pairs).unwrap_or(0);
    let held = (a.bytes.len() / a.dtype.size() + b.bytes.len() / b.dtype.size()) as u128;
    if numel > 0 && pairs > 4 * held + EXTRA_ELEMENTS {
        return Err(format!("its views would have nnmnist compare {pairs} pairs of elements from {held} stored ones (views that repeat their storage along different dimensions); nnmnist diff compares at most 4 times what the files hold, plus {EXTRA_ELEMENTS}"));
    }
    let mut diffs: Vec<f64> = Vec::new();
    diffs.try_reserve_exact(pairs as usize).map_err(|_| format!("cannot allocate memory for {pairs} differences"))?;
    let (mut outside, mut nan_one_side, mut first) = (0u128, 0u128, None);
    let (mut max_abs, mut max_rel, mut sum) = (0.0f64, 0.0f64, 0.0f64);
    let (sa, sb) = (a.dtype.size(), b.dtype.size());
    let mut index = vec![0usize; shape.len()];
    let (mut at_a, mut at_b) = (0usize, 0usize);
    for _ in 0..if numel == 0 { 0 } else { pairs } {
        let (ra, rb) = (&a.bytes[at_a * sa..(at_a + 1) * sa], &b.bytes[at_b * sb..(at_b + 1) * sb]);
        let (x, y) = (Value::of(a.dtype, ra), Value::of(b.dtype, rb));
        let (d, close) = pair(x, y, rtol, atol);
        let equal = if exact { ra == rb } else { close };
        if d.is_none() && !close {
            nan_one_side += times;
        }
        if !equal {
            outside += times;
            if first.is_none() {
                first = Some((flat(&index, shape), x, y));
            }
        }
        if let Some(d) = d {
            let r = if d == 0.0 { 0.0 } else { d / y.as_f64().abs() };
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(r);
            sum += d;
            diffs.push(d);
        }
        // The next walked index, and both views' element offsets with it.
        for &k in walked.iter().rev() {
            index[k] += 1;
            at_a += a.strides[k];
            at_b += b.strides[k];
            if index[k] < shape[k] {
                break;
            }
            at_a -= a.strides[k] * shape[k];
            at_b -= b.strides[k] * shape[k];
            index[k] = 0;
        }
    }
    // Each walked pair stands for `times` elements alike: the median of the repeated
    // differences is the median of the walked ones, and so is their mean.
    let k = diffs.len();
    let median_abs = if k == 0 {
        0.0
    } else {
        let mid = k / 2;
        let (lower, m, _) = diffs.select_nth_unstable_by(mid, f64::total_cmp);
        let m = *m;
        if k % 2 == 1 {
            m
        } else {
            let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (below + m) / 2.0
        }
    };
    let mean_abs = if k == 0 { 0.0 } else { sum / k as f64 };
    Ok(Stats { numel, max_abs, max_rel, mean_abs, median_abs, outside, nan_one_side, first })
}

/// The row-major flat index of `index` in `shape`.
fn flat(index: &[usize], shape: &[usize]) -> u128 {
    index.iter().zip(shape).fold(0u128, |acc, (&i, &d)| acc * d as u128 + i as u128)
}

// ------------------------------------------------------------------------------ the rows

/// How one row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Verdict {
    Within,
    Outside,
    OnlyA,
    OnlyB,
    Shape,
    Dtype,
    /// A tensor nnmnist cannot compare: trouble, not a verdict on the files.
    Unreadable,
}

impl Verdict {
    fn key(self) -> &'static str {
        match self {
            Verdict::Within => "within",
            Verdict::Outside => "outside",
            Verdict::OnlyA => "only_a",
            Verdict::OnlyB => "only_b",
            Verdict::Shape => "shape",
            Verdict::Dtype => "dtype",
            Verdict::Unreadable => "unreadable",
        }
    }
}

/// One row of the comparison.
struct Row {
    name: String,
    shape: Vec<usize>,
    dtype: Option<DType>,
    dtype_b: Option<DType>,
    verdict: Verdict,
    stats: Option<Stats>,
    note: String,
}

/// Why `t` cannot be compared, if it cannot.
fn uncomparable(t: &Tensor) -> Option<String> {
    if let Some(why) = t.unreadable() {
        return Some(why.to_string());
    }
    match t.dtype {
        None => Some("its dtype is unknown to nnmnist".into()),
        Some(d @ (DType::C64 | DType::C128)) => Some(format!("{} tensors are not compared by nnmnist diff", d.name())),
        _ => None,
    }
}

/// The row of the tensor named `name`, reading both sides' values when there are two.
fn row(spec: &DiffSpec, name: &str, fa: &TensorFile, fb: &TensorFile) -> Result<Row> {
    let (ta, tb) = (fa.get(name), fb.get(name));
    let t = ta.or(tb).expect("every name comes from one of the files");
    let mut r = Row { name: name.to_string(), shape: t.shape.clone(), dtype: t.dtype, dtype_b: None, verdict: Verdict::Within, stats: None, note: String::new() };
    // A tensor that cannot be read or compared gets a row saying why; the others are still
    // compared.
    let cannot = |r: Row, why: String| Ok(Row { verdict: Verdict::Unreadable, note: format!("cannot compare: {why}"), ..r });
    let (ta, tb) = match (ta, tb) {
        (Some(_), None) => return Ok(Row { verdict: Verdict::OnlyA, note: "only in A".into(), ..r }),
        (None, Some(_)) => return Ok(Row { verdict: Verdict::OnlyB, note: "only in B".into(), ..r }),
        (Some(ta), Some(tb)) => (ta, tb),
        (None, None) => unreachable!("every name comes from one of the files"),
    };
    r.dtype_b = tb.dtype;
    for (side, t) in [("A", ta), ("B", tb)] {
        if let Some(why) = uncomparable(t) {
            return cannot(r, format!("{side} {why}"));
        }
    }
    if ta.shape != tb.shape {
        return Ok(Row { verdict: Verdict::Shape, note: format!("shape differs: B {}", shape_text(&tb.shape)), ..r });
    }
    let (da, db) = (ta.dtype.expect("comparable"), tb.dtype.expect("comparable"));
    let (va, vb) = match (fa.read(ta), fb.read(tb)) {
        (Ok(va), Ok(vb)) => (va, vb),
        (Err(e), _) => return cannot(r, format!("A {e:#}")),
        (_, Err(e)) => return cannot(r, format!("B {e:#}")),
    };
    let (rtol, atol) = row_tolerance(spec.tolerance, da, db);
    let exact = spec.tolerance == Tolerance::Exact && da == db;
    let s = match compare(&va, &vb, rtol, atol, exact) {
        Ok(s) => s,
        Err(e) => return cannot(r, e),
    };
    let mut notes = Vec::new();
    if da != db {
        notes.push(format!("dtype differs: B {}", db.name()));
    }
    if s.nan_one_side > 0 {
        notes.push(format!("{} NaN on one side only", s.nan_one_side));
    }
    if let Some((i, x, y)) = s.first {
        notes.push(format!("first at {}: A {} B {}", position(i, &ta.shape), x.show(da), y.show(db)));
    }
    r.verdict = if da != db {
        Verdict::Dtype
    } else if s.outside > 0 {
        Verdict::Outside
    } else {
        Verdict::Within
    };
    r.note = notes.join("; ");
    r.stats = Some(s);
    Ok(r)
}

/// Opens one side, with the notes on what was read.
fn open(path: &std::path::Path) -> Result<TensorFile> {
    let f = TensorFile::open(path, "tensor file")?;
    for note in f.notes("keep their full names (compared as any tensor)").into_iter().chain(f.others_note("are not compared (diff compares tensors)")) {
        crate::terminal::note(format_args!("note: {note}"));
    }
    Ok(f)
}

/// The names in a file's order: its recorded order when it has one (names it leaves out
/// keep their data order, after the listed ones), else its own; and whether it recorded one.
fn file_order(f: &TensorFile) -> (Vec<&str>, bool) {
    let mut names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    match f.recorded_order() {
        Some(Ok(order)) => {
            let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
            names.sort_by_key(|n| rank.get(n).copied().unwrap_or(usize::MAX));
            (names, true)
        }
        Some(Err(e)) => {
            // Another writer may use the key for something else: then it is noted and left alone.
            crate::terminal::note(format_args!("note: {}: its metadata \"{ORDER_KEY}\" is not a JSON list of names ({e}); using the data's order", f.path.shown()));
            (names, false)
        }
        None => (names, false),
    }
}

/// Runs the comparison and writes its rows: [`Outcome::Different`] when the files differ.
pub fn run(spec: &DiffSpec) -> Result<Outcome> {
    let fa = open(&spec.a)?;
    let fb = open(&spec.b)?;
    let ((names_a, rec_a), (names_b, rec_b)) = (file_order(&fa), file_order(&fb));
    let mut order = if spec.sort == SortOrder::File && !rec_a && rec_b { merge_order(&names_b, &names_a) } else { merge_order(&names_a, &names_b) };
    if spec.sort == SortOrder::Name {
        order.sort_by(|x, y| natural_cmp(x, y));
    }
    if !spec.only.is_empty() {
        // Each pattern must match something: one that matches nothing is most likely a typo,
        // and its tensors would silently go unchecked.
        let unmatched: Vec<String> = spec.only.iter().filter(|p| !order.iter().any(|n| p.matches(n))).map(|p| p.as_str().shown().to_string()).collect();
        if !unmatched.is_empty() {
            bail!("--only {}: matches none of the {} tensor names of {} and {}", unmatched.join(", --only "), order.len(), spec.a.shown(), spec.b.shown());
        }
        order.retain(|n| spec.only.iter().any(|p| p.matches(n)));
    }
    let mut out = match spec.format {
        OutputFormat::Table => Box::new(Table::new(spec, &order, &fa, &fb)) as Box<dyn Writer>,
        OutputFormat::Json => Box::new(Json),
    };
    let mut counts: HashMap<Verdict, usize> = HashMap::new();
    // The first tensor that differs, and whether a tensor before it could not be compared.
    let mut first: Option<(&str, bool)> = None;
    // The first tensor that could not be compared, and why.
    let mut first_unreadable: Option<(&str, String)> = None;
    for name in &order {
        let r = row(spec, name, &fa, &fb)?;
        *counts.entry(r.verdict).or_default() += 1;
        if r.verdict == Verdict::Unreadable && first_unreadable.is_none() {
            first_unreadable = Some((name, r.note.trim_start_matches("cannot compare: ").to_string()));
        }
        if !matches!(r.verdict, Verdict::Within | Verdict::Unreadable) && first.is_none() {
            first = Some((name, counts.contains_key(&Verdict::Unreadable)));
        }
        out.row(&r)?;
    }
    let c = |v| counts.get(&v).copied().unwrap_or(0);
    let unreadable = c(Verdict::Unreadable);
    let trouble = if let Some((name, why)) = first_unreadable {
        Some(format!("{unreadable} tensor(s) could not be compared (see their rows): the files may differ there (the first, {}: {why})", name.shown()))
    } else if order.is_empty() {
        Some(format!("{} and {} hold no tensors to compare", spec.a.shown(), spec.b.shown()))
    } else {
        None
    };
    let differ = order.len() - c(Verdict::Within) - unreadable;
    let summary = Summary { spec, total: order.len(), counts: &counts, first, differ, trouble: trouble.as_deref(), not_tensors: (fa.others.count, fb.others.count) };
    out.summary(&summary)?;
    if let Some(t) = trouble {
        bail!("{t}");
    }
    Ok(if differ > 0 { Outcome::Different } else { Outcome::Done })
}

/// What the last lines say.
struct Summary<'a> {
    spec: &'a DiffSpec,
    total: usize,
    counts: &'a HashMap<Verdict, usize>,
    /// The first tensor that differs, and whether one before it could not be compared.
    first: Option<(&'a str, bool)>,
    differ: usize,
    trouble: Option<&'a str>,
    /// How many values of A and of B are not tensors (not compared).
    not_tensors: (usize, usize),
}

impl Summary<'_> {
    fn count(&self, v: Verdict) -> usize {
        self.counts.get(&v).copied().unwrap_or(0)
    }

    /// "same", "different" or "trouble" (exit status 0, 1, 2).
    fn verdict(&self) -> &'static str {
        if self.trouble.is_some() {
            "trouble"
        } else if self.differ > 0 {
            "different"
        } else {
            "same"
        }
    }
}

/// How rows are written.
trait Writer {
    fn row(&mut self, r: &Row) -> Result<()>;
    fn summary(&mut self, s: &Summary) -> Result<()>;
}

/// The widest the table's name column gets (a longer name overflows its row).
const MAX_NAME_WIDTH: usize = 64;
/// The widest the table's shape column gets.
const MAX_SHAPE_WIDTH: usize = 32;

/// The table: a header, one line per row, the counts and the first divergence.
struct Table {
    name_w: usize,
    shape_w: usize,
}

impl Table {
    fn new(spec: &DiffSpec, order: &[String], fa: &TensorFile, fb: &TensorFile) -> Table {
        let dtypes: Vec<DType> = {
            let mut seen = Vec::new();
            for n in order {
                for d in [fa.get(n), fb.get(n)].into_iter().flatten().filter_map(|t| t.dtype) {
                    if !seen.contains(&d) {
                        seen.push(d);
                    }
                }
            }
            seen
        };
        // Columns as wide as their longest cell, up to a bound: a longer name or shape
        // overflows its own row only (a name of a megabyte would otherwise pad every row).
        let name_w = order.iter().map(|n| n.shown().to_string().chars().count()).max().unwrap_or(0).clamp(6, MAX_NAME_WIDTH);
        let shape_w = order.iter().filter_map(|n| fa.get(n).or(fb.get(n))).map(|t| shape_text(&t.shape).len()).max().unwrap_or(0).clamp(5, MAX_SHAPE_WIDTH);
        let mut out = String::new();
        let _ = writeln!(out, "A: {}", spec.a.shown());
        let _ = writeln!(out, "B: {} (expected)", spec.b.shown());
        let _ = writeln!(out, "{}", tolerance_line(spec.tolerance, &dtypes));
        let _ = writeln!(out);
        let head = format!(
            "{:<name_w$}  {:<shape_w$}  {:<8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>20}  note",
            "tensor", "shape", "dtype", "max abs", "max rel", "mean abs", "median abs", "outside"
        );
        let _ = writeln!(out, "{head}");
        let _ = writeln!(out, "{}", "-".repeat(head.len()));
        // The header goes out with the first row (or the summary).
        let _ = crate::terminal::print(out);
        Table { name_w, shape_w }
    }
}

impl Writer for Table {
    fn row(&mut self, r: &Row) -> Result<()> {
        let (name_w, shape_w) = (self.name_w, self.shape_w);
        let cells = match &r.stats {
            Some(s) => format!("{:>10}  {:>10}  {:>10}  {:>10}  {:>20}", num(s.max_abs), num(s.max_rel), num(s.mean_abs), num(s.median_abs), format!("{} of {}", s.outside, s.numel)),
            None => format!("{:>10}  {:>10}  {:>10}  {:>10}  {:>20}", "-", "-", "-", "-", "-"),
        };
        let dtype = r.dtype.map_or("?", DType::name);
        let line = format!("{:<name_w$}  {:<shape_w$}  {dtype:<8}  {cells}  {}", r.name.shown().to_string(), shape_text(&r.shape), r.note.shown());
        crate::terminal::print(format!("{}\n", line.trim_end()))
    }

    fn summary(&mut self, s: &Summary) -> Result<()> {
        let mut out = String::new();
        let _ = writeln!(out);
        let unreadable = match s.count(Verdict::Unreadable) {
            0 => String::new(),
            n => format!(", {n} that cannot be compared"),
        };
        let _ = writeln!(
            out,
            "tensors: {} in all, {} within tolerance, {} outside it, {} only in A, {} only in B, {} of another shape, {} of another dtype{unreadable}",
            s.total,
            s.count(Verdict::Within),
            s.count(Verdict::Outside),
            s.count(Verdict::OnlyA),
            s.count(Verdict::OnlyB),
            s.count(Verdict::Shape),
            s.count(Verdict::Dtype)
        );
        let first = match (s.first, s.trouble) {
            (Some((n, false)), _) => n.shown().to_string(),
            (Some((n, true)), _) => format!("{} or a tensor before it that could not be compared", n.shown()),
            (None, Some(_)) if s.total == 0 => "none (no tensors)".into(),
            (None, Some(_)) => "unknown (not every tensor was compared)".into(),
            (None, None) => "none".into(),
        };
        let _ = writeln!(out, "first divergence: {first}");
        if s.not_tensors != (0, 0) {
            let _ = writeln!(out, "not compared: the values that are not tensors ({} in A, {} in B; named in the notes above)", s.not_tensors.0, s.not_tensors.1);
        }
        crate::terminal::print(out)
    }
}

/// JSON lines: one object per row, then `{"summary": ...}`.
struct Json;

impl Writer for Json {
    fn row(&mut self, r: &Row) -> Result<()> {
        let stats = r.stats.as_ref();
        let first = stats.and_then(|s| s.first).map(|(i, x, y)| json!({"index": index_of(i, &r.shape), "a": x.json(), "b": y.json()}));
        let f = |v: fn(&Stats) -> f64| stats.map(|s| finite_or_text(v(s)));
        let obj = json!({
            "tensor": r.name,
            "shape": r.shape,
            "dtype": r.dtype.map(DType::name),
            "dtype_b": r.dtype_b.map(DType::name),
            "verdict": r.verdict.key(),
            "numel": stats.map(|s| s.numel),
            "max_abs": f(|s| s.max_abs),
            "max_rel": f(|s| s.max_rel),
            "mean_abs": f(|s| s.mean_abs),
            "median_abs": f(|s| s.median_abs),
            "outside": stats.map(|s| s.outside),
            "nan_one_side": stats.map(|s| s.nan_one_side),
            "first": first,
            "note": r.note,
        });
        crate::terminal::print(format!("{obj}\n"))
    }

    fn summary(&mut self, s: &Summary) -> Result<()> {
        let (rtol, atol, exact) = match s.spec.tolerance {
            Tolerance::Exact => (None, None, true),
            Tolerance::Close { rtol, atol } => (rtol, atol, false),
        };
        let obj = json!({"summary": {
            "a": s.spec.a.to_string_lossy(),
            "b": s.spec.b.to_string_lossy(),
            "rtol": rtol,
            "atol": atol,
            "exact": exact,
            "tensors": s.total,
            "within": s.count(Verdict::Within),
            "outside": s.count(Verdict::Outside),
            "only_a": s.count(Verdict::OnlyA),
            "only_b": s.count(Verdict::OnlyB),
            "shape": s.count(Verdict::Shape),
            "dtype": s.count(Verdict::Dtype),
            "unreadable": s.count(Verdict::Unreadable),
            "first_divergence": s.first.map(|f| f.0),
            "first_divergence_certain": s.first.map_or(s.trouble.is_none(), |f| !f.1),
            "verdict": s.verdict(),
            "trouble": s.trouble,
            "not_tensors_a": s.not_tensors.0,
            "not_tensors_b": s.not_tensors.1,
        }});
        crate::terminal::print(format!("{obj}\n"))
    }
}

/// A float for JSON: itself when finite, else "inf", "-inf" or "NaN".
fn finite_or_text(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

/// The row-major index of flat element `i` of `shape`.
fn index_of(mut i: u128, shape: &[usize]) -> Vec<u64> {
    let mut idx = vec![0u64; shape.len()];
    for (slot, &d) in idx.iter_mut().zip(shape).rev() {
        if d > 0 {
            *slot = (i % d as u128) as u64;
            i /= d as u128;
        }
    }
    idx
}

/// The row-major index of flat element `i` of `shape`: "[2, 0, 5]".
fn position(i: u128, shape: &[usize]) -> String {
    format!("[{}]", index_of(i, shape).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

fn shape_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        "scalar".into()
    } else {
        shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
    }
}

fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.3e}")
    }
}

// ------------------------------------------------------------------------------ names

/// Names in order, numbers by value: `layer.2` < `layer.10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(&rb) {
        let o = match (x, y) {
            ((true, p), (true, q)) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then(p.cmp(q))
            }
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ra.len().cmp(&rb.len()).then(a.cmp(b))
}

/// `primary`'s names, with the names only `secondary` has placed after their predecessor
/// in `secondary` (at the start when they come first there).
pub fn merge_order(primary: &[&str], secondary: &[&str]) -> Vec<String> {
    let known: HashSet<&str> = primary.iter().copied().collect();
    let mut after: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
    let mut anchor = None;
    for &n in secondary {
        if known.contains(n) {
            anchor = Some(n);
        } else {
            after.entry(anchor).or_default().push(n);
        }
    }
    let mut out: Vec<String> = after.remove(&None).unwrap_or_default().into_iter().map(String::from).collect();
    for &n in primary {
        out.push(n.to_string());
        out.extend(after.remove(&Some(n)).unwrap_or_default().into_iter().map(String::from));
    }
    out
}

/// (rtol, atol) of one row: the flags, else B's dtype's defaults (the looser of the two
/// dtypes' when they differ; such a row is a difference anyway).
fn row_tolerance(t: Tolerance, a: DType, b: DType) -> (f64, f64) {
    match t {
        Tolerance::Exact => (0.0, 0.0),
        Tolerance::Close { rtol, atol } => {
            let (da, db) = (default_tolerance(a), default_tolerance(b));
            let d = if a == b { db } else { (da.0.max(db.0), da.1.max(db.1)) };
            (rtol.unwrap_or(d.0), atol.unwrap_or(d.1))
        }
    }
}

/// The header line saying what "within tolerance" means here.
fn tolerance_line(t: Tolerance, dtypes: &[DType]) -> String {
    let rule = "within tolerance: |A - B| <= atol + rtol*|B|";
    let nan = "NaN equals NaN only at the same place, an infinity only the same infinity";
    match t {
        Tolerance::Exact => "within tolerance: bit for bit equal (--exact)".into(),
        Tolerance::Close { rtol, atol } => {
            let per: Vec<String> = dtypes
                .iter()
                .filter(|d| !matches!(d, DType::C64 | DType::C128))
                .map(|d| {
                    let (r, a) = default_tolerance(*d);
                    let (r, a) = (rtol.unwrap_or(r), atol.unwrap_or(a));
                    if r == 0.0 && a == 0.0 {
                        format!("{} exact", d.name())
                    } else {
                        format!("{} rtol {r:e} atol {a:e}", d.name())
                    }
                })
                .collect();
            let source = match (rtol, atol) {
                (None, None) => "torch.testing.assert_close's defaults",
                (Some(_), Some(_)) => "--rtol and --atol",
                (Some(_), None) => "--rtol, the dtype's default atol",
                (None, Some(_)) => "--atol, the dtype's default rtol",
            };
            let list = if per.is_empty() { String::new() } else { format!(": {}", per.join(", ")) };
            format!("{rule} ({source}{list}); {nan}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(dtype: DType, shape: &[usize], strides: &[usize], bytes: Vec<u8>) -> View {
        View { dtype, shape: shape.to_vec(), strides: strides.to_vec(), bytes }
    }

    fn f64s(v: &[f64]) -> View {
        view(DType::F64, &[v.len()], &[1], v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    #[test]
    fn tolerance_is_relative_to_b_and_nan_matches_only_nan() {
        let s = compare(&f64s(&[1.0, 2.0 + 1e-5, f64::NAN, f64::NAN, f64::INFINITY]), &f64s(&[1.0, 2.0, f64::NAN, 0.0, f64::INFINITY]), 1e-6, 1e-6, false).unwrap();
        // 1e-5 > 1e-6 + 1e-6*2: outside; NaN vs NaN equal; NaN vs 0 outside; inf vs inf equal.
        assert_eq!((s.outside, s.nan_one_side), (2, 1));
        assert_eq!(s.first.map(|f| f.0), Some(1));
        let s = compare(&f64s(&[f64::INFINITY]), &f64s(&[1e300]), 1.0, 1.0, false).unwrap();
        assert_eq!((s.outside, s.max_abs), (1, f64::INFINITY), "inf is close to nothing finite, whatever the tolerance");
    }

    #[test]
    fn median_and_mean_of_the_differences() {
        let s = compare(&f64s(&[1.0, 2.0, 3.0, 4.0]), &f64s(&[0.0, 0.0, 0.0, 0.0]), 0.0, 10.0, false).unwrap();
        assert_eq!((s.median_abs, s.mean_abs, s.max_abs, s.outside), (2.5, 2.5, 4.0, 0));
        assert_eq!(s.max_rel, f64::INFINITY, "a difference from 0 is infinitely relative");
    }

    #[test]
    fn exact_is_bit_identity() {
        // -0.0 == 0.0 as numbers, not as bits.
        let s = compare(&f64s(&[-0.0]), &f64s(&[0.0]), 0.0, 0.0, true).unwrap();
        assert_eq!(s.outside, 1);
    }

    #[test]
    fn integers_compare_by_their_exact_values_under_any_tolerance() {
        let i64s = |v: i64| view(DType::I64, &[1], &[1], v.to_le_bytes().to_vec());
        let s = compare(&i64s((1 << 53) + 1), &i64s(1 << 53), 0.0, 0.0, false).unwrap();
        assert_eq!(s.outside, 1);
        assert_eq!(s.first, Some((0, Value::Int((1 << 53) + 1), Value::Int(1 << 53))));
        assert_eq!(Value::Int((1 << 53) + 1).show(DType::I64), "9007199254740993");
        let s = compare(&i64s(i64::MAX), &i64s(i64::MIN), 0.0, 0.0, false).unwrap();
        assert_eq!((s.outside, s.max_abs), (1, u64::MAX as f64));
    }

    #[test]
    fn repeated_views_are_counted_not_walked() {
        // 2^40 copies of one element on each side: one pair compared, 2^40 counted.
        let one = |x: f32| view(DType::F32, &[1 << 40], &[0], x.to_le_bytes().to_vec());
        let s = compare(&one(1.0), &one(2.0), 0.0, 0.0, false).unwrap();
        assert_eq!((s.numel, s.outside, s.max_abs, s.median_abs), (1 << 40, 1 << 40, 1.0, 1.0));
        // A row repeated down the rows against distinct rows: the first difference is found
        // at its true place.
        let a = view(DType::F32, &[3, 2], &[0, 1], [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect());
        let b = view(DType::F32, &[3, 2], &[2, 1], [1.0f32, 2.0, 1.0, 2.0, 1.0, 5.0].iter().flat_map(|x| x.to_le_bytes()).collect());
        let s = compare(&a, &b, 0.0, 0.0, false).unwrap();
        assert_eq!((s.outside, s.first.map(|f| f.0)), (1, Some(5)));
        assert_eq!(position(5, &[3, 2]), "[2, 1]");
        // Repeats along different dimensions on each side: more pairs than the files hold.
        let a = view(DType::F32, &[1 << 20, 1 << 20], &[0, 1], vec![0; 4 << 20]);
        let b = view(DType::F32, &[1 << 20, 1 << 20], &[1, 0], vec![0; 4 << 20]);
        assert!(compare(&a, &b, 0.0, 0.0, false).unwrap_err().contains("at most 4 times"));
    }

    #[test]
    fn names_sort_numbers_by_value_and_merge_after_their_predecessor() {
        let mut v = vec!["layer.10.w", "layer.2.w", "layer.1.w", "a"];
        v.sort_by(|x, y| natural_cmp(x, y));
        assert_eq!(v, ["a", "layer.1.w", "layer.2.w", "layer.10.w"]);
        assert_eq!(merge_order(&["x", "y", "z"], &["w", "x", "q", "z", "r"]), ["w", "x", "q", "y", "z", "r"]);
    }
}
