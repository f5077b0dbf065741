//! The hand-off between camera sources and the inference worker.
//!
//! One slot per camera. A live camera **keeps the newest** frame: a frame that
//! arrives while the previous one still waits replaces it, and the replaced
//! frame is counted as dropped (inference lag never grows a backlog). A file
//! source **waits** instead, so every frame of a recording is analysed. The
//! worker serves cameras round-robin, so one busy camera cannot starve others,
//! and takes frames of several cameras at once as one batch following the
//! [`batch`](crate::batch) policy.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::batch::{
    BatchPolicy, Closed, Collecting, LiveCameras, Offer, Step, cursor_after, next_step,
};

/// A decoded RGB frame.
#[derive(Debug)]
pub struct Frame {
    /// Index of the camera in the configuration.
    pub camera: usize,
    /// Per-camera sequence number of frames delivered by the decoder.
    pub seq: u64,
    /// Capture time, Unix microseconds.
    pub capture_ts_us: i64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row stride in bytes.
    pub stride: usize,
    /// RGB24 pixels.
    pub data: Pixels,
}

/// A frame's pixels: the decoder's buffer itself, mapped for reading (no
/// copy; the buffer returns to GStreamer's pool when the frame is dropped,
/// so a running camera reuses a few buffers instead of allocating 1.3 MB
/// per frame), or bytes of its own.
pub enum Pixels {
    /// A decoded GStreamer buffer, mapped readable.
    Mapped(gstreamer::MappedBuffer<gstreamer::buffer::Readable>),
    /// Owned bytes (tests, copies).
    Owned(Vec<u8>),
}

impl std::ops::Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Mapped(buffer) => buffer.as_slice(),
            Pixels::Owned(bytes) => bytes,
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(bytes: Vec<u8>) -> Self {
        Pixels::Owned(bytes)
    }
}

/// A copy of the bytes (a mapped buffer is not shared: it would hold the
/// decoder's buffer back from its pool).
impl Clone for Pixels {
    fn clone(&self) -> Self {
        Pixels::Owned(self.to_vec())
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Pixels::Mapped(_) => "mapped",
            Pixels::Owned(_) => "owned",
        };
        write!(f, "Pixels({kind}, {} bytes)", self.len())
    }
}

/// What a full slot does with a new frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Replace the waiting frame (live sources).
    KeepNewest,
    /// Block until the worker takes the waiting frame (files).
    Wait,
}

/// Result of [`FrameQueue::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The frame was queued.
    Stored,
    /// The frame was queued and replaced an older one, which is dropped.
    Replaced,
    /// The queue is stopped; the frame was discarded.
    Stopped,
}

/// What the worker gets next.
#[derive(Debug)]
pub enum Next {
    /// A frame to analyse.
    Frame(Frame),
    /// The camera's stream ended after its last frame.
    Ended(usize),
    /// Nothing more will come.
    Closed,
}

/// What the worker gets next, in batches.
#[derive(Debug)]
pub enum NextBatch {
    /// Frames to analyse together, at most one per camera.
    Frames(Vec<Frame>),
    /// The camera's stream ended after its last frame.
    Ended(usize),
    /// Nothing more will come.
    Closed,
}

#[derive(Debug, Default)]
struct Slot {
    frame: Option<Frame>,
    ended: bool,
    finished: bool,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    /// Which cameras a batch waits for.
    live: LiveCameras,
    cursor: usize,
    stopped: bool,
    /// Batches emitted, by why they closed (in [`Closed::ALL`]'s order).
    closed: [u64; Closed::ALL.len()],
}

/// Per-camera single-frame slots shared by the sources and the worker.
#[derive(Debug)]
pub struct FrameQueue {
    state: Mutex<State>,
    changed: Condvar,
}

impl FrameQueue {
    /// A queue for `cameras` cameras.
    pub fn new(cameras: usize) -> Self {
        let slots = (0..cameras).map(|_| Slot::default()).collect();
        FrameQueue {
            state: Mutex::new(State {
                slots,
                live: LiveCameras::new(cameras, Instant::now()),
                cursor: 0,
                stopped: false,
                closed: [0; Closed::ALL.len()],
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain data; the slots stay consistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offers a frame from its camera's source.
    pub fn put(&self, frame: Frame, when_full: WhenFull) -> Put {
        let mut state = self.lock();
        let camera = frame.camera;
        if when_full == WhenFull::Wait {
            while state.slots[camera].frame.is_some() && !state.stopped {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
        if state.stopped {
            return Put::Stopped;
        }
        let replaced = state.slots[camera].frame.replace(frame).is_some();
        drop(state);
        self.changed.notify_all();
        if replaced { Put::Replaced } else { Put::Stored }
    }

    /// Marks a camera's stream as ended; the worker sees [`Next::Ended`] after
    /// its last frame.
    pub fn end(&self, camera: usize) {
        self.lock().slots[camera].ended = true;
        self.changed.notify_all();
    }

    /// Stops the queue: waiting sources return, the worker drains the frames
    /// already queued and then gets [`Next::Closed`].
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Batches emitted so far, by why they closed.
    pub fn closed_batches(&self) -> [(Closed, u64); Closed::ALL.len()] {
        let closed = self.lock().closed;
        Closed::ALL.map(|why| (why, closed[why as usize]))
    }

    /// Blocks until there is something for the worker: one frame at a time.
    pub fn next(&self) -> Next {
        let one = BatchPolicy::new(1, Duration::ZERO);
        match self.next_batch(&one) {
            NextBatch::Frames(mut frames) => match frames.pop() {
                Some(frame) => Next::Frame(frame),
                None => Next::Closed,
            },
            NextBatch::Ended(camera) => Next::Ended(camera),
            NextBatch::Closed => Next::Closed,
        }
    }

    /// Blocks until there is something for the worker: up to
    /// `policy.max_batch` frames of different cameras, waiting at most
    /// `policy.timeout` after the first for the others.
    pub fn next_batch(&self, policy: &BatchPolicy) -> NextBatch {
        let mut state = self.lock();
        let mut batch = Collecting::default();
        let mut frames = Vec::with_capacity(policy.max_batch);
        let mut offers = Vec::with_capacity(state.slots.len());
        loop {
            let now = Instant::now();
            offers.clear();
            offers.extend(state.slots.iter().map(|slot| match slot {
                Slot { frame: Some(_), .. } => Offer::Frame,
                Slot { finished: true, .. } => Offer::Finished,
                Slot { ended: true, .. } => Offer::Ending,
                _ => Offer::Idle,
            }));
            state.live.observe(&offers, now);
            let step = next_step(
                policy,
                &batch,
                &offers,
                &state.live,
                state.cursor,
                state.stopped,
                now,
            );
            match step {
                Step::Take(camera) => {
                    if let Some(frame) = state.slots[camera].frame.take() {
                        frames.push(frame);
                        batch.take(camera, now);
                        // A waiting source may now put its next frame.
                        self.changed.notify_all();
                    }
                }
                Step::Emit(why) => {
                    if let Some(cursor) = cursor_after(&batch, state.slots.len()) {
                        state.cursor = cursor;
                    }
                    state.closed[why as usize] += 1;
                    return NextBatch::Frames(frames);
                }
                Step::End(camera) => {
                    state.slots[camera].finished = true;
                    return NextBatch::Ended(camera);
                }
                Step::Close => return NextBatch::Closed,
                Step::Wait(None) => {
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                Step::Wait(Some(limit)) => {
                    state = self
                        .changed
                        .wait_timeout(state, limit)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn frame(camera: usize, seq: u64) -> Frame {
        Frame {
            camera,
            seq,
            capture_ts_us: 0,
            width: 1,
            height: 1,
            stride: 3,
            data: vec![0; 3].into(),
        }
    }

    fn seq(next: Next) -> (usize, u64) {
        match next {
            Next::Frame(f) => (f.camera, f.seq),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn live_slot_keeps_the_newest_and_reports_the_drop() {
        let q = FrameQueue::new(1);
        assert_eq!(q.put(frame(0, 1), WhenFull::KeepNewest), Put::Stored);
        assert_eq!(q.put(frame(0, 2), WhenFull::KeepNewest), Put::Replaced);
        assert_eq!(seq(q.next()), (0, 2));
    }

    #[test]
    fn cameras_are_served_round_robin_and_end_after_their_last_frame() {
        let q = FrameQueue::new(2);
        q.put(frame(0, 1), WhenFull::KeepNewest);
        q.put(frame(1, 1), WhenFull::KeepNewest);
        q.end(0);
        assert_eq!(seq(q.next()), (0, 1));
        assert_eq!(seq(q.next()), (1, 1));
        assert!(matches!(q.next(), Next::Ended(0)));
        q.end(1);
        assert!(matches!(q.next(), Next::Ended(1)));
        assert!(matches!(q.next(), Next::Closed));
    }

    #[test]
    fn waiting_source_blocks_until_the_worker_takes_the_frame() {
        let q = Arc::new(FrameQueue::new(1));
        q.put(frame(0, 1), WhenFull::Wait);
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.put(frame(0, 2), WhenFull::Wait))
        };
        assert_eq!(seq(q.next()), (0, 1));
        assert_eq!(producer.join().unwrap(), Put::Stored, "nothing was dropped");
        assert_eq!(seq(q.next()), (0, 2));
    }

    fn batch(next: NextBatch) -> Vec<(usize, u64)> {
        match next {
            NextBatch::Frames(frames) => frames.iter().map(|f| (f.camera, f.seq)).collect(),
            other => panic!("expected frames, got {other:?}"),
        }
    }

    /// Three cameras, one of which never delivers: batches still form (the
    /// wait is bounded), never hold two frames of one camera, and keep each
    /// camera's order.
    #[test]
    fn batches_form_without_a_silent_camera_and_keep_each_cameras_order() {
        let q = Arc::new(FrameQueue::new(3));
        let policy = BatchPolicy::new(3, Duration::from_millis(10));
        let producers: Vec<_> = (0..2)
            .map(|camera| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for seq in 0..20 {
                        q.put(frame(camera, seq), WhenFull::Wait);
                    }
                    q.end(camera);
                })
            })
            .collect();
        let mut seen = [Vec::new(), Vec::new()];
        let mut ended = Vec::new();
        while ended.len() < 2 {
            match q.next_batch(&policy) {
                NextBatch::Frames(frames) => {
                    assert!(!frames.is_empty() && frames.len() <= 2, "{frames:?}");
                    if let [a, b] = frames.as_slice() {
                        assert_ne!(a.camera, b.camera, "one frame per camera");
                    }
                    for f in frames {
                        assert!(!ended.contains(&f.camera), "a frame after the end");
                        seen[f.camera].push(f.seq);
                    }
                }
                NextBatch::Ended(camera) => ended.push(camera),
                NextBatch::Closed => panic!("camera 2 is still open"),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let all: Vec<u64> = (0..20).collect();
        assert_eq!(seen, [all.clone(), all], "every frame, in order");
        q.stop();
        assert!(matches!(q.next_batch(&policy), NextBatch::Closed));
    }

    /// Four cameras, two of which never deliver, and a live window of zero:
    /// the silent cameras are never waited for, so no batch waits out its
    /// (long) timeout; the queue counts why each batch closed.
    #[test]
    fn silent_cameras_outside_the_live_window_are_not_waited_for() {
        let q = FrameQueue::new(4);
        let policy = BatchPolicy {
            live_window: Duration::ZERO,
            ..BatchPolicy::new(4, Duration::from_secs(2))
        };
        let mut batches = Vec::new();
        for seq in 0..5 {
            q.put(frame(0, seq), WhenFull::KeepNewest);
            q.put(frame(2, seq), WhenFull::KeepNewest);
            batches.push(batch(q.next_batch(&policy)));
        }
        q.put(frame(2, 5), WhenFull::KeepNewest);
        batches.push(batch(q.next_batch(&policy)));
        let pairs: Vec<_> = (0..5).map(|seq| vec![(0, seq), (2, seq)]).collect();
        assert_eq!(batches[..5], pairs[..]);
        assert_eq!(batches[5], [(2, 5)]);
        assert_eq!(
            q.closed_batches(),
            [
                (Closed::Full, 0),
                (Closed::AllLive, 6),
                (Closed::Timeout, 0),
                (Closed::Stopped, 0)
            ]
        );
    }

    #[test]
    fn a_batch_takes_what_is_there_and_the_end_follows_the_last_frame() {
        let q = FrameQueue::new(3);
        let policy = BatchPolicy::new(2, Duration::from_millis(1));
        q.put(frame(2, 7), WhenFull::KeepNewest);
        q.put(frame(0, 1), WhenFull::KeepNewest);
        q.put(frame(1, 4), WhenFull::KeepNewest);
        q.end(0);
        assert_eq!(batch(q.next_batch(&policy)), [(0, 1), (1, 4)], "full");
        // Camera 1 may still deliver: the batch waits for it, then goes.
        assert_eq!(batch(q.next_batch(&policy)), [(2, 7)], "after the timeout");
        assert!(matches!(q.next_batch(&policy), NextBatch::Ended(0)));
        // Round-robin: after camera 2, camera 0 (ended), then 1 and 2.
        q.put(frame(2, 8), WhenFull::KeepNewest);
        q.put(frame(1, 5), WhenFull::KeepNewest);
        assert_eq!(batch(q.next_batch(&policy)), [(1, 5), (2, 8)]);
    }

    #[test]
    fn stop_releases_waiting_sources_and_drains() {
        let q = Arc::new(FrameQueue::new(1));
        q.put(frame(0, 1), WhenFull::Wait);
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.put(frame(0, 2), WhenFull::Wait))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.stop();
        assert_eq!(producer.join().unwrap(), Put::Stopped);
        assert_eq!(seq(q.next()), (0, 1), "queued frames are drained");
        assert!(matches!(q.next(), Next::Closed));
    }
}
