//! The constant-velocity Kalman filter of Deep SORT (Wojke et al. 2017),
//! over the box state `(x, y, a, h, ẋ, ẏ, ȧ, ḣ)`: centre, aspect ratio
//! `w / h`, height, and their velocities.
//!
//! The filter holds only its parameters; the state ([`KalmanState`]) lives
//! with each track and every operation returns a new one. Process and
//! measurement noise are proportional to the box height, as in the paper.
//! Nothing here panics on data: a covariance that is not positive definite
//! makes [`KalmanFilter::update`] and [`KalmanFilter::gating_distance`]
//! return `None`.

use serde::{Deserialize, Serialize};

/// 0.95 quantile of the chi-square distribution with 4 degrees of freedom:
/// the Mahalanobis gate of a `(x, y, a, h)` measurement.
pub const CHI2INV95_4DOF: f64 = 9.4877;

/// A 4-d measurement `(x, y, a, h)`: centre, aspect ratio, height.
pub type Measurement = [f64; 4];

/// Mean and covariance of a track's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KalmanState {
    /// `(x, y, a, h, ẋ, ẏ, ȧ, ḣ)`.
    pub mean: [f64; 8],
    /// 8×8 covariance, row-major.
    pub covariance: [[f64; 8]; 8],
}

impl KalmanState {
    /// The box `(left, top, width, height)` of the mean.
    pub fn tlwh(&self) -> [f64; 4] {
        let [x, y, a, h, ..] = self.mean;
        let w = a * h;
        [x - w / 2.0, y - h / 2.0, w, h]
    }
}

/// The filter's parameters (the paper's values by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KalmanFilter {
    /// Position noise relative to the box height (1/20).
    pub std_weight_position: f64,
    /// Velocity noise relative to the box height (1/160).
    pub std_weight_velocity: f64,
}

impl Default for KalmanFilter {
    fn default() -> Self {
        KalmanFilter {
            std_weight_position: 1.0 / 20.0,
            std_weight_velocity: 1.0 / 160.0,
        }
    }
}

/// `(left, top, width, height)` → `(x, y, a, h)`; `None` for boxes that are
/// not finite or have no positive height or width.
pub fn tlwh_to_xyah(tlwh: [f64; 4]) -> Option<Measurement> {
    let [l, t, w, h] = tlwh;
    if !tlwh.iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
        return None;
    }
    Some([l + w / 2.0, t + h / 2.0, w / h, h])
}

impl KalmanFilter {
    /// A new track's state: the measurement with zero velocity and an
    /// uncertainty proportional to its height.
    pub fn initiate(&self, z: &Measurement) -> KalmanState {
        let (wp, wv, h) = (self.std_weight_position, self.std_weight_velocity, z[3]);
        let std = [
            2.0 * wp * h,
            2.0 * wp * h,
            1e-2,
            2.0 * wp * h,
            10.0 * wv * h,
            10.0 * wv * h,
            1e-5,
            10.0 * wv * h,
        ];
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(z);
        let mut covariance = [[0.0; 8]; 8];
        for i in 0..8 {
            covariance[i][i] = std[i] * std[i];
        }
        KalmanState { mean, covariance }
    }

    /// One time step ahead: `x' = F x`, `P' = F P Fᵀ + Q`.
    pub fn predict(&self, s: &KalmanState) -> KalmanState {
        let (wp, wv, h) = (
            self.std_weight_position,
            self.std_weight_velocity,
            s.mean[3],
        );
        let std = [wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h];
        let mut mean = s.mean;
        let (position, velocity) = mean.split_at_mut(4);
        for (p, v) in position.iter_mut().zip(velocity.iter()) {
            *p += v;
        }
        // F P: row i gains row i+4 for the position rows.
        let mut fp = s.covariance;
        for (row, below) in fp.iter_mut().zip(&s.covariance[4..]) {
            for (v, b) in row.iter_mut().zip(below) {
                *v += b;
            }
        }
        // (F P) Fᵀ: column j gains column j+4 for the position columns.
        let mut covariance = fp;
        for row in covariance.iter_mut() {
            for j in 0..4 {
                row[j] += row[j + 4];
            }
        }
        for i in 0..8 {
            covariance[i][i] += std[i] * std[i];
        }
        KalmanState { mean, covariance }
    }

    /// The state projected into measurement space: `H x` and `H P Hᵀ + R`.
    pub fn project(&self, s: &KalmanState) -> (Measurement, [[f64; 4]; 4]) {
        let (wp, h) = (self.std_weight_position, s.mean[3]);
        let std = [wp * h, wp * h, 1e-1, wp * h];
        let mut cov = [[0.0; 4]; 4];
        for i in 0..4 {
            cov[i].copy_from_slice(&s.covariance[i][..4]);
            cov[i][i] += std[i] * std[i];
        }
        let mut mean = [0.0; 4];
        mean.copy_from_slice(&s.mean[..4]);
        (mean, cov)
    }

    /// The posterior after measuring `z`; `None` when the innovation
    /// covariance is not positive definite (or anything is non-finite).
    pub fn update(&self, s: &KalmanState, z: &Measurement) -> Option<KalmanState> {
        let (projected, cov) = self.project(s);
        let chol = cholesky4(&cov)?;
        // Kalman gain Kᵀ = S⁻¹ (P Hᵀ)ᵀ, solved column by column of P Hᵀ.
        let mut gain = [[0.0; 4]; 8];
        for (i, row) in gain.iter_mut().enumerate() {
            let pht = [
                s.covariance[i][0],
                s.covariance[i][1],
                s.covariance[i][2],
                s.covariance[i][3],
            ];
            *row = chol_solve(&chol, &pht);
        }
        let innovation = [
            z[0] - projected[0],
            z[1] - projected[1],
            z[2] - projected[2],
            z[3] - projected[3],
        ];
        let mut mean = s.mean;
        for (m, k) in mean.iter_mut().zip(&gain) {
            *m += (0..4).map(|j| k[j] * innovation[j]).sum::<f64>();
        }
        // P − K S Kᵀ = P − K (H P): (H P)[j][c] = P[j][c] for j < 4.
        let mut covariance = s.covariance;
        for (i, row) in covariance.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v -= (0..4).map(|j| gain[i][j] * s.covariance[j][c]).sum::<f64>();
            }
        }
        let finite = mean.iter().all(|v| v.is_finite())
            && covariance.iter().flatten().all(|v| v.is_finite());
        finite.then_some(KalmanState { mean, covariance })
    }

    /// A gate for many measurements against one state: the projected mean
    /// and the Cholesky factor of its covariance, computed once.
    pub fn gate(&self, s: &KalmanState) -> Option<Gate> {
        let (mean, cov) = self.project(s);
        Some(Gate {
            mean,
            chol: cholesky4(&cov)?,
        })
    }

    /// Squared Mahalanobis distance of `z` from the state's projection;
    /// `None` when the covariance is not positive definite.
    pub fn gating_distance(&self, s: &KalmanState, z: &Measurement) -> Option<f64> {
        Some(self.gate(s)?.distance(z))
    }
}

/// A state's projection prepared for many Mahalanobis distances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    mean: Measurement,
    chol: [[f64; 4]; 4],
}

impl Gate {
    /// The range of measurement `x` (centre) that can pass a gate of
    /// squared distance `chi2`: since `d² ≥ Δx² / S_xx` for any positive
    /// definite `S`, `|Δx| ≤ √(chi2 · S_xx)`. Used to skip far detections
    /// without computing their distance.
    pub fn x_range(&self, chi2: f64) -> (f64, f64) {
        let r = chi2.max(0.0).sqrt() * self.chol[0][0];
        (self.mean[0] - r, self.mean[0] + r)
    }

    /// Squared Mahalanobis distance of `z`; `+∞` for non-finite input.
    pub fn distance(&self, z: &Measurement) -> f64 {
        let d = [
            z[0] - self.mean[0],
            z[1] - self.mean[1],
            z[2] - self.mean[2],
            z[3] - self.mean[3],
        ];
        let y = forward(&self.chol, &d);
        let m = y.iter().map(|v| v * v).sum::<f64>();
        if m.is_finite() { m } else { f64::INFINITY }
    }
}

/// Lower Cholesky factor of a symmetric 4×4 matrix; `None` unless positive
/// definite and finite.
fn cholesky4(a: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut l = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let sum = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if sum.is_nan() || sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L y = b` for lower-triangular `L`.
fn forward(l: &[[f64; 4]; 4], b: &[f64; 4]) -> [f64; 4] {
    let mut y = [0.0; 4];
    for i in 0..4 {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    y
}

/// Solves `L Lᵀ x = b`.
fn chol_solve(l: &[[f64; 4]; 4], b: &[f64; 4]) -> [f64; 4] {
    let y = forward(l, b);
    let mut x = [0.0; 4];
    for i in (0..4).rev() {
        x[i] = (y[i] - (i + 1..4).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn initiate_predict_project_match_the_papers_noise_model() {
        let kf = KalmanFilter::default();
        let z = [100.0, 200.0, 0.5, 80.0];
        let s = kf.initiate(&z);
        assert_eq!(&s.mean[..4], &z);
        // 2 * h / 20 = 8 → variance 64; velocity 10 * h / 160 = 5 → 25.
        assert!(close(s.covariance[0][0], 64.0) && close(s.covariance[4][4], 25.0));
        let p = kf.predict(&s);
        assert_eq!(&p.mean[..4], &z, "zero velocity: the mean stays");
        // P00 + P44 + Q00 = 64 + 25 + (80/20)² = 105; cross term P04 = 25.
        assert!(close(p.covariance[0][0], 105.0), "{}", p.covariance[0][0]);
        assert!(close(p.covariance[0][4], 25.0) && close(p.covariance[4][0], 25.0));
        let (_, cov) = kf.project(&p);
        assert!(close(cov[0][0], 105.0 + 16.0));
        assert!(close(cov[2][2], 1e-4 + 1e-4 + 1e-10 + 1e-2));
    }

    #[test]
    fn a_box_moving_at_constant_speed_is_followed_and_its_velocity_learnt() {
        let kf = KalmanFilter::default();
        let mut s = kf.initiate(&[0.0, 50.0, 0.4, 100.0]);
        for t in 1..40 {
            s = kf.predict(&s);
            s = kf.update(&s, &[3.0 * t as f64, 50.0, 0.4, 100.0]).unwrap();
        }
        assert!((s.mean[4] - 3.0).abs() < 0.05, "vx = {}", s.mean[4]);
        let next = kf.predict(&s);
        assert!((next.mean[0] - 120.0).abs() < 0.5, "x = {}", next.mean[0]);
        // The true next measurement is well inside the gate; a jump is not.
        let near = kf
            .gating_distance(&next, &[120.0, 50.0, 0.4, 100.0])
            .unwrap();
        let (lo, hi) = kf.gate(&next).unwrap().x_range(CHI2INV95_4DOF);
        assert!(lo < 120.0 && 120.0 < hi && hi < 200.0, "{lo} {hi}");
        let far = kf
            .gating_distance(&next, &[200.0, 50.0, 0.4, 100.0])
            .unwrap();
        assert!(
            near < CHI2INV95_4DOF && far > CHI2INV95_4DOF,
            "{near} {far}"
        );
        let tlwh = s.tlwh();
        assert!((tlwh[2] - 40.0).abs() < 0.1 && (tlwh[3] - 100.0).abs() < 0.1);
    }

    #[test]
    fn update_equals_the_textbook_formula() {
        // Compare against K = P Hᵀ S⁻¹ computed by explicit 4×4 inversion.
        let kf = KalmanFilter::default();
        let s = kf.predict(&kf.predict(&kf.initiate(&[10.0, 20.0, 0.5, 60.0])));
        let z = [12.0, 19.0, 0.55, 62.0];
        let u = kf.update(&s, &z).unwrap();
        let (m, cov) = kf.project(&s);
        let inv = invert4(cov);
        for i in 0..8 {
            let k: Vec<f64> = (0..4)
                .map(|c| (0..4).map(|j| s.covariance[i][j] * inv[j][c]).sum())
                .collect();
            let want = s.mean[i] + (0..4).map(|c| k[c] * (z[c] - m[c])).sum::<f64>();
            assert!(close(u.mean[i], want), "mean[{i}] {} vs {want}", u.mean[i]);
        }
    }

    fn invert4(a: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
        let mut m = [[0.0; 8]; 4];
        for i in 0..4 {
            m[i][..4].copy_from_slice(&a[i]);
            m[i][4 + i] = 1.0;
        }
        for c in 0..4 {
            let p = m[c][c];
            for v in m[c].iter_mut() {
                *v /= p;
            }
            for r in 0..4 {
                if r != c {
                    let f = m[r][c];
                    let row_c = m[c];
                    for (v, x) in m[r].iter_mut().zip(row_c) {
                        *v -= f * x;
                    }
                }
            }
        }
        let mut inv = [[0.0; 4]; 4];
        for i in 0..4 {
            inv[i].copy_from_slice(&m[i][4..]);
        }
        inv
    }

    #[test]
    fn bad_data_gives_none_not_a_panic() {
        let kf = KalmanFilter::default();
        assert_eq!(tlwh_to_xyah([0.0, 0.0, 10.0, 0.0]), None);
        assert_eq!(tlwh_to_xyah([f64::NAN, 0.0, 10.0, 10.0]), None);
        let mut s = kf.initiate(&[0.0, 0.0, 1.0, 10.0]);
        s.covariance = [[0.0; 8]; 8];
        // Zero height gives zero noise: singular innovation covariance.
        s.mean[3] = 0.0;
        assert_eq!(kf.update(&s, &[0.0, 0.0, 1.0, 10.0]), None);
        assert_eq!(kf.gating_distance(&s, &[0.0, 0.0, 1.0, 10.0]), None);
        let ok = kf.initiate(&[0.0, 0.0, 1.0, 10.0]);
        assert_eq!(
            kf.update(&ok, &[f64::NAN, 0.0, 1.0, 10.0]),
            None,
            "NaN measurement"
        );
        assert_eq!(
            kf.gate(&ok)
                .unwrap()
                .distance(&[f64::INFINITY, 0.0, 1.0, 1.0]),
            f64::INFINITY
        );
    }
}
