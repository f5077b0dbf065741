//! The per-camera analysis rate: which decoded frames go to inference.
//!
//! Decisions are made on stream time (buffer timestamps), so they are exact
//! for files played faster than real time and for live sources alike, and
//! any rate works, fractional ones included: `max_fps = 0.5` analyses one
//! frame per two seconds of video. Each tick of the `1 / max_fps` grid
//! takes the frame nearest to it, so a 25 fps camera capped at 10 fps gives
//! 10 frames a second (alternately 2 and 3 frames apart) rather than the
//! 8.3 of "every third frame".

/// Admits at most `max_fps` frames per second of stream time.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Grid spacing, µs; 0 admits every frame.
    interval_us: u64,
    /// The next tick of the grid.
    next_due_us: Option<u64>,
    /// Timestamp of the previous frame (admitted or not).
    last_us: Option<u64>,
}

impl RateLimit {
    /// A limit of `max_fps` frames per second; 0 (or less) admits every frame.
    pub fn new(max_fps: f64) -> Self {
        let interval_us = if max_fps > 0.0 && max_fps.is_finite() {
            (1e6 / max_fps).round() as u64
        } else {
            0
        };
        RateLimit {
            interval_us,
            next_due_us: None,
            last_us: None,
        }
    }

    /// Whether the frame at stream time `ts_us` is analysed. A timestamp
    /// that goes back (a new segment, a restarted source) starts the grid
    /// over at that frame.
    pub fn admit(&mut self, ts_us: u64) -> bool {
        if self.interval_us == 0 {
            return true;
        }
        let spacing = match self.last_us {
            Some(last) if ts_us < last => {
                self.next_due_us = None;
                0
            }
            Some(last) => ts_us - last,
            None => 0,
        };
        self.last_us = Some(ts_us);
        let due = match self.next_due_us {
            None => ts_us,
            Some(due) => due,
        };
        // The frame is the nearest to the tick when the next one (about a
        // spacing later) would be farther from it.
        if ts_us.saturating_add(spacing / 2) < due {
            return false;
        }
        let next = due.saturating_add(self.interval_us);
        // More than a whole interval behind (a gap in the stream): the grid
        // restarts at this frame rather than admitting a burst.
        self.next_due_us = Some(if next <= ts_us {
            ts_us.saturating_add(self.interval_us)
        } else {
            next
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admitted timestamps (ms) of `frames` frames at `source_fps`.
    fn admitted(max_fps: f64, source_fps: f64, frames: u64) -> Vec<u64> {
        let mut limit = RateLimit::new(max_fps);
        (0..frames)
            .map(|i| (i as f64 * 1e6 / source_fps).round() as u64)
            .filter(|&ts| limit.admit(ts))
            .map(|ts| ts / 1000)
            .collect()
    }

    #[test]
    fn no_limit_admits_every_frame() {
        assert_eq!(admitted(0.0, 10.0, 20).len(), 20);
        assert_eq!(
            admitted(25.0, 10.0, 20).len(),
            20,
            "limit above the source rate"
        );
        assert_eq!(admitted(15.0, 10.0, 100).len(), 100);
    }

    #[test]
    fn two_of_ten_frames_a_second() {
        assert_eq!(admitted(2.0, 10.0, 30), [0, 500, 1000, 1500, 2000, 2500]);
    }

    #[test]
    fn fractional_rates_are_exact() {
        assert_eq!(admitted(0.5, 10.0, 100), [0, 2000, 4000, 6000, 8000]);
        assert_eq!(admitted(0.25, 25.0, 250), [0, 4000, 8000]);
        // 2.5 fps of a 25 fps camera: every 10th frame.
        assert_eq!(admitted(2.5, 25.0, 50), [0, 400, 800, 1200, 1600]);
        // NTSC 29.97 capped at 7.5: 7.5 a second on average.
        let n = admitted(7.5, 30000.0 / 1001.0, 2997).len();
        assert!((749..=751).contains(&n), "{n} in 100 s");
    }

    #[test]
    fn twenty_five_capped_at_ten_gives_ten_not_eight() {
        let n = admitted(10.0, 25.0, 250).len();
        assert_eq!(n, 100, "10 s at 25 fps capped at 10 fps");
    }

    #[test]
    fn jittered_timestamps_keep_the_rate() {
        // 10 fps with ±20 ms of jitter, capped at 2 fps, for 60 s.
        let mut limit = RateLimit::new(2.0);
        let jitter = [0i64, 20, -15, 5, -20, 10, 15, -5, -10, 20];
        let n = (0..600i64)
            .map(|i| (i * 100_000 + jitter[(i % 10) as usize] * 1000).max(0) as u64)
            .filter(|&ts| limit.admit(ts))
            .count();
        assert!((119..=121).contains(&n), "{n} in 60 s");
    }

    #[test]
    fn a_gap_or_a_restart_starts_the_grid_over() {
        let mut limit = RateLimit::new(1.0);
        assert!(limit.admit(0));
        assert!(!limit.admit(500_000));
        // Ten seconds without frames: the next frame is admitted, and the
        // one right after it is not (no burst to catch up).
        assert!(limit.admit(10_600_000));
        assert!(!limit.admit(10_700_000));
        assert!(limit.admit(11_600_000));
        // Timestamps start over (a new connection): admitted at once.
        assert!(limit.admit(40_000));
        assert!(!limit.admit(140_000));
    }
}
