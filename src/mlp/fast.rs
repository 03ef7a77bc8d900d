//! The fast training path: the same arithmetic as [`Network`]'s reference methods, laid out
//! for speed, and bit for bit equal to them (tests/it/mlp.rs checks it).
//!
//! - Weights are stored transposed, `wt`: (n_in, s_out) with the output width padded to a
//!   multiple of 8 (`s_out`), so one input value times one contiguous row updates all the
//!   outputs of a block held in SIMD registers (blocks of 32 lanes, then 8).
//! - The first layer's inputs are sparse: ~80% of MNIST pixels are 0. Forward
//!   (`z = W1 x + b`) and the gradient (`nabla_w1 = delta x^T`) skip the zero pixels, which
//!   is exact: a skipped term is `w * 0.0`, and adding a zero leaves a sum unchanged. Only
//!   the rows of W1 whose pixel is non-zero somewhere in the batch get a gradient, so only
//!   they are updated when there is no L2 decay (`w - c * 0.0 == w`).
//! - Forward, image by image: a block of z lives in registers while the rows of W1 of the
//!   image's non-zero pixels stream in. Gradient, pixel by pixel (batches up to 64 images):
//!   the batch is regrouped by pixel (`gather_batch`), each used row of W1 gets its nabla in
//!   registers, summed over the images in ascending order, and is updated once; the rows go
//!   in order of how many images use them, which keeps the loop exits predictable. Forward
//!   goes image by image because an image's z fits in registers; the gradient pixel by
//!   pixel because a row of W1 does, and is then read and written once per batch
//!   (scripts/bench_mlp measures the epoch). Training images are prefetched a batch ahead.
//! - Every sum runs in the reference's order (over k, over j, over o, ascending, one
//!   accumulator per output lane), and multiplications and additions stay separate (no
//!   FMA contraction), so the results do not depend on the SIMD width. The deeper layers keep
//!   a second, (out, in) copy of their weights so that `w^T delta` is also a per-lane sum.
//! - Kernels are compiled three times (AVX-512, AVX2, baseline x86-64) and chosen at run
//!   time ([`Simd::detect`], overridable with `NNMNIST_SIMD=avx512|avx2|baseline`).
// Index loops over fixed-width lane arrays are the clearest way to write these kernels.
#![allow(clippy::needless_range_loop)]
use super::cost::{sigmoid, Cost};
use super::network::Network;
use super::rule::Sgd;
use super::sparse::{unpack, SparseImages};
use crate::evaluation::{argmax, Evaluation};

/// The output error of one output, [`Cost::delta`] with sigmoid'(z) computed as a (1 - a):
/// bit for bit the same, since a = sigmoid(z), without a second exp.
#[inline(always)]
fn output_delta(cost: Cost, a: f64, y: f64) -> f64 {
    match cost {
        Cost::Quadratic => (a - y) * (a * (1.0 - a)),
        Cost::CrossEntropy => a - y,
    }
}

/// Eight f64 lanes on a 64-byte boundary: one AVX-512 register, one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f64; 8]);

/// An f64 buffer whose start is 64-byte aligned, used as a slice. Where a Vec<f64> starts
/// depends on the allocator's history (on what the process freed before), and a kernel's
/// full-width loads and stores would straddle cache lines or not with it, so its speed
/// would depend on unrelated allocations. Aligned, the speed is the kernels' own.
#[derive(Clone, Debug)]
struct Lanes {
    lines: Vec<Line>,
    len: usize,
}

impl Lanes {
    fn zeros(len: usize) -> Lanes {
        Lanes { lines: vec![Line([0.0; 8]); len.div_ceil(8)], len }
    }
}

impl std::ops::Deref for Lanes {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        // SAFETY: `lines` holds len.div_ceil(8) * 8 >= len initialised f64s, contiguous
        // (Line is repr(C) over [f64; 8] with no padding: 64 bytes, 64-byte aligned).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const f64, self.len) }
    }
}

impl std::ops::DerefMut for Lanes {
    fn deref_mut(&mut self) -> &mut [f64] {
        // SAFETY: as in deref, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut f64, self.len) }
    }
}

/// Pads a width to a multiple of 8 lanes.
fn round_up(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// About how many bytes training a network of `sizes` takes: the weights in f64 four times
/// over (the reference layout, the fast layout, its transposed copy and the gradient), plus
/// per-neuron buffers for batches of up to 256 images. The fast layout pads every layer's
/// width to a multiple of 8 lanes, so a deep network of narrow layers costs 8 times its
/// neuron count in buffers (60,000 one-neuron layers: about 3 GB).
pub fn network_bytes(sizes: &[usize]) -> u128 {
    let pad = |n: usize| round_up(n) as u128;
    let weights: u128 = sizes.windows(2).map(|w| pad(w[0]) * pad(w[1])).sum();
    let neurons: u128 = sizes.iter().map(|&n| pad(n)).sum();
    8 * (4 * weights + 3 * 256 * neurons)
}

/// Which compiled copy of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    Baseline,
}

impl std::fmt::Display for Simd {
    /// The instruction set the kernels are compiled for: "AVX-512", "AVX2", "baseline x86-64".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Simd::Avx512 => "AVX-512",
            Simd::Avx2 => "AVX2",
            Simd::Baseline => "baseline (no AVX2)",
        })
    }
}

impl Simd {
    /// The widest the CPU supports, or `NNMNIST_SIMD` (avx512, avx2, baseline) if set and
    /// supported.
    pub fn detect() -> Simd {
        let best = Simd::best();
        match std::env::var("NNMNIST_SIMD").as_deref() {
            Ok("baseline") => Simd::Baseline,
            Ok("avx2") if best != Simd::Baseline => Simd::Avx2,
            _ => best,
        }
    }

    fn best() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }
}

/// One weight layer. `wt`: (n_in, s_out), `w`: (n_out, s_in) (layers after the first only),
/// `b`: (s_out); per-batch buffers `z`, `a`, `delta`: (cap, s_out). Padding lanes are 0.
#[derive(Clone, Debug)]
struct Layer {
    n_in: usize,
    n_out: usize,
    s_in: usize,
    s_out: usize,
    wt: Lanes,
    w: Lanes,
    b: Lanes,
    z: Lanes,
    a: Lanes,
    delta: Lanes,
}

/// A [`Network`] in the fast layout, with buffers for mini-batches of up to `cap` images.
#[derive(Clone, Debug)]
pub struct FastNet {
    sizes: Vec<usize>,
    layers: Vec<Layer>,
    cap: usize,
    /// The batch by pixel (see gather_batch): (n_in), (n_in * m), (n_in / 64).
    bits: Vec<u64>,
    xb: Lanes,
    union: Vec<u64>,
    /// The union's pixels sorted by how many images of the batch use them, (n_in).
    rows: Vec<u32>,
    /// nabla_w of the first layer, (n_in, s_out), for batches over 64 images; only rows in
    /// `touched` are non-zero.
    nwt0: Lanes,
    mark: Vec<bool>,
    touched: Vec<u32>,
    y: Vec<f64>,
    simd: Simd,
}

impl FastNet {
    /// `net` in the fast layout, for batches of up to `cap` images.
    pub fn from_network(net: &Network, cap: usize) -> FastNet {
        let cap = cap.max(1);
        let nl = net.weights.len();
        let layers = (0..nl)
            .map(|l| {
                let (n_in, n_out) = (net.sizes[l], net.sizes[l + 1]);
                let (s_in, s_out) = (round_up(n_in), round_up(n_out));
                let mut wt = Lanes::zeros(n_in * s_out);
                let mut w = Lanes::zeros(if l > 0 { n_out * s_in } else { 0 });
                for o in 0..n_out {
                    for k in 0..n_in {
                        let v = net.weights[l][o * n_in + k];
                        wt[k * s_out + o] = v;
                        if l > 0 {
                            w[o * s_in + k] = v;
                        }
                    }
                }
                let mut b = Lanes::zeros(s_out);
                b[..n_out].copy_from_slice(&net.biases[l]);
                let buf = || Lanes::zeros(cap * s_out);
                Layer { n_in, n_out, s_in, s_out, wt, w, b, z: buf(), a: buf(), delta: buf() }
            })
            .collect::<Vec<_>>();
        let (n0, s0) = (net.sizes[0], layers[0].s_out);
        FastNet {
            sizes: net.sizes.clone(),
            layers,
            cap,
            bits: vec![0; n0],
            xb: Lanes::zeros(n0 * cap.min(64)),
            union: vec![0; n0.div_ceil(64)],
            rows: vec![0; n0],
            nwt0: Lanes::zeros(n0 * s0),
            mark: vec![false; n0],
            touched: Vec::with_capacity(n0),
            y: vec![0.0; net.sizes[nl]],
            simd: Simd::detect(),
        }
    }

    /// Which kernels run.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Runs the kernels of `simd` from now on (benchmarks and tests) if the CPU has them;
    /// returns false, changing nothing, if it lacks them.
    pub fn set_simd(&mut self, simd: Simd) -> bool {
        let supported = match simd {
            Simd::Baseline => true,
            Simd::Avx2 => Simd::best() != Simd::Baseline,
            Simd::Avx512 => Simd::best() == Simd::Avx512,
        };
        if supported {
            self.simd = simd;
        }
        supported
    }

    /// Back to the reference layout.
    pub fn to_network(&self) -> Network {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for l in &self.layers {
            let mut w = vec![0.0; l.n_out * l.n_in];
            for o in 0..l.n_out {
                for k in 0..l.n_in {
                    w[o * l.n_in + k] = l.wt[k * l.s_out + o];
                }
            }
            weights.push(w);
            biases.push(l.b[..l.n_out].to_vec());
        }
        Network { sizes: self.sizes.clone(), weights, biases }
    }

    /// One SGD step on the images `batch` (indices into `data`), exactly
    /// [`Network::update_mini_batch`]: w <- (1 - eta*lambda/n) w - (eta/m) nabla_w,
    /// b <- b - (eta/m) nabla_b. Returns the batch's mean cost before the step.
    pub fn train_batch(&mut self, data: &SparseImages, batch: &[u32], rule: &Sgd) -> f64 {
        let Sgd { eta, cost, lambda, n } = *rule;
        self.check(data, batch);
        #[cfg(target_arch = "x86_64")]
        match self.simd {
            // SAFETY: `simd` is only Avx512/Avx2 when the CPU has those features.
            Simd::Avx512 => return unsafe { step_avx512(self, data, batch, eta, cost, lambda, n) },
            Simd::Avx2 => return unsafe { step_avx2(self, data, batch, eta, cost, lambda, n) },
            Simd::Baseline => {}
        }
        self.step_impl(data, batch, eta, cost, lambda, n)
    }

    /// Evaluates all of `data`: each image's prediction (the first index of the largest
    /// output), the probability given to it (its output divided by the sum of the outputs),
    /// and the mean cost per image.
    pub fn evaluate(&mut self, data: &SparseImages, cost: Cost) -> Evaluation {
        let all: Vec<u32> = (0..data.len() as u32).collect();
        let mut total = 0.0;
        let (mut predictions, mut confidence) = (Vec::with_capacity(data.len()), Vec::with_capacity(data.len()));
        for chunk in all.chunks(self.cap) {
            self.check(data, chunk);
            #[cfg(target_arch = "x86_64")]
            match self.simd {
                // SAFETY: as in train_batch.
                Simd::Avx512 => unsafe { forward_avx512(self, data, chunk) },
                Simd::Avx2 => unsafe { forward_avx2(self, data, chunk) },
                Simd::Baseline => self.forward_impl(data, chunk),
            }
            #[cfg(not(target_arch = "x86_64"))]
            self.forward_impl(data, chunk);
            let last = &self.layers[self.layers.len() - 1];
            let (k, s) = (last.n_out, last.s_out);
            for (j, &img) in chunk.iter().enumerate() {
                let label = data.labels[img as usize] as usize;
                let a = &last.a[j * s..j * s + k];
                let p = argmax(a);
                predictions.push(p as u8);
                confidence.push(a[p] / a.iter().sum::<f64>());
                for (o, y) in self.y.iter_mut().enumerate() {
                    *y = if o == label { 1.0 } else { 0.0 };
                }
                total += cost.cost(&last.z[j * s..j * s + k], a, &self.y);
            }
        }
        Evaluation { labels: data.labels.clone(), predictions, confidence, loss: total / data.len().max(1) as f64 }
    }

    /// The output activations of one batch, (m, 10) (tests).
    pub fn forward_outputs(&mut self, data: &SparseImages, batch: &[u32]) -> Vec<f64> {
        self.check(data, batch);
        self.forward_impl(data, batch);
        let last = self.layers.last().unwrap();
        (0..batch.len()).flat_map(|j| last.a[j * last.s_out..j * last.s_out + last.n_out].to_vec()).collect()
    }

    fn check(&self, data: &SparseImages, batch: &[u32]) {
        assert_eq!(data.n_in, self.sizes[0], "images have {} inputs, the network takes {}", data.n_in, self.sizes[0]);
        assert!(!batch.is_empty() && batch.len() <= self.cap, "batch of {} images, capacity {}", batch.len(), self.cap);
        assert!(batch.iter().all(|&i| (i as usize) < data.len()), "image index out of range");
    }

    /// Forward pass of `batch` into each layer's z and a (first layer image by image).
    #[inline(always)]
    fn forward_impl(&mut self, data: &SparseImages, batch: &[u32]) {
        {
            let l0 = &mut self.layers[0];
            for (j, &img) in batch.iter().enumerate() {
                let nz = data.image(img as usize);
                let mut off = 0;
                while off + 32 <= l0.s_out {
                    fwd_sparse_block::<32>(l0, j, nz, &data.lut, off);
                    off += 32;
                }
                while off < l0.s_out {
                    fwd_sparse_block::<8>(l0, j, nz, &data.lut, off);
                    off += 8;
                }
                activate(l0, j);
            }
        }
        self.forward_rest(batch.len());
    }

    /// Forward pass through the layers after the first.
    #[inline(always)]
    fn forward_rest(&mut self, m: usize) {
        for l in 1..self.layers.len() {
            let (lo, hi) = self.layers.split_at_mut(l);
            let (prev, cur) = (&lo[l - 1], &mut hi[0]);
            for j in 0..m {
                let x = &prev.a[j * prev.s_out..j * prev.s_out + cur.n_in];
                let mut off = 0;
                while off + 32 <= cur.s_out {
                    fwd_dense_block::<32>(cur, j, x, off);
                    off += 32;
                }
                while off < cur.s_out {
                    fwd_dense_block::<8>(cur, j, x, off);
                    off += 8;
                }
                activate(cur, j);
            }
        }
    }

    /// The batch by pixel (batches of at most 64 images): for each pixel p, `bits[p]` marks
    /// the images where it is non-zero and `xb[p * m + j]` holds its value in image j;
    /// `union` is the bitmap of the pixels non-zero in some image.
    #[inline(always)]
    fn gather_batch(&mut self, data: &SparseImages, batch: &[u32]) {
        let m = batch.len();
        for (j, &img) in batch.iter().enumerate() {
            let nz = data.image(img as usize);
            // The indices ascend: gather each union word in a register, store it when the
            // word changes (an OR into memory per pixel would chain on one location).
            let (mut wi, mut word) = (0usize, 0u64);
            for &e in nz {
                let (p, x) = unpack(e, &data.lut);
                self.bits[p] |= 1u64 << j;
                self.xb[p * m + j] = x;
                if p >> 6 != wi {
                    self.union[wi] |= word;
                    (wi, word) = (p >> 6, 0);
                }
                word |= 1u64 << (p & 63);
            }
            self.union[wi] |= word;
        }
    }

    /// First layer's step, pixel by pixel: nabla_w1[:, p] = sum_j delta1_j x_j[p] (ascending
    /// j, in registers), then w <- decay w - c nabla_w on that row; rows of pixels that are
    /// zero in the whole batch have no gradient (only the decay, when there is one). Clears
    /// the batch bitmaps.
    #[inline(always)]
    fn update_first_pixel_major(&mut self, m: usize, c: f64, decay: f64) {
        let l0 = &mut self.layers[0];
        let s = l0.s_out;
        if decay != 1.0 {
            for (p, row) in l0.wt.chunks_exact_mut(s).enumerate() {
                if self.union[p >> 6] & (1u64 << (p & 63)) == 0 {
                    for w in row {
                        *w = decay * *w - c * 0.0;
                    }
                }
            }
        }
        // Rows in order of how many images use them (a counting sort of the union by
        // popcount), so that the inner loop's trip count repeats and its exit is predicted.
        let mut starts = [0u32; 66];
        for wi in 0..self.union.len() {
            let mut word = self.union[wi];
            while word != 0 {
                let p = wi * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                starts[self.bits[p].count_ones() as usize + 1] += 1;
            }
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let total = starts[65] as usize;
        for wi in 0..self.union.len() {
            let mut word = self.union[wi];
            self.union[wi] = 0;
            while word != 0 {
                let p = wi * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let slot = &mut starts[self.bits[p].count_ones() as usize];
                self.rows[*slot as usize] = p as u32;
                *slot += 1;
            }
        }
        for r in 0..total {
            let p = self.rows[r] as usize;
            let bits = self.bits[p];
            self.bits[p] = 0;
            let mut off = 0;
            while off + 32 <= s {
                grad_pixel_block::<32>(l0, p, bits, &self.xb[p * m..(p + 1) * m], off, c, decay);
                off += 32;
            }
            while off < s {
                grad_pixel_block::<8>(l0, p, bits, &self.xb[p * m..(p + 1) * m], off, c, decay);
                off += 8;
            }
        }
        update_bias(l0, m, c);
    }

    #[inline(always)]
    fn step_impl(&mut self, data: &SparseImages, batch: &[u32], eta: f64, cost: Cost, lambda: f64, n: usize) -> f64 {
        let m = batch.len();
        let pixel_major = m <= 64;
        if pixel_major {
            self.gather_batch(data, batch);
        }
        self.forward_impl(data, batch);
        let nl = self.layers.len();
        // Output error and cost.
        let mut total = 0.0;
        {
            let last = &mut self.layers[nl - 1];
            let (k, s) = (last.n_out, last.s_out);
            for (j, &img) in batch.iter().enumerate() {
                let label = data.labels[img as usize] as usize;
                for (o, y) in self.y.iter_mut().enumerate() {
                    *y = if o == label { 1.0 } else { 0.0 };
                }
                total += cost.cost(&last.z[j * s..j * s + k], &last.a[j * s..j * s + k], &self.y);
                for o in 0..k {
                    last.delta[j * s + o] = output_delta(cost, last.a[j * s + o], self.y[o]);
                }
            }
        }
        let c = eta / m as f64;
        let decay = 1.0 - eta * (lambda / n as f64);
        for l in (1..nl).rev() {
            let (lo, hi) = self.layers.split_at_mut(l);
            let (prev, cur) = (&mut lo[l - 1], &mut hi[0]);
            backprop_delta(cur, prev, m);
            update_dense(cur, prev, m, c, decay);
        }
        if pixel_major {
            self.update_first_pixel_major(m, c, decay);
        } else {
            self.update_first(data, batch, c, decay);
        }
        total / m as f64
    }

    /// nabla_w1 = delta1 x^T over the non-zero pixels, then the step on the rows it touched.
    #[inline(always)]
    fn update_first(&mut self, data: &SparseImages, batch: &[u32], c: f64, decay: f64) {
        let l0 = &mut self.layers[0];
        let s = l0.s_out;
        for (j, &img) in batch.iter().enumerate() {
            let nz = data.image(img as usize);
            for &e in nz {
                let p = (e >> 8) as usize;
                if !self.mark[p] {
                    self.mark[p] = true;
                    self.touched.push(p as u32);
                }
            }
            let d = &l0.delta[j * s..(j + 1) * s];
            let mut off = 0;
            while off + 32 <= s {
                scatter_sparse_block::<32>(&mut self.nwt0, s, d, nz, &data.lut, off);
                off += 32;
            }
            while off < s {
                scatter_sparse_block::<8>(&mut self.nwt0, s, d, nz, &data.lut, off);
                off += 8;
            }
        }
        if decay == 1.0 {
            for &p in &self.touched {
                let r = p as usize * s;
                for (w, nw) in l0.wt[r..r + s].iter_mut().zip(&mut self.nwt0[r..r + s]) {
                    *w = decay * *w - c * *nw;
                    *nw = 0.0;
                }
            }
        } else {
            for (w, nw) in l0.wt.iter_mut().zip(self.nwt0.iter_mut()) {
                *w = decay * *w - c * *nw;
                *nw = 0.0;
            }
        }
        for &p in &self.touched {
            self.mark[p as usize] = false;
        }
        self.touched.clear();
        update_bias(l0, batch.len(), c);
    }
}

/// z[j, off..off+W] = W1[off..off+W, :] x_j + b over the non-zero pixels of x_j.
#[inline(always)]
fn fwd_sparse_block<const W: usize>(l: &mut Layer, j: usize, nz: &[u32], lut: &[f64; 256], off: usize) {
    let s = l.s_out;
    let mut acc = [0.0f64; W];
    for &e in nz {
        let (p, x) = unpack(e, lut);
        // SAFETY: p < n_in (SparseImages holds indices below its n_in, checked equal to
        // sizes[0]) and off + W <= s_out, so the row lies inside wt (n_in * s_out).
        let row = unsafe { &*(l.wt.as_ptr().add(p * s + off) as *const [f64; W]) };
        for i in 0..W {
            acc[i] += row[i] * x;
        }
    }
    let z = &mut l.z[j * s + off..j * s + off + W];
    let b = &l.b[off..off + W];
    for i in 0..W {
        z[i] = acc[i] + b[i];
    }
}

/// W1[off..off+W, p] <- decay W1 - c sum_j delta_j x_j[p] over the images j with pixel p set.
#[inline(always)]
fn grad_pixel_block<const W: usize>(l: &mut Layer, p: usize, bits: u64, xp: &[f64], off: usize, c: f64, decay: f64) {
    let s = l.s_out;
    let mut acc = [0.0f64; W];
    let mut bits = bits;
    while bits != 0 {
        let j = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        let x = xp[j];
        let d: &[f64; W] = l.delta[j * s + off..j * s + off + W].try_into().unwrap();
        for i in 0..W {
            acc[i] += d[i] * x;
        }
    }
    let row: &mut [f64; W] = (&mut l.wt[p * s + off..p * s + off + W]).try_into().unwrap();
    for i in 0..W {
        row[i] = decay * row[i] - c * acc[i];
    }
}

/// z[j, off..off+W] = W[off..off+W, :] x + b, x dense (n_in).
#[inline(always)]
fn fwd_dense_block<const W: usize>(l: &mut Layer, j: usize, x: &[f64], off: usize) {
    let s = l.s_out;
    let mut acc = [0.0f64; W];
    for (k, &xk) in x.iter().enumerate() {
        let row: &[f64; W] = l.wt[k * s + off..k * s + off + W].try_into().unwrap();
        for i in 0..W {
            acc[i] += row[i] * xk;
        }
    }
    let z = &mut l.z[j * s + off..j * s + off + W];
    let b = &l.b[off..off + W];
    for i in 0..W {
        z[i] = acc[i] + b[i];
    }
}

/// a[j] = sigmoid(z[j]) on the real lanes (computed on all, vectorised); padding lanes 0.
#[inline(always)]
fn activate(l: &mut Layer, j: usize) {
    let s = l.s_out;
    let (z, a) = (&l.z[j * s..(j + 1) * s], &mut l.a[j * s..(j + 1) * s]);
    for (a, &z) in a.iter_mut().zip(z) {
        *a = sigmoid(z);
    }
    a[l.n_out..].fill(0.0);
}

/// nabla_w1[p, off..off+W] += delta[off..off+W] * x_p for each non-zero pixel p of one image.
#[inline(always)]
fn scatter_sparse_block<const W: usize>(nwt: &mut [f64], s: usize, d: &[f64], nz: &[u32], lut: &[f64; 256], off: usize) {
    let d: &[f64; W] = d[off..off + W].try_into().unwrap();
    for &e in nz {
        let (p, x) = unpack(e, lut);
        // SAFETY: as in fwd_sparse_block; nwt has the shape of wt.
        let row = unsafe { &mut *(nwt.as_mut_ptr().add(p * s + off) as *mut [f64; W]) };
        for i in 0..W {
            row[i] += d[i] * x;
        }
    }
}

/// delta_prev = (W^T delta) * sigmoid'(z_prev), sigmoid' as a_prev (1 - a_prev).
/// cur.delta: (m, s_out), prev.delta: (m, s_in).
#[inline(always)]
fn backprop_delta(cur: &Layer, prev: &mut Layer, m: usize) {
    let s_in = cur.s_in;
    for j in 0..m {
        let d = &cur.delta[j * cur.s_out..j * cur.s_out + cur.n_out];
        let mut off = 0;
        while off + 32 <= s_in {
            delta_block::<32>(cur, prev, j, d, off);
            off += 32;
        }
        while off < s_in {
            delta_block::<8>(cur, prev, j, d, off);
            off += 8;
        }
    }
}

#[inline(always)]
fn delta_block<const W: usize>(cur: &Layer, prev: &mut Layer, j: usize, d: &[f64], off: usize) {
    let s_in = cur.s_in;
    let mut acc = [0.0f64; W];
    for (o, &dj) in d.iter().enumerate() {
        let row: &[f64; W] = cur.w[o * s_in + off..o * s_in + off + W].try_into().unwrap();
        for i in 0..W {
            acc[i] += row[i] * dj;
        }
    }
    let a = &prev.a[j * s_in + off..j * s_in + off + W];
    let out = &mut prev.delta[j * s_in + off..j * s_in + off + W];
    for i in 0..W {
        out[i] = acc[i] * (a[i] * (1.0 - a[i]));
    }
}

/// nabla_w = delta^T a_prev, then w <- decay w - c nabla_w in both layouts, and the biases.
#[inline(always)]
fn update_dense(cur: &mut Layer, prev: &Layer, m: usize, c: f64, decay: f64) {
    let s = cur.s_out;
    for k in 0..cur.n_in {
        let mut off = 0;
        while off + 32 <= s {
            update_dense_block::<32>(cur, prev, m, k, off, c, decay);
            off += 32;
        }
        while off < s {
            update_dense_block::<8>(cur, prev, m, k, off, c, decay);
            off += 8;
        }
    }
    update_bias(cur, m, c);
}

#[inline(always)]
fn update_dense_block<const W: usize>(cur: &mut Layer, prev: &Layer, m: usize, k: usize, off: usize, c: f64, decay: f64) {
    let s = cur.s_out;
    let mut acc = [0.0f64; W];
    for j in 0..m {
        let a = prev.a[j * prev.s_out + k];
        let d: &[f64; W] = cur.delta[j * s + off..j * s + off + W].try_into().unwrap();
        for i in 0..W {
            acc[i] += d[i] * a;
        }
    }
    let row: &mut [f64; W] = (&mut cur.wt[k * s + off..k * s + off + W]).try_into().unwrap();
    for i in 0..W {
        row[i] = decay * row[i] - c * acc[i];
    }
    for i in 0..W.min(cur.n_out.saturating_sub(off)) {
        cur.w[(off + i) * cur.s_in + k] = row[i];
    }
}

/// b <- b - c * sum_j delta[j].
#[inline(always)]
fn update_bias(l: &mut Layer, m: usize, c: f64) {
    let s = l.s_out;
    for o in 0..l.n_out {
        let mut nb = 0.0;
        for j in 0..m {
            nb += l.delta[j * s + o];
        }
        l.b[o] -= c * nb;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn step_avx512(net: &mut FastNet, data: &SparseImages, batch: &[u32], eta: f64, cost: Cost, lambda: f64, n: usize) -> f64 {
    net.step_impl(data, batch, eta, cost, lambda, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn step_avx2(net: &mut FastNet, data: &SparseImages, batch: &[u32], eta: f64, cost: Cost, lambda: f64, n: usize) -> f64 {
    net.step_impl(data, batch, eta, cost, lambda, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_avx512(net: &mut FastNet, data: &SparseImages, batch: &[u32]) {
    net.forward_impl(data, batch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_avx2(net: &mut FastNet, data: &SparseImages, batch: &[u32]) {
    net.forward_impl(data, batch)
}
