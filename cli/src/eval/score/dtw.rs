//! Dynamic time warping between the predicted and the true layer sequences, with LayerD's
//! step pattern and tie-breaking.

/// LayerD's `dynamic_time_warping` on a cost matrix `c[i][j]` (prediction i, reference j):
/// steps (1,0), (0,1), (1,1) with unit weights; the backtrack prefers the diagonal, then
/// the step that lowers the prediction index. The path runs from (0, 0) to (n-1, m-1).
pub fn dtw_path(c: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let n = c.len();
    let m = c.first().map_or(0, Vec::len);
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let mut d = vec![vec![0.0f64; m]; n];
    d[0][0] = c[0][0];
    for i in 1..n {
        d[i][0] = d[i - 1][0] + c[i][0];
    }
    for j in 1..m {
        d[0][j] = d[0][j - 1] + c[0][j];
    }
    for i in 1..n {
        for j in 1..m {
            d[i][j] = c[i][j] + py_min3(d[i - 1][j], d[i][j - 1], d[i - 1][j - 1]);
        }
    }
    let (mut i, mut j) = (n - 1, m - 1);
    let mut path = vec![(i, j)];
    loop {
        if i == 0 && j == 0 {
            break;
        } else if i == 0 {
            j -= 1;
        } else if j == 0 {
            i -= 1;
        } else if d[i - 1][j - 1] <= d[i - 1][j] && d[i - 1][j - 1] <= d[i][j - 1] {
            i -= 1;
            j -= 1;
        } else if d[i - 1][j] <= d[i - 1][j - 1] && d[i - 1][j] <= d[i][j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
        path.push((i, j));
    }
    path.reverse();
    path
}

/// Python's `min(a, b, c)`: the first of the smallest.
pub(super) fn py_min3(a: f64, b: f64, c: f64) -> f64 {
    let mut m = a;
    if b < m {
        m = b;
    }
    if c < m {
        m = c;
    }
    m
}
