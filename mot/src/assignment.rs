//! Optimal assignment (the Hungarian / Kuhn-Munkres problem) on a dense,
//! rectangular cost matrix, by shortest augmenting paths with potentials
//! (O(n²·m) for n ≤ m).
//!
//! Two ways of saying "these two may not be paired" are offered, because the
//! two users of this module need different semantics:
//! - [`solve`]: non-finite costs are forbidden. The result is a maximum
//!   cardinality matching over the allowed pairs with minimum total cost
//!   among those (py-motmetrics' semantics: forbidden pairs get a cost larger
//!   than every allowed assignment together, and are dropped afterwards).
//! - [`solve_gated`]: costs above a threshold are clamped just above it and
//!   such pairs are dropped afterwards (Deep SORT's `min_cost_matching`).

/// Minimum-cost assignment of a `rows × cols` row-major matrix where
/// non-finite entries (NaN, ±∞) are forbidden pairs.
///
/// Returns, for each row, the column it is paired with. Allowed pairs are
/// matched as many as possible, then at least total cost.
///
/// # Panics
/// Never on data; a `cost` slice shorter than `rows * cols` yields all `None`.
pub fn solve(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    if rows == 0 || cols == 0 || cost.len() < rows * cols {
        return vec![None; rows];
    }
    let cost = &cost[..rows * cols];
    let allowed_sum: f64 = cost.iter().filter(|c| c.is_finite()).map(|c| c.abs()).sum();
    // Larger than any sum of allowed costs, so one forbidden pair less always
    // wins over any change in allowed costs.
    let big = 2.0 * allowed_sum + 1.0;
    let filled: Vec<f64> = cost
        .iter()
        .map(|&c| if c.is_finite() { c } else { big })
        .collect();
    let mut out = solve_dense(&filled, rows, cols);
    for (r, col) in out.iter_mut().enumerate() {
        if let Some(c) = *col
            && !cost[r * cols + c].is_finite()
        {
            *col = None;
        }
    }
    out
}

/// Minimum-cost assignment where pairs costing more than `max_cost` (or a
/// non-finite cost) are not matched: they count as `max_cost + 1e-5` in the
/// solve and are dropped from the result. See [`solve_gated_sparse`].
pub fn solve_gated(cost: &[f64], rows: usize, cols: usize, max_cost: f64) -> Vec<Option<usize>> {
    if rows == 0 || cols == 0 || cost.len() < rows * cols {
        return vec![None; rows];
    }
    let edges: Vec<(usize, usize, f64)> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c, cost[r * cols + c])))
        .filter(|&(_, _, v)| v <= max_cost)
        .collect();
    solve_gated_sparse(rows, cols, &edges, max_cost)
}

/// [`solve_gated`] over the admissible pairs only: `edges` are
/// `(row, column, cost)`; every pair not listed (or costing more than
/// `max_cost`, or not finite) is inadmissible. Duplicate pairs keep the
/// cheapest cost; out-of-range indices are ignored.
///
/// The problem is split into the connected components of the admissible
/// pairs and each is solved alone. This is exact (an inadmissible pair costs
/// the same constant wherever it sits, so the objective is a sum over
/// components) and keeps sparse problems — many tracks, few plausible
/// detections each — far from the cubic cost of one dense solve.
pub fn solve_gated_sparse(
    rows: usize,
    cols: usize,
    edges: &[(usize, usize, f64)],
    max_cost: f64,
) -> Vec<Option<usize>> {
    let mut out = vec![None; rows];
    let edges: Vec<(usize, usize, f64)> = edges
        .iter()
        .copied()
        .filter(|&(r, c, v)| r < rows && c < cols && v <= max_cost)
        .collect();
    if edges.is_empty() {
        return out;
    }
    // Union-find over rows (0..rows) and columns (rows..rows+cols).
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(r, c, _) in &edges {
        let (a, b) = (find(&mut parent, r), find(&mut parent, rows + c));
        if a != b {
            parent[a] = b;
        }
    }
    // Components, each with its rows and columns (local indices) and edges.
    // group_of_root: component of a root; member_of: component a node joined.
    let mut group_of_root = vec![usize::MAX; rows + cols];
    let mut member_of = vec![usize::MAX; rows + cols];
    let mut local = vec![0usize; rows + cols];
    let mut groups: Vec<Component> = Vec::new();
    for &(r, c, v) in &edges {
        let root = find(&mut parent, r);
        if group_of_root[root] == usize::MAX {
            group_of_root[root] = groups.len();
            groups.push((Vec::new(), Vec::new(), Vec::new()));
        }
        let g = group_of_root[root];
        for node in [r, rows + c] {
            if member_of[node] != g {
                member_of[node] = g;
                let (grows, gcols, _) = &mut groups[g];
                if node < rows {
                    local[node] = grows.len();
                    grows.push(node);
                } else {
                    local[node] = gcols.len();
                    gcols.push(node - rows);
                }
            }
        }
        groups[g].2.push((local[r], local[rows + c], v));
    }
    let clamp = max_cost + 1e-5;
    for (group_rows, group_cols, group_edges) in groups {
        let (n, m) = (group_rows.len(), group_cols.len());
        let mut sub = vec![clamp; n * m];
        let mut admissible = vec![false; n * m];
        for (r, c, v) in group_edges {
            let cell = r * m + c;
            if !admissible[cell] || v < sub[cell] {
                sub[cell] = v;
                admissible[cell] = true;
            }
        }
        for (i, col) in solve_dense(&sub, n, m).into_iter().enumerate() {
            if let Some(j) = col
                && admissible[i * m + j]
            {
                out[group_rows[i]] = Some(group_cols[j]);
            }
        }
    }
    out
}

/// One connected component: its rows, its columns, and its edges in local indices.
type Component = (Vec<usize>, Vec<usize>, Vec<(usize, usize, f64)>);

/// Core solver over finite costs: every row is paired when rows ≤ cols,
/// otherwise every column is.
fn solve_dense(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    if rows <= cols {
        let row_to_col = augment(|r, c| cost[r * cols + c], rows, cols);
        row_to_col.into_iter().map(Some).collect()
    } else {
        // Transpose: columns become the smaller side.
        let col_to_row = augment(|c, r| cost[r * cols + c], cols, rows);
        let mut out = vec![None; rows];
        for (c, r) in col_to_row.into_iter().enumerate() {
            out[r] = Some(c);
        }
        out
    }
}

/// Shortest augmenting paths with dual potentials for `n ≤ m`; returns the
/// column of every row. 1-based internally, index 0 is the virtual source.
fn augment(cost: impl Fn(usize, usize) -> f64, n: usize, m: usize) -> Vec<usize> {
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    // p[j]: the row matched to column j (0 = free); way[j]: previous column on the path.
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut minv = vec![0.0f64; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        minv.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            if j1 == 0 {
                // Only reachable with non-finite reduced costs, which callers
                // exclude; pick the first free column to stay total.
                j1 = (1..=m).find(|&j| !used[j]).unwrap_or(1);
                delta = 0.0;
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_to_col = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            row_to_col[p[j] - 1] = j - 1;
        }
    }
    row_to_col
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| cost[r * cols + c]))
            .sum()
    }

    /// Every assignment of `rows` rows into `cols` columns, by brute force.
    fn brute_force(cost: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(r: usize, rows: usize, cols: usize, cost: &[f64], used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r * cols + c] + go(r + 1, rows, cols, cost, used));
                    used[c] = false;
                }
            }
            best
        }
        go(0, rows, cols, cost, &mut vec![false; cols])
    }

    #[test]
    fn square_textbook_example() {
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = solve(&cost, 3, 3);
        assert_eq!(a, vec![Some(1), Some(0), Some(2)]);
        assert_eq!(total(&cost, 3, &a), 5.0);
    }

    #[test]
    fn matches_brute_force_on_pseudo_random_rectangles() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 10.0
        };
        for (rows, cols) in [(1, 1), (2, 5), (4, 4), (5, 3), (6, 6), (3, 7)] {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
                let a = solve(&cost, rows, cols);
                let matched = a.iter().flatten().count();
                assert_eq!(matched, rows.min(cols));
                let mut cols_seen: Vec<usize> = a.iter().flatten().copied().collect();
                cols_seen.sort_unstable();
                cols_seen.dedup();
                assert_eq!(cols_seen.len(), matched, "a column used twice");
                let want = if rows <= cols {
                    brute_force(&cost, rows, cols)
                } else {
                    let t: Vec<f64> = (0..cols * rows)
                        .map(|i| cost[(i % rows) * cols + i / rows])
                        .collect();
                    brute_force(&t, cols, rows)
                };
                assert!((total(&cost, cols, &a) - want).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn forbidden_pairs_are_never_matched_and_cardinality_comes_first() {
        let nan = f64::NAN;
        // Row 0 can only take column 0; row 1 prefers column 0 but can take 1.
        let cost = [5.0, nan, 0.0, 9.0];
        assert_eq!(solve(&cost, 2, 2), vec![Some(0), Some(1)]);
        let all_forbidden = [nan, f64::INFINITY, f64::NEG_INFINITY, nan];
        assert_eq!(solve(&all_forbidden, 2, 2), vec![None, None]);
        assert_eq!(solve(&[], 0, 3), Vec::<Option<usize>>::new());
        assert_eq!(solve(&[1.0], 2, 2), vec![None, None], "short slice");
    }

    #[test]
    fn gated_solve_by_components_costs_the_same_as_one_dense_solve() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 1000.0
        };
        for (rows, cols) in [(6, 6), (8, 5), (4, 9), (12, 12)] {
            for _ in 0..50 {
                let cost: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
                let max = 0.3;
                let clamped: Vec<f64> = cost
                    .iter()
                    .map(|&c| if c <= max { c } else { max + 1e-5 })
                    .collect();
                let dense = solve_dense(&clamped, rows, cols);
                let by_components = solve_gated(&cost, rows, cols, max);
                let score = |a: &[Option<usize>]| {
                    let kept = a.iter().enumerate().filter_map(|(r, c)| {
                        c.filter(|&c| cost[r * cols + c] <= max)
                            .map(|c| cost[r * cols + c])
                    });
                    let (n, sum) = kept.fold((0usize, 0.0), |(n, s), c| (n + 1, s + c));
                    sum - n as f64 * (max + 1e-5)
                };
                assert!((score(&dense) - score(&by_components)).abs() < 1e-9);
                assert!(
                    by_components
                        .iter()
                        .enumerate()
                        .all(|(r, c)| c.is_none_or(|c| cost[r * cols + c] <= max))
                );
            }
        }
    }

    #[test]
    fn sparse_edges_give_the_dense_answer_and_bad_edges_are_ignored() {
        let cost = [0.1, 0.9, 0.8, 0.95, f64::NAN, 0.2];
        let edges = [
            (0, 0, 0.1),
            (1, 2, 0.2),
            (1, 0, 0.95),
            (7, 0, 0.0),
            (0, 9, 0.0),
            (1, 2, 0.3),
        ];
        assert_eq!(
            solve_gated_sparse(2, 3, &edges, 0.5),
            solve_gated(&cost, 2, 3, 0.5)
        );
        assert_eq!(solve_gated_sparse(2, 3, &[], 0.5), vec![None, None]);
    }

    #[test]
    fn gated_pairs_above_the_threshold_are_dropped() {
        let cost = [0.1, 0.9, 0.8, 0.95, f64::NAN, 0.2];
        // Row 0 → col 0, row 1 → col 2; row 1 col 0 (0.95) is above 0.5.
        assert_eq!(solve_gated(&cost, 2, 3, 0.5), vec![Some(0), Some(2)]);
        assert_eq!(solve_gated(&cost, 2, 3, 0.05), vec![None, None]);
    }
}
