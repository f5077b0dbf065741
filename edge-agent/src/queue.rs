//! The hand-off between camera sources and the inference worker.
//!
//! One slot per camera. A live camera **keeps the newest** frame: a frame that
//! arrives while the previous one still waits replaces it, and the replaced
//! frame is counted as dropped (inference lag never grows a backlog). A file
//! source **waits** instead, so every frame of a recording is analysed. The
//! worker serves cameras round-robin, so one busy camera cannot starve others.

use std::sync::{Condvar, Mutex, MutexGuard};

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
    pub data: Vec<u8>,
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

#[derive(Debug, Default)]
struct Slot {
    frame: Option<Frame>,
    ended: bool,
    finished: bool,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    cursor: usize,
    stopped: bool,
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
                cursor: 0,
                stopped: false,
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

    /// Blocks until there is something for the worker.
    pub fn next(&self) -> Next {
        let mut state = self.lock();
        loop {
            let n = state.slots.len();
            for step in 0..n {
                let i = (state.cursor + step) % n;
                let slot = &mut state.slots[i];
                if let Some(frame) = slot.frame.take() {
                    state.cursor = (i + 1) % n;
                    drop(state);
                    self.changed.notify_all();
                    return Next::Frame(frame);
                }
                if slot.ended && !slot.finished {
                    slot.finished = true;
                    return Next::Ended(i);
                }
            }
            if state.stopped || state.slots.iter().all(|s| s.finished) {
                return Next::Closed;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
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
            data: vec![0; 3],
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
