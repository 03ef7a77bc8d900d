//! A hand-written e^x, so that the MLP's sigmoid vectorises and gives the same bits on every
//! machine and SIMD width (a libm call does neither).

/// e^x for |x| <= 700, within 1 ulp or so of the correctly rounded value (tests/it/mlp.rs
/// checks it against the C library), from additions, multiplications and bit operations
/// only: the compiler vectorises it, and it gives the same bits on every machine and SIMD
/// width (a libm call does neither). x = n ln 2 + r with n = round(x / ln 2) (the 1.5 * 2^52
/// trick) and |r| <= ln2 / 2 (Cody and Waite's two-part ln 2); e^r by its Taylor
/// polynomial of degree 13 (truncation below 1e-17 relative); times 2^n built in the
/// exponent bits. NaN gives NaN; the sigmoid never passes |x| > 100.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const MAGIC: f64 = 6755399441055744.0; // 1.5 * 2^52
    // fdlibm's ln2_hi (its low 32 bits zero, so n * LN2_HI is exact) and ln2_lo.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        0.16666666666666666,
        0.041666666666666664,
        0.008333333333333333,
        0.001388888888888889,
        0.0001984126984126984,
        2.48015873015873e-05,
        2.7557319223985893e-06,
        2.755731922398589e-07,
        2.505210838544172e-08,
        2.08767569878681e-09,
        1.6059043836821613e-10,
    ];
    let t = x * std::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = C[13];
    for k in (0..13).rev() {
        p = p * r + C[k];
    }
    let ni = (t.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    p * f64::from_bits((ni.wrapping_add(1023) as u64) << 52)
}
