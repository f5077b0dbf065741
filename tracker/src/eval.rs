//! `tracker eval`: score the tracker on MOTChallenge ground truth.
//!
//! - [`synthesise`]: ground truth → detections with appearance embeddings,
//!   degraded at a named noise level with a seed (`mot::synth`).
//! - [`track`]: detections → tracks with the same Deep SORT the service runs;
//!   each frame reports the confirmed tracks matched in it, with their Kalman
//!   boxes (the convention of Deep SORT's reference application).
//! - [`score`]: tracks against ground truth with the CLEAR-MOT / IDF1
//!   evaluator (`mot::eval`, IoU ≥ 0.5), reproducing py-motmetrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mot::deep_sort::{DeepSort, DeepSortParams, Detection};
use mot::eval::Metrics;
use mot::motchallenge::{self, Row};
use mot::synth::NoiseLevel;

/// Largest distance `1 − IoU` for a hypothesis to cover an object (IoU ≥ 0.5,
/// the MOTChallenge convention).
pub const MAX_IOU_DISTANCE: f64 = 0.5;

/// Highest frame number `tracker eval run` accepts: every frame up to the
/// last one is a tracker step, so a corrupt frame number must not mean
/// billions of steps (10 million frames is over 3 days at 30 fps).
pub const MAX_FRAME: u32 = 10_000_000;

/// An evaluation command failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A frame number is above [`MAX_FRAME`].
    #[error("{path}: frame {frame} is above the supported {MAX_FRAME}")]
    FrameTooLarge {
        /// File.
        path: PathBuf,
        /// The frame number.
        frame: u32,
    },
    /// A file is not valid MOTChallenge CSV.
    #[error("{path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Where and why.
        source: motchallenge::ParseError,
    },
}

fn read_rows(path: &Path) -> Result<Vec<Row>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.into(),
        source,
    })?;
    motchallenge::parse(&text).map_err(|source| EvalError::Parse {
        path: path.into(),
        source,
    })
}

fn write_rows(path: &Path, rows: &[Row]) -> Result<(), EvalError> {
    std::fs::write(path, motchallenge::format(rows)).map_err(|source| EvalError::Io {
        path: path.into(),
        source,
    })
}

/// Writes degraded detections of the ground truth in `gt` to `out`; returns
/// the number of detections.
pub fn synthesise(
    gt: &Path,
    noise: NoiseLevel,
    seed: u64,
    dim: usize,
    out: &Path,
) -> Result<usize, EvalError> {
    let rows = read_rows(gt)?;
    let detections = mot::synth::degrade(&rows, &noise.params(), dim, seed);
    write_rows(out, &detections)?;
    Ok(detections.len())
}

/// Timing of a tracking run (what `tracker eval run` prints as JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// Always "argus".
    pub tracker: &'static str,
    /// Frames stepped (over all repetitions).
    pub frames: u32,
    /// Detections fed (over all repetitions).
    pub boxes: usize,
    /// Seconds spent in the tracker (file I/O excluded).
    pub seconds: f64,
}

/// Tracks detection rows frame by frame (frames 1 to the last one, empty
/// frames included so tracks age; callers bound the frame numbers, see
/// [`MAX_FRAME`]), `repeat` times with a fresh tracker each
/// time (for timing); returns the first run's track rows and the timing of
/// all runs together.
pub fn track_rows(
    detections: &[Row],
    params: &DeepSortParams,
    repeat: u32,
) -> (Vec<Row>, RunReport) {
    let last = detections.iter().map(|r| r.frame).max().unwrap_or(0);
    let mut by_frame: Vec<Vec<Detection>> = vec![Vec::new(); last as usize + 1];
    for r in detections {
        by_frame[r.frame as usize].push(Detection {
            tlwh: [r.x, r.y, r.w, r.h],
            confidence: r.conf,
            feature: r.extra.clone(),
        });
    }
    let repeat = repeat.max(1);
    let mut out = Vec::new();
    let start = Instant::now();
    for run in 0..repeat {
        let mut tracker = DeepSort::new(params.clone());
        for (frame, dets) in by_frame.iter().enumerate().skip(1) {
            tracker.step(dets);
            if run > 0 {
                continue;
            }
            for t in tracker.reported() {
                let [x, y, w, h] = t.tlwh();
                out.push(Row {
                    frame: frame as u32,
                    id: t.id as i64,
                    x,
                    y,
                    w,
                    h,
                    conf: 1.0,
                    extra: Vec::new(),
                });
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = RunReport {
        tracker: "argus",
        frames: last.saturating_mul(repeat),
        boxes: detections.len() * repeat as usize,
        seconds,
    };
    (out, report)
}

/// Tracks the detections file `detections` into the tracks file `out`
/// (`repeat` times for timing, see [`track_rows`]).
pub fn track(
    detections: &Path,
    params: &DeepSortParams,
    repeat: u32,
    out: &Path,
) -> Result<RunReport, EvalError> {
    let rows = read_rows(detections)?;
    if let Some(frame) = rows.iter().map(|r| r.frame).find(|f| *f > MAX_FRAME) {
        return Err(EvalError::FrameTooLarge {
            path: detections.into(),
            frame,
        });
    }
    let (tracks, report) = track_rows(&rows, params, repeat);
    write_rows(out, &tracks)?;
    Ok(report)
}

/// Scores the tracks file against the ground-truth file.
pub fn score(gt: &Path, tracks: &Path) -> Result<Metrics, EvalError> {
    let (gt, tracks) = (read_rows(gt)?, read_rows(tracks)?);
    Ok(mot::eval::evaluate(&gt, &tracks, MAX_IOU_DISTANCE).metrics())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three people walking across 60 frames, one crossing another.
    fn ground_truth() -> Vec<Row> {
        let mut rows = Vec::new();
        for f in 1..=60u32 {
            let t = f64::from(f);
            for (id, x, y) in [
                (1, 20.0 + 6.0 * t, 100.0),
                (2, 400.0 - 5.0 * t, 110.0),
                (3, 50.0, 300.0 + t),
            ] {
                rows.push(Row {
                    frame: f,
                    id,
                    x,
                    y,
                    w: 40.0,
                    h: 100.0,
                    conf: 1.0,
                    extra: vec![],
                });
            }
        }
        rows
    }

    #[test]
    fn deep_sort_tracks_low_noise_detections_almost_perfectly() {
        let gt = ground_truth();
        let dets = mot::synth::degrade(&gt, &NoiseLevel::Low.params(), 64, 7);
        let (tracks, report) = track_rows(&dets, &DeepSortParams::default(), 1);
        assert_eq!((report.frames, report.boxes), (60, dets.len()));
        let m = mot::eval::evaluate(&gt, &tracks, MAX_IOU_DISTANCE).metrics();
        // n_init = 3: the first two frames of each person are misses by design.
        assert!(m.mota > 0.85, "{m:?}");
        assert!(m.idf1 > 0.85, "{m:?}");
        assert!(m.num_switches <= 1, "{m:?}");
        assert_eq!(m.mostly_tracked, 3, "{m:?}");
    }

    #[test]
    fn more_noise_scores_lower() {
        let gt = ground_truth();
        let score_at = |level: NoiseLevel| {
            let dets = mot::synth::degrade(&gt, &level.params(), 64, 11);
            let (tracks, _) = track_rows(&dets, &DeepSortParams::default(), 1);
            mot::eval::evaluate(&gt, &tracks, MAX_IOU_DISTANCE)
                .metrics()
                .mota
        };
        let (low, high) = (score_at(NoiseLevel::Low), score_at(NoiseLevel::High));
        assert!(low > high, "low {low} high {high}");
    }

    #[test]
    fn the_file_commands_round_trip_through_motchallenge_files() {
        let dir = tempfile::tempdir().unwrap();
        let gt_path = dir.path().join("gt.txt");
        std::fs::write(&gt_path, motchallenge::format(&ground_truth())).unwrap();
        let (det, out) = (dir.path().join("det.txt"), dir.path().join("tracks.txt"));
        let n = synthesise(&gt_path, NoiseLevel::Medium, 3, 32, &det).unwrap();
        assert!(n > 100);
        let report = track(&det, &DeepSortParams::default(), 3, &out).unwrap();
        assert_eq!((report.boxes, report.frames), (3 * n, 180));
        let m = score(&gt_path, &out).unwrap();
        assert_eq!(m.num_unique_objects, 3);
        assert!(m.mota > 0.5 && m.mota <= 1.0, "{m:?}");
        let missing = score(&dir.path().join("nope.txt"), &out).unwrap_err();
        assert!(missing.to_string().contains("nope.txt"), "{missing}");
        std::fs::write(&det, "4000000000,-1,0,0,10,10,1,-1,-1,-1\n").unwrap();
        let huge = track(&det, &DeepSortParams::default(), 1, &out).unwrap_err();
        assert!(
            matches!(
                huge,
                EvalError::FrameTooLarge {
                    frame: 4_000_000_000,
                    ..
                }
            ),
            "{huge}"
        );
        std::fs::write(&out, "1,2,oops\n").unwrap();
        assert!(
            score(&gt_path, &out)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }
}
