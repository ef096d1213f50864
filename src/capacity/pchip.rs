//! vLLM `bench sweep serve_sla`'s search, replayed on our probes for comparison
//! (`[capacity] strategy = "serve_sla"`): probe the most allowed rate, then 1 request/s, then
//! repeatedly the integer part of the first root of a monotone cubic (PCHIP, as scipy's
//! `PchipInterpolator`) through every (rate, margin) seen, one higher when that rate was probed
//! already; stop when the lowest failing and the highest passing rate are 1 request/s apart.
//!
//! Pure arithmetic: the interpolant and its first root.

/// Fritsch–Carlson slopes at the nodes (scipy's `PchipInterpolator`): zero where the data
/// turns, else a weighted harmonic mean; the ends by a shape-preserving three-point formula.
fn slopes(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len();
    let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let m: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
    if n == 2 {
        return vec![m[0], m[0]];
    }
    let mut d = vec![0.0; n];
    for k in 1..n - 1 {
        let (a, b) = (m[k - 1], m[k]);
        if a * b > 0.0 {
            let (w1, w2) = (2.0 * h[k] + h[k - 1], h[k] + 2.0 * h[k - 1]);
            d[k] = (w1 + w2) / (w1 / a + w2 / b);
        }
    }
    let edge = |h0: f64, h1: f64, m0: f64, m1: f64| {
        let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
        if d.signum() != m0.signum() || m0 == 0.0 {
            0.0
        } else if m0.signum() != m1.signum() && d.abs() > 3.0 * m0.abs() {
            3.0 * m0
        } else {
            d
        }
    };
    d[0] = edge(h[0], h[1], m[0], m[1]);
    d[n - 1] = edge(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
    d
}

/// The cubic Hermite piece on `[x0, x1]` at `t`.
fn hermite(x0: f64, x1: f64, y0: f64, y1: f64, d0: f64, d1: f64, t: f64) -> f64 {
    let h = x1 - x0;
    let s = (t - x0) / h;
    let (s2, s3) = (s * s, s * s * s);
    (2.0 * s3 - 3.0 * s2 + 1.0) * y0
        + (s3 - 2.0 * s2 + s) * h * d0
        + (-2.0 * s3 + 3.0 * s2) * y1
        + (s3 - s2) * h * d1
}

/// The first root, in ascending `x`, of the PCHIP interpolant through the points (sorted by
/// `x`, distinct), within their span; `None` when it does not cross zero.
pub fn first_root(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (x, y): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
    let d = slopes(&x, &y);
    for k in 0..x.len() - 1 {
        if y[k] == 0.0 {
            return Some(x[k]);
        }
        let f = |t: f64| hermite(x[k], x[k + 1], y[k], y[k + 1], d[k], d[k + 1], t);
        // A cubic piece crosses zero at most three times: sampling finely finds the first
        // sign change, bisection narrows it.
        const SAMPLES: usize = 64;
        let mut a = x[k];
        for i in 1..=SAMPLES {
            let b = match i {
                SAMPLES => x[k + 1],
                _ => x[k] + (x[k + 1] - x[k]) * i as f64 / SAMPLES as f64,
            };
            if f(b) == 0.0 {
                return Some(b);
            }
            if f(a).signum() != f(b).signum() {
                return Some(bisect(&f, a, b));
            }
            a = b;
        }
    }
    None
}

fn bisect(f: &dyn Fn(f64) -> f64, mut a: f64, mut b: f64) -> f64 {
    for _ in 0..60 {
        let mid = (a + b) / 2.0;
        if f(mid) == 0.0 {
            return mid;
        }
        if f(a).signum() == f(mid).signum() {
            a = mid;
        } else {
            b = mid;
        }
    }
    (a + b) / 2.0
}

/// serve_sla's next rate from its history (rate → margin, positive failing as vLLM counts
/// it), or `None` when the interpolant has no root (vLLM's own loop then raises).
pub fn next_rate(history: &[(f64, f64)], min: f64, max: f64) -> Option<f64> {
    match history.len() {
        0 => return Some(max),
        1 => return Some(min),
        _ => {}
    }
    let mut points = history.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let root = first_root(&points)?.floor();
    Some(match history.iter().any(|(x, _)| *x == root) {
        true => root + 1.0,
        false => root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpolant_passes_through_its_points_and_keeps_monotone_data_monotone() {
        let pts = [(1.0, -3.0), (4.0, -1.0), (8.0, 2.0), (64.0, 9.0)];
        let (x, y): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
        let d = slopes(&x, &y);
        let mut last = f64::NEG_INFINITY;
        for k in 0..3 {
            for i in 0..=20 {
                let t = x[k] + (x[k + 1] - x[k]) * f64::from(i) / 20.0;
                let v = hermite(x[k], x[k + 1], y[k], y[k + 1], d[k], d[k + 1], t);
                assert!(v >= last - 1e-9, "monotone at {t}: {v} after {last}");
                last = v;
            }
            assert!(
                (hermite(x[k], x[k + 1], y[k], y[k + 1], d[k], d[k + 1], x[k]) - y[k]).abs()
                    < 1e-12
            );
        }
        let r = first_root(&pts).unwrap();
        assert!(r > 4.0 && r < 8.0, "{r}");
    }

    #[test]
    fn two_points_interpolate_linearly() {
        let r = first_root(&[(1.0, -1.0), (65536.0, 1.0)]).unwrap();
        assert!((r - 32768.5).abs() < 1e-6, "{r}");
        assert_eq!(first_root(&[(1.0, 1.0), (2.0, 3.0)]), None);
    }

    /// serve_sla's order: the most allowed rate, then 1, then the root's integer part (one
    /// higher when already probed).
    #[test]
    fn serve_slas_probe_order() {
        assert_eq!(next_rate(&[], 1.0, 64.0), Some(64.0));
        assert_eq!(next_rate(&[(64.0, 5.0)], 1.0, 64.0), Some(1.0));
        let h = [(64.0, 5.0), (1.0, -1.0)];
        // Linear through (1, −1) and (64, 5): root at 11.5.
        assert_eq!(next_rate(&h, 1.0, 64.0), Some(11.0));
        let h = [(64.0, 5.0), (1.0, -1.0), (11.0, 0.0)];
        assert_eq!(next_rate(&h, 1.0, 64.0), Some(12.0));
    }
}
