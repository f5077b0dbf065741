//! How the inference thread groups frames of different cameras into one
//! detector batch: a pure policy, with time passed in, that
//! [`FrameQueue::next_batch`](crate::queue::FrameQueue::next_batch) follows
//! under its lock.
//!
//! A batch takes at most one frame per camera (so a camera's frames stay in
//! order, one batch after the other) and at most `max_batch` frames. Its
//! first frame is taken as soon as one is there; then the worker waits for
//! frames of the other cameras at most `timeout`, so a slow or dead camera
//! delays the others by no more than that, and not at all when no other
//! camera can deliver (ended) or the batch is full. Cameras are served
//! round-robin from a cursor that moves past the last camera of each batch,
//! so with more cameras than `max_batch` none is starved.

use std::time::{Duration, Instant};

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most frames in one batch (at least 1; 1 = one frame at a time).
    pub max_batch: usize,
    /// Longest wait for more frames after a batch's first one.
    pub timeout: Duration,
}

/// What a camera's slot offers the batch being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A frame waits.
    Frame,
    /// Nothing now; a frame may come.
    Idle,
    /// The stream ended after its last frame; the end is not reported yet.
    Ending,
    /// Nothing more will come from this camera.
    Finished,
}

/// The worker's next move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Take this camera's frame into the batch.
    Take(usize),
    /// Hand the batch to inference.
    Emit,
    /// Report the end of this camera's stream (only with an empty batch, so
    /// it follows the camera's last frame).
    End(usize),
    /// Wait for a change, at most this long (`None`: until one comes).
    Wait(Option<Duration>),
    /// Nothing more will come from any camera.
    Close,
}

/// The batch being collected: which cameras are in it, since when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collecting {
    /// Cameras in the batch, in the order taken.
    pub cameras: Vec<usize>,
    /// When the first frame was taken.
    pub started: Option<Instant>,
}

impl Collecting {
    /// Records that `camera`'s frame was taken at `now`.
    pub fn take(&mut self, camera: usize, now: Instant) {
        self.started.get_or_insert(now);
        self.cameras.push(camera);
    }

    /// Empties it for the next batch.
    pub fn clear(&mut self) {
        self.cameras.clear();
        self.started = None;
    }
}

/// The next step for `batch`, given each camera's `offers`, the round-robin
/// `cursor` (the camera served first) and whether the queue is `stopped`
/// (no more frames come; what is queued is drained without waiting).
pub fn next_step(
    policy: &BatchPolicy,
    batch: &Collecting,
    offers: &[Offer],
    cursor: usize,
    stopped: bool,
    now: Instant,
) -> Step {
    let n = offers.len();
    let round_robin = || (0..n).map(move |step| (cursor + step) % n);
    let outside = |camera: &usize| !batch.cameras.contains(camera);
    if batch.cameras.len() >= policy.max_batch.max(1) {
        return Step::Emit;
    }
    if let Some(camera) = round_robin()
        .filter(outside)
        .find(|&i| offers[i] == Offer::Frame)
    {
        return Step::Take(camera);
    }
    let Some(started) = batch.started.filter(|_| !batch.cameras.is_empty()) else {
        if let Some(camera) = round_robin().find(|&i| offers[i] == Offer::Ending) {
            return Step::End(camera);
        }
        if stopped || offers.iter().all(|&o| o == Offer::Finished) {
            return Step::Close;
        }
        return Step::Wait(None);
    };
    let another_may_come = (0..n).filter(outside).any(|i| offers[i] == Offer::Idle);
    if stopped || !another_may_come {
        return Step::Emit;
    }
    match (started + policy.timeout).checked_duration_since(now) {
        Some(left) if !left.is_zero() => Step::Wait(Some(left)),
        _ => Step::Emit,
    }
}

/// Where the next batch starts: after the last camera of this one.
pub fn cursor_after(batch: &Collecting, cameras: usize) -> Option<usize> {
    batch
        .cameras
        .last()
        .map(|&last| (last + 1) % cameras.max(1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(max_batch: usize, timeout_ms: u64) -> BatchPolicy {
        BatchPolicy {
            max_batch,
            timeout: MS * timeout_ms as u32,
        }
    }

    #[test]
    fn the_first_frame_is_taken_at_once_and_a_full_batch_goes_without_waiting() {
        let t0 = Instant::now();
        let p = policy(2, 20);
        let mut batch = Collecting::default();
        let offers = [Offer::Idle, Offer::Frame, Offer::Frame];
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::Take(1));
        batch.take(1, t0);
        let offers = [Offer::Idle, Offer::Frame, Offer::Frame];
        // Camera 1 has its next frame already: it waits for the next batch.
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::Take(2));
        batch.take(2, t0);
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::Emit);
        assert_eq!(cursor_after(&batch, 3), Some(0));
    }

    #[test]
    fn waits_for_other_cameras_at_most_the_timeout() {
        let t0 = Instant::now();
        let p = policy(4, 20);
        let mut batch = Collecting::default();
        batch.take(0, t0);
        let offers = [Offer::Frame, Offer::Idle, Offer::Idle];
        assert_eq!(
            next_step(&p, &batch, &offers, 1, false, t0 + 5 * MS),
            Step::Wait(Some(15 * MS))
        );
        assert_eq!(
            next_step(&p, &batch, &offers, 1, false, t0 + 20 * MS),
            Step::Emit
        );
        // A stopped queue drains without waiting.
        assert_eq!(next_step(&p, &batch, &offers, 1, true, t0), Step::Emit);
    }

    #[test]
    fn no_wait_when_no_other_camera_can_deliver() {
        let t0 = Instant::now();
        let p = policy(4, 20);
        let mut batch = Collecting::default();
        batch.take(1, t0);
        let offers = [Offer::Finished, Offer::Idle, Offer::Ending];
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::Emit);
        // The end is reported with an empty batch, after the last frame.
        batch.clear();
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::End(2));
        let offers = [Offer::Finished, Offer::Idle, Offer::Finished];
        assert_eq!(
            next_step(&p, &batch, &offers, 0, false, t0),
            Step::Wait(None)
        );
        assert_eq!(next_step(&p, &batch, &offers, 0, true, t0), Step::Close);
        let offers = [Offer::Finished; 3];
        assert_eq!(next_step(&p, &batch, &offers, 0, false, t0), Step::Close);
    }

    #[test]
    fn max_batch_one_is_one_frame_at_a_time_round_robin() {
        let t0 = Instant::now();
        let p = policy(1, 20);
        let offers = [Offer::Frame, Offer::Frame];
        let mut batch = Collecting::default();
        assert_eq!(next_step(&p, &batch, &offers, 1, false, t0), Step::Take(1));
        batch.take(1, t0);
        assert_eq!(next_step(&p, &batch, &offers, 1, false, t0), Step::Emit);
        assert_eq!(cursor_after(&batch, 2), Some(0));
    }

    /// A camera of the simulation: delivers a frame every `period` (never
    /// when `None`) into its one-frame slot, the newest replacing a waiting
    /// one, as a live camera does.
    struct SimCamera {
        period: Option<Duration>,
        next_at: Duration,
        seq: u64,
        waiting: Option<u64>,
    }

    /// A simulated batch: (formed at, first frame taken at, [(camera, seq)]).
    type SimBatch = (Duration, Duration, Vec<(usize, u64)>);

    /// Drives the policy like `FrameQueue::next_batch` does, on a virtual
    /// clock, with inference taking `inference` per batch. Returns every
    /// batch.
    fn simulate(
        p: &BatchPolicy,
        periods: &[Option<u64>],
        inference: Duration,
        until: Duration,
    ) -> Vec<SimBatch> {
        let t0 = Instant::now();
        let mut cameras: Vec<SimCamera> = periods
            .iter()
            .map(|p| SimCamera {
                period: p.map(|ms| MS * ms as u32),
                next_at: p.map(|ms| MS * ms as u32).unwrap_or(Duration::MAX),
                seq: 0,
                waiting: None,
            })
            .collect();
        let mut now = Duration::ZERO;
        let deliver = |cameras: &mut Vec<SimCamera>, now: Duration| {
            for c in cameras.iter_mut() {
                while let Some(period) = c.period.filter(|_| c.next_at <= now) {
                    c.waiting = Some(c.seq);
                    c.seq += 1;
                    c.next_at += period;
                }
            }
        };
        let mut batches = Vec::new();
        let (mut batch, mut items, mut cursor) = (Collecting::default(), Vec::new(), 0);
        while now < until {
            deliver(&mut cameras, now);
            let offers: Vec<Offer> = cameras
                .iter()
                .map(|c| match c.waiting {
                    Some(_) => Offer::Frame,
                    None => Offer::Idle,
                })
                .collect();
            match next_step(p, &batch, &offers, cursor, false, t0 + now) {
                Step::Take(i) => {
                    items.push((i, cameras[i].waiting.take().unwrap()));
                    batch.take(i, t0 + now);
                }
                Step::Emit => {
                    let first = batch.started.unwrap().duration_since(t0);
                    batches.push((now, first, std::mem::take(&mut items)));
                    cursor = cursor_after(&batch, cameras.len()).unwrap();
                    batch.clear();
                    now += inference;
                }
                Step::Wait(limit) => {
                    // Until the next delivery or the limit, whichever is first.
                    let next = cameras.iter().map(|c| c.next_at).min().unwrap();
                    now = match limit {
                        Some(limit) => next.min(now + limit),
                        None => next,
                    };
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        batches
    }

    #[test]
    fn a_dead_camera_never_stalls_the_others_beyond_the_timeout() {
        // Cameras 0 and 1 deliver every 40 and 65 ms; camera 2 never does.
        let p = policy(3, 20);
        let batches = simulate(
            &p,
            &[Some(40), Some(65), None],
            30 * MS,
            Duration::from_secs(5),
        );
        assert!(batches.len() > 50, "{} batches", batches.len());
        let mut last_seq = BTreeMap::new();
        let mut pairs = 0;
        for (formed, first, items) in &batches {
            assert!(
                *formed - *first <= p.timeout,
                "batch formed {:?} after its first frame",
                *formed - *first
            );
            let mut cameras: Vec<usize> = items.iter().map(|&(c, _)| c).collect();
            cameras.sort();
            cameras.dedup();
            assert_eq!(
                cameras.len(),
                items.len(),
                "one frame per camera: {items:?}"
            );
            assert!(!cameras.contains(&2), "camera 2 never delivered");
            for &(camera, seq) in items {
                if let Some(previous) = last_seq.insert(camera, seq) {
                    assert!(seq > previous, "camera {camera}: {seq} after {previous}");
                }
            }
            pairs += usize::from(items.len() == 2);
        }
        assert!(
            pairs > 10,
            "frames of both live cameras share batches: {pairs}"
        );
        for camera in [0, 1] {
            assert!(last_seq[&camera] > 50, "camera {camera} kept being served");
        }
    }

    #[test]
    fn more_cameras_than_the_batch_holds_are_served_in_turn() {
        // Five busy cameras, batches of two: everyone gets a turn.
        let p = policy(2, 20);
        let batches = simulate(&p, &[Some(5); 5], 50 * MS, Duration::from_secs(2));
        let mut served = [0usize; 5];
        for (_, _, items) in &batches {
            assert_eq!(items.len(), 2);
            for &(camera, _) in items {
                served[camera] += 1;
            }
        }
        let (min, max) = (served.iter().min().unwrap(), served.iter().max().unwrap());
        assert!(max - min <= 1, "round-robin: {served:?}");
    }
}
