//! How the inference thread groups frames of different cameras into one
//! detector batch: a pure policy, with time passed in, that
//! [`FrameQueue::next_batch`](crate::queue::FrameQueue::next_batch) follows
//! under its lock.
//!
//! A batch takes at most one frame per camera (so a camera's frames stay in
//! order, one batch after the other) and at most `max_batch` frames. Its
//! first frame is taken as soon as one is there; then the worker waits for
//! frames of the other **live** cameras at most `timeout`, so a slow or dead
//! camera delays the others by no more than that. The batch goes at once
//! ([`Closed`] says why) when it is full, or when every camera that may
//! still deliver soon is in it: the others have ended, or are not live.
//!
//! A camera is **live** while it has offered a frame within the last
//! `live_window` ([`live_window`]: 10 batch timeouts, at least 1 s), or, until
//! it first does, within `live_window` of the start ([`LiveCameras::new`]).
//! So a camera that died (or stalls for longer than the window) stops
//! delaying every batch by `timeout` one window after its last frame, and is
//! waited for again from its next frame on. Frames of a camera that is not
//! live are still taken whenever they are there; only the wait skips it.
//! The policy sees only the offers of the queue's slots, not the sources.
//!
//! Cameras are served round-robin from a cursor that moves past the last
//! camera of each batch, so with more cameras than `max_batch` none is
//! starved.

use std::time::{Duration, Instant};

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most frames in one batch (at least 1; 1 = one frame at a time).
    pub max_batch: usize,
    /// Longest wait for more frames after a batch's first one.
    pub timeout: Duration,
    /// How long after its last frame a camera is still waited for (see the
    /// module docs); [`live_window`] of `timeout` by default.
    pub live_window: Duration,
}

impl BatchPolicy {
    /// `max_batch` frames, waiting at most `timeout`, with the default
    /// [`live_window`].
    pub fn new(max_batch: usize, timeout: Duration) -> Self {
        BatchPolicy {
            max_batch,
            timeout,
            live_window: live_window(timeout),
        }
    }
}

/// Batch timeouts a camera may stay silent and still be waited for.
pub const LIVE_WINDOW_TIMEOUTS: u32 = 10;
/// The shortest live window: 1 s, so that a camera at 1 fps or more is
/// live between its frames whatever the timeout (at the default 20 ms, 10
/// timeouts would be shorter than a frame interval at 5 fps).
pub const MIN_LIVE_WINDOW: Duration = Duration::from_secs(1);

/// The default live window for a batch timeout: [`LIVE_WINDOW_TIMEOUTS`]
/// timeouts, at least [`MIN_LIVE_WINDOW`].
pub fn live_window(timeout: Duration) -> Duration {
    timeout
        .saturating_mul(LIVE_WINDOW_TIMEOUTS)
        .max(MIN_LIVE_WINDOW)
}

/// When each camera last offered a frame: which cameras a batch waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCameras {
    last_frame: Vec<Instant>,
}

impl LiveCameras {
    /// `cameras` cameras, each counted as having delivered at `start`, so a
    /// camera still connecting is waited for during its first window.
    pub fn new(cameras: usize, start: Instant) -> Self {
        LiveCameras {
            last_frame: vec![start; cameras],
        }
    }

    /// Notes the cameras that offer a frame at `now`.
    pub fn observe(&mut self, offers: &[Offer], now: Instant) {
        for (last, offer) in self.last_frame.iter_mut().zip(offers) {
            if *offer == Offer::Frame {
                *last = now;
            }
        }
    }

    /// Whether `camera` offered a frame within `window` before `now`. An
    /// unknown camera is not live.
    pub fn is_live(&self, camera: usize, window: Duration, now: Instant) -> bool {
        self.last_frame
            .get(camera)
            .is_some_and(|&last| now.saturating_duration_since(last) <= window)
    }
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
    Emit(Closed),
    /// Report the end of this camera's stream (only with an empty batch, so
    /// it follows the camera's last frame).
    End(usize),
    /// Wait for a change, at most this long (`None`: until one comes).
    Wait(Option<Duration>),
    /// Nothing more will come from any camera.
    Close,
}

/// Why a batch went to inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Closed {
    /// It holds `max_batch` frames.
    Full,
    /// Every camera that may deliver soon (live and not ended) is in it.
    AllLive,
    /// `timeout` passed with a live camera still missing.
    Timeout,
    /// The queue is stopped: what is queued is drained without waiting.
    Stopped,
}

impl Closed {
    /// Every reason, in a fixed order (for counters).
    pub const ALL: [Closed; 4] = [
        Closed::Full,
        Closed::AllLive,
        Closed::Timeout,
        Closed::Stopped,
    ];

    /// A short lowercase name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Full => "full",
            Closed::AllLive => "all_live",
            Closed::Timeout => "timeout",
            Closed::Stopped => "stopped",
        }
    }
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

/// The next step for `batch`, given each camera's `offers`, which cameras
/// are `live` (observe `offers` first), the round-robin `cursor` (the camera
/// served first) and whether the queue is `stopped` (no more frames come;
/// what is queued is drained without waiting).
pub fn next_step(
    policy: &BatchPolicy,
    batch: &Collecting,
    offers: &[Offer],
    live: &LiveCameras,
    cursor: usize,
    stopped: bool,
    now: Instant,
) -> Step {
    let n = offers.len();
    let round_robin = || (0..n).map(move |step| (cursor + step) % n);
    let outside = |camera: &usize| !batch.cameras.contains(camera);
    if batch.cameras.len() >= policy.max_batch.max(1) {
        return Step::Emit(Closed::Full);
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
    if stopped {
        return Step::Emit(Closed::Stopped);
    }
    let another_may_come = (0..n)
        .filter(outside)
        .any(|i| offers[i] == Offer::Idle && live.is_live(i, policy.live_window, now));
    if !another_may_come {
        return Step::Emit(Closed::AllLive);
    }
    match (started + policy.timeout).checked_duration_since(now) {
        Some(left) if !left.is_zero() => Step::Wait(Some(left)),
        _ => Step::Emit(Closed::Timeout),
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
        BatchPolicy::new(max_batch, MS * timeout_ms as u32)
    }

    #[test]
    fn the_first_frame_is_taken_at_once_and_a_full_batch_goes_without_waiting() {
        let t0 = Instant::now();
        let p = policy(2, 20);
        let live = LiveCameras::new(3, t0);
        let mut batch = Collecting::default();
        let offers = [Offer::Idle, Offer::Frame, Offer::Frame];
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Take(1)
        );
        batch.take(1, t0);
        let offers = [Offer::Idle, Offer::Frame, Offer::Frame];
        // Camera 1 has its next frame already: it waits for the next batch.
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Take(2)
        );
        batch.take(2, t0);
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Emit(Closed::Full)
        );
        assert_eq!(cursor_after(&batch, 3), Some(0));
    }

    #[test]
    fn waits_for_other_cameras_at_most_the_timeout() {
        let t0 = Instant::now();
        let p = policy(4, 20);
        let live = LiveCameras::new(3, t0);
        let mut batch = Collecting::default();
        batch.take(0, t0);
        let offers = [Offer::Frame, Offer::Idle, Offer::Idle];
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 1, false, t0 + 5 * MS),
            Step::Wait(Some(15 * MS))
        );
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 1, false, t0 + 20 * MS),
            Step::Emit(Closed::Timeout)
        );
        // A stopped queue drains without waiting.
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 1, true, t0),
            Step::Emit(Closed::Stopped)
        );
    }

    #[test]
    fn no_wait_when_no_other_camera_can_deliver() {
        let t0 = Instant::now();
        let p = policy(4, 20);
        let live = LiveCameras::new(3, t0);
        let mut batch = Collecting::default();
        batch.take(1, t0);
        let offers = [Offer::Finished, Offer::Idle, Offer::Ending];
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Emit(Closed::AllLive)
        );
        // The end is reported with an empty batch, after the last frame.
        batch.clear();
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::End(2)
        );
        let offers = [Offer::Finished, Offer::Idle, Offer::Finished];
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Wait(None)
        );
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, true, t0),
            Step::Close
        );
        let offers = [Offer::Finished; 3];
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 0, false, t0),
            Step::Close
        );
    }

    #[test]
    fn max_batch_one_is_one_frame_at_a_time_round_robin() {
        let t0 = Instant::now();
        let p = policy(1, 20);
        let live = LiveCameras::new(2, t0);
        let offers = [Offer::Frame, Offer::Frame];
        let mut batch = Collecting::default();
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 1, false, t0),
            Step::Take(1)
        );
        batch.take(1, t0);
        assert_eq!(
            next_step(&p, &batch, &offers, &live, 1, false, t0),
            Step::Emit(Closed::Full)
        );
        assert_eq!(cursor_after(&batch, 2), Some(0));
    }

    /// A camera of the simulation: delivers a frame every `period` (never
    /// when `None`), except while `silent`, into its one-frame slot, the
    /// newest replacing a waiting one, as a live camera does.
    struct SimCamera {
        period: Option<Duration>,
        silent: std::ops::Range<Duration>,
        next_at: Duration,
        seq: u64,
        waiting: Option<u64>,
    }

    /// A simulated batch.
    struct SimBatch {
        /// When it went to inference.
        formed: Duration,
        /// When its first frame was taken.
        first: Duration,
        /// (camera, seq) of its frames.
        items: Vec<(usize, u64)>,
        closed: Closed,
    }

    /// Drives the policy like `FrameQueue::next_batch` does, on a virtual
    /// clock, with inference taking `inference` per batch; camera `i`
    /// delivers every `periods[i]` ms. Returns every batch.
    fn simulate(
        p: &BatchPolicy,
        periods: &[Option<u64>],
        inference: Duration,
        until: Duration,
    ) -> Vec<SimBatch> {
        simulate_with_outage(p, periods, None, inference, until)
    }

    /// [`simulate`], with camera `outage.0` delivering nothing during
    /// `outage.1`.
    fn simulate_with_outage(
        p: &BatchPolicy,
        periods: &[Option<u64>],
        outage: Option<(usize, std::ops::Range<Duration>)>,
        inference: Duration,
        until: Duration,
    ) -> Vec<SimBatch> {
        let t0 = Instant::now();
        let mut cameras: Vec<SimCamera> = periods
            .iter()
            .enumerate()
            .map(|(i, p)| SimCamera {
                period: p.map(|ms| MS * ms as u32),
                silent: match &outage {
                    Some((camera, range)) if *camera == i => range.clone(),
                    _ => Duration::ZERO..Duration::ZERO,
                },
                next_at: p.map(|ms| MS * ms as u32).unwrap_or(Duration::MAX),
                seq: 0,
                waiting: None,
            })
            .collect();
        let mut live = LiveCameras::new(cameras.len(), t0);
        let mut now = Duration::ZERO;
        let deliver = |cameras: &mut Vec<SimCamera>, now: Duration| {
            for c in cameras.iter_mut() {
                while let Some(period) = c.period.filter(|_| c.next_at <= now) {
                    if !c.silent.contains(&c.next_at) {
                        c.waiting = Some(c.seq);
                        c.seq += 1;
                    }
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
            live.observe(&offers, t0 + now);
            match next_step(p, &batch, &offers, &live, cursor, false, t0 + now) {
                Step::Take(i) => {
                    items.push((i, cameras[i].waiting.take().unwrap()));
                    batch.take(i, t0 + now);
                }
                Step::Emit(closed) => {
                    batches.push(SimBatch {
                        formed: now,
                        first: batch.started.unwrap().duration_since(t0),
                        items: std::mem::take(&mut items),
                        closed,
                    });
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

    /// How many of `batches` closed for each reason.
    fn closed_counts<'a>(
        batches: impl IntoIterator<Item = &'a SimBatch>,
    ) -> BTreeMap<Closed, usize> {
        let mut counts = BTreeMap::new();
        for b in batches {
            *counts.entry(b.closed).or_default() += 1;
        }
        counts
    }

    #[test]
    fn fewer_live_cameras_than_max_batch_close_batches_without_waiting() {
        // max_batch 4, cameras in step every 100 ms: two cameras only, and
        // two live cameras of four (two dead from the start).
        let p = policy(4, 20);
        let window = p.live_window;
        assert_eq!(window, Duration::from_secs(1));
        for periods in [
            &[Some(100), Some(100)][..],
            &[Some(100), None, Some(100), None][..],
        ] {
            let batches = simulate(&p, periods, 30 * MS, Duration::from_secs(5));
            // After the start's window the dead cameras are not waited for.
            let settled: Vec<&SimBatch> = batches
                .iter()
                .filter(|b| b.first > window + p.timeout)
                .collect();
            assert_eq!(settled.len(), 39, "{periods:?}: a batch per 100 ms");
            assert_eq!(
                closed_counts(settled.iter().copied()),
                BTreeMap::from([(Closed::AllLive, 39)]),
                "{periods:?}"
            );
            for b in &settled {
                assert_eq!(b.formed, b.first, "{periods:?}: no wait");
                assert_eq!(b.items.len(), 2, "{periods:?}: {:?}", b.items);
            }
        }
        // During the start's window the never-seen cameras are still waited
        // for (they may be connecting), at most the timeout each batch.
        let batches = simulate(
            &p,
            &[Some(100), None, Some(100), None],
            30 * MS,
            Duration::from_secs(5),
        );
        let early = batches.iter().filter(|b| b.first < window);
        assert_eq!(closed_counts(early), BTreeMap::from([(Closed::Timeout, 9)]));
    }

    #[test]
    fn a_silent_camera_leaves_the_live_set_and_rejoins_when_it_delivers() {
        // Three cameras in step every 100 ms; camera 2 delivers nothing from
        // 2 s to 6 s (its last frame before is at 1.9 s, live until 2.9 s).
        let p = policy(4, 20);
        let s = Duration::from_secs;
        let ms = |n: u64| MS * n as u32;
        let batches =
            simulate_with_outage(&p, &[Some(100); 3], Some((2, s(2)..s(6))), 30 * MS, s(9));
        let during = |from: Duration, to: Duration| {
            batches
                .iter()
                .filter(move |b| b.first >= from && b.first < to)
        };
        // All three in step: every batch holds all three, at once.
        for b in during(ms(1100), s(2)).chain(during(s(6), s(9))) {
            assert_eq!(
                (b.items.len(), b.closed),
                (3, Closed::AllLive),
                "{:?}",
                b.first
            );
            assert_eq!(b.formed, b.first);
        }
        // Camera 2 silent but still live: each batch waits the timeout, no
        // longer.
        assert_eq!(
            closed_counts(during(s(2), ms(2850))),
            BTreeMap::from([(Closed::Timeout, 9)])
        );
        for b in during(s(2), ms(2850)) {
            assert_eq!(b.formed - b.first, p.timeout);
            assert_eq!(b.items.len(), 2);
        }
        // One window after its last frame it is no longer waited for.
        assert_eq!(
            closed_counts(during(s(3), s(6))),
            BTreeMap::from([(Closed::AllLive, 30)])
        );
        for b in during(s(3), s(6)) {
            assert_eq!(b.formed, b.first, "no wait for the silent camera");
            assert_eq!(b.items.len(), 2);
        }
        // It is back in the batches from its first frame on.
        let back = during(s(6), s(9)).count();
        assert_eq!(back, 30);
    }

    #[test]
    fn liveness_follows_the_last_frame_offered() {
        let t0 = Instant::now();
        let window = Duration::from_secs(1);
        let mut live = LiveCameras::new(2, t0);
        // Counted from the start until a camera first delivers.
        assert!(live.is_live(0, window, t0 + window));
        assert!(!live.is_live(0, window, t0 + window + MS));
        live.observe(&[Offer::Idle, Offer::Frame], t0 + 2 * window);
        assert!(!live.is_live(0, window, t0 + 2 * window));
        assert!(live.is_live(1, window, t0 + 3 * window));
        assert!(!live.is_live(1, window, t0 + 3 * window + MS));
        // Ended or finished cameras are not frames: no refresh.
        live.observe(&[Offer::Ending, Offer::Finished], t0 + 3 * window);
        assert!(!live.is_live(0, window, t0 + 3 * window));
        assert!(!live.is_live(2, window, t0), "unknown camera");
        assert_eq!(live_window(20 * MS), MIN_LIVE_WINDOW);
        assert_eq!(live_window(500 * MS), Duration::from_secs(5));
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
        for SimBatch {
            formed,
            first,
            items,
            ..
        } in &batches
        {
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
        for SimBatch { items, closed, .. } in &batches {
            assert_eq!(items.len(), 2);
            assert_eq!(*closed, Closed::Full);
            for &(camera, _) in items {
                served[camera] += 1;
            }
        }
        let (min, max) = (served.iter().min().unwrap(), served.iter().max().unwrap());
        assert!(max - min <= 1, "round-robin: {served:?}");
    }
}
