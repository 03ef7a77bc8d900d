//! MNIST images as the fast path reads them: the non-zero pixels only.
use crate::data::Split;

/// Images as sparse rows: each non-zero pixel of an image is one u32, its index times 256
/// plus its u8 value (the value used is `value / 255` in f64, as nn.py reads pixels). Four
/// bytes per non-zero pixel keep the training set (50,000 images, ~19% non-zero) at
/// ~30 MB, and one image contiguous, so that the next batch can be prefetched.
#[derive(Clone, Debug)]
pub struct SparseImages {
    pub(super) n_in: usize,
    start: Vec<u32>,
    nz: Vec<u32>,
    pub(super) labels: Vec<u8>,
    pub(super) lut: [f64; 256],
}

impl SparseImages {
    /// The first `n` images of `split` (all of them if it has fewer).
    pub fn from_split(split: &Split, n: usize) -> SparseImages {
        let n = n.min(split.len());
        SparseImages::from_pixels(&split.images[..n * crate::data::PIXELS], crate::data::PIXELS, &split.labels[..n])
    }

    /// Images of `n_in` u8 pixels each, one after the other; `labels.len()` of them.
    pub fn from_pixels(pixels: &[u8], n_in: usize, labels: &[u8]) -> SparseImages {
        assert!(n_in < (1 << 24) && pixels.len() == n_in * labels.len(), "from_pixels: {} pixels for {} images of {n_in}", pixels.len(), labels.len());
        let nnz = pixels.iter().filter(|&&p| p != 0).count();
        assert!(nnz < u32::MAX as usize, "too many pixels");
        let mut s = SparseImages {
            n_in,
            start: Vec::with_capacity(labels.len() + 1),
            nz: Vec::with_capacity(nnz),
            labels: labels.to_vec(),
            lut: std::array::from_fn(|v| v as f64 / 255.0),
        };
        s.start.push(0);
        for row in pixels.chunks_exact(n_in.max(1)).take(labels.len()) {
            for (p, &v) in row.iter().enumerate() {
                if v != 0 {
                    s.nz.push(((p as u32) << 8) | v as u32);
                }
            }
            s.start.push(s.nz.len() as u32);
        }
        s
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Fraction of the pixels that are non-zero.
    pub fn density(&self) -> f64 {
        self.nz.len() as f64 / (self.len() * self.n_in).max(1) as f64
    }

    /// The packed non-zero pixels of image `i`.
    #[inline(always)]
    pub(super) fn image(&self, i: usize) -> &[u32] {
        &self.nz[self.start[i] as usize..self.start[i + 1] as usize]
    }

    /// Asks the CPU to bring `images` into cache (a hint; the shuffled order makes each
    /// image a cache miss otherwise). The caller passes the next batch while working on
    /// this one.
    #[inline]
    pub fn prefetch(&self, images: &[u32]) {
        #[cfg(target_arch = "x86_64")]
        for &i in images {
            if let Some(img) = self.start.get(i as usize..i as usize + 2) {
                let (a, b) = (img[0] as usize, img[1] as usize);
                let mut k = a;
                while k < b {
                    // SAFETY: a prefetch of an address inside `nz`; it never faults.
                    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(self.nz.as_ptr().add(k) as *const i8) };
                    k += 16;
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = images;
    }
}

/// Pixel index and value of one packed entry.
#[inline(always)]
pub(super) fn unpack(e: u32, lut: &[f64; 256]) -> (usize, f64) {
    ((e >> 8) as usize, lut[(e & 255) as usize])
}
