//! numpy's summation, reproduced so sums over pixels and lists round as LayerD's do.

/// numpy's inner-loop block size for pairwise summation (`PW_BLOCKSIZE`).
pub(super) const PW_BLOCKSIZE: usize = 128;

/// numpy's `pairwise_sum` (`loops_utils.h`) over the elements `lo..lo + n`, the element at
/// index `i` being `f(i)`; `K` arrays of the same length are summed at once (their trees
/// are the same), so nothing is stored.
pub(super) fn pairwise_by<const K: usize>(lo: usize, n: usize, f: &impl Fn(usize) -> [f64; K]) -> [f64; K] {
    if n < 8 {
        let mut res = [0.0; K];
        for i in lo..lo + n {
            let v = f(i);
            for k in 0..K {
                res[k] += v[k];
            }
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [[0.0; K]; 8];
        for (j, lane) in r.iter_mut().enumerate() {
            *lane = f(lo + j);
        }
        let mut i = 8;
        while i < n - n % 8 {
            for (j, lane) in r.iter_mut().enumerate() {
                let v = f(lo + i + j);
                for k in 0..K {
                    lane[k] += v[k];
                }
            }
            i += 8;
        }
        let mut res = [0.0; K];
        for k in 0..K {
            res[k] = ((r[0][k] + r[1][k]) + (r[2][k] + r[3][k])) + ((r[4][k] + r[5][k]) + (r[6][k] + r[7][k]));
        }
        while i < n {
            let v = f(lo + i);
            for k in 0..K {
                res[k] += v[k];
            }
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        let a = pairwise_by(lo, n2, f);
        let b = pairwise_by(lo + n2, n - n2, f);
        let mut res = [0.0; K];
        for k in 0..K {
            res[k] = a[k] + b[k];
        }
        res
    }
}

/// `np.sum` of a contiguous float64 array of `n` elements (numpy 2.3 and later: one
/// pairwise sum over the whole array, added to the identity 0.0).
pub(super) fn np_sum_by<const K: usize>(n: usize, f: &impl Fn(usize) -> [f64; K]) -> [f64; K] {
    pairwise_by(0, n, f).map(|v| 0.0 + v)
}

/// `np.sum(values)` of a list of float64.
pub fn np_sum(values: &[f64]) -> f64 {
    np_sum_by(values.len(), &|i| [values[i]])[0]
}

/// `np.mean(values)`; the caller never passes an empty list.
pub fn np_mean(values: &[f64]) -> f64 {
    np_sum(values) / values.len() as f64
}
