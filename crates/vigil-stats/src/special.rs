//! Special functions the e-values need: log-gamma, log-beta and the log of
//! the regularized incomplete beta function.

/// ln Gamma(x) for x > 0.
///
/// From 8 to 2^58 this is `libm::lgamma`'s own formula (musl's: Stirling's
/// series with its minimax coefficients) with the platform's `ln` in place
/// of libm's software `log`, which took half of each call: the judge's
/// quantile bands evaluate a few dozen per analysis and tick (about 4% of
/// a tick). The two agree to within a few ulps (tested); elsewhere it is
/// `libm::lgamma`.
pub fn ln_gamma(x: f64) -> f64 {
    // musl's constants, by their bits.
    const W0: f64 = f64::from_bits(0x3FDA_CFE3_90C9_7D69);
    const W1: f64 = f64::from_bits(0x3FB5_5555_5555_553B);
    const W2: f64 = f64::from_bits(0xBF66_C16C_16B0_2E5C);
    const W3: f64 = f64::from_bits(0x3F4A_019F_98CF_38B6);
    const W4: f64 = f64::from_bits(0xBF43_80CB_8C0F_E741);
    const W5: f64 = f64::from_bits(0x3F4B_67BA_4CDA_D5D1);
    const W6: f64 = f64::from_bits(0xBF5A_B89D_0B9E_43E4);
    // 2^58
    const STIRLING_END: f64 = 288_230_376_151_711_744.0;
    if (8.0..STIRLING_END).contains(&x) {
        let z = 1.0 / x;
        let y = z * z;
        let w = W0 + z * (W1 + y * (W2 + y * (W3 + y * (W4 + y * (W5 + y * W6)))));
        (x - 0.5) * (x.ln() - 1.0) + w
    } else {
        libm::lgamma(x)
    }
}

/// ln B(a, b) = ln Gamma(a) + ln Gamma(b) - ln Gamma(a + b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln of the multivariate beta function sum ln Gamma(v_i) - ln Gamma(sum v_i),
/// as `savvi.special.logbeta`.
pub fn ln_multi_beta(v: &[f64]) -> f64 {
    v.iter().map(|&x| ln_gamma(x)).sum::<f64>() - ln_gamma(v.iter().sum())
}

/// ln I_x(a, b) and ln (1 - I_x(a, b)), the regularized incomplete beta
/// function and its complement, each accurate even when tiny.
///
/// The continued fraction (Numerical Recipes' `betacf`, modified Lentz)
/// converges quickly for x < (a+1)/(a+b+2); otherwise it is evaluated for
/// the mirrored arguments. The side it was evaluated on is returned as an
/// exact log; the other side comes from `ln_1p(-exp(..))`.
pub fn ln_beta_inc_both(a: f64, b: f64, x: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (f64::NEG_INFINITY, 0.0);
    }
    if x >= 1.0 {
        return (0.0, f64::NEG_INFINITY);
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        let ln_i = ln_front + beta_cf(a, b, x).ln() - a.ln();
        (ln_i, (-ln_i.exp()).ln_1p())
    } else {
        let ln_ic = ln_front + beta_cf(b, a, 1.0 - x).ln() - b.ln();
        ((-ln_ic.exp()).ln_1p(), ln_ic)
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const MAX_ITER: usize = 100_000;
    const EPS: f64 = 1e-16;
    const FPMIN: f64 = 1e-300;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < FPMIN {
        d = FPMIN;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_agrees_with_libm() {
        // Every argument the judge's bands and counts tests take is a
        // prior (1 to 100) plus a count; sweep those, the switch at 8 and
        // large values, on a grid with fractional parts.
        let mut x = 0.01;
        let mut worst = 0.0f64;
        while x < 1e12 {
            let (ours, theirs) = (ln_gamma(x), libm::lgamma(x));
            let scale = theirs.abs().max(1.0);
            worst = worst.max((ours - theirs).abs() / scale);
            x *= 1.000_37;
            x += 0.013;
        }
        assert!(
            worst <= 4.0 * f64::EPSILON,
            "worst relative difference {worst:e}"
        );
        // Known values: ln Gamma(8) = ln 5040, ln Gamma(100) (scipy.special.gammaln).
        assert!((ln_gamma(8.0) - 5040f64.ln()).abs() < 1e-14);
        assert!((ln_gamma(100.0) - 359.134_205_369_575_4).abs() < 1e-12);
        assert!((ln_gamma(1e300) - libm::lgamma(1e300)).abs() == 0.0);
    }

    #[test]
    fn incomplete_beta_known_values() {
        // scipy.special.betainc(2, 3, 0.4) = 0.5248
        let (li, lc) = ln_beta_inc_both(2.0, 3.0, 0.4);
        assert!((li.exp() - 0.5248).abs() < 1e-14);
        assert!((lc.exp() - 0.4752).abs() < 1e-14);
        // scipy.special.betainc(0.5, 0.5, 0.5) = 0.5 (arcsine law)
        let (li, _) = ln_beta_inc_both(0.5, 0.5, 0.5);
        assert!((li.exp() - 0.5).abs() < 1e-14);
        // Far tail: I_0.01(50, 50) is about 1e-71; its log must be finite.
        let (li, lc) = ln_beta_inc_both(50.0, 50.0, 0.01);
        assert!(li < -100.0 && li.is_finite());
        assert!(lc < 0.0 && lc.abs() < 1e-60);
    }
}
