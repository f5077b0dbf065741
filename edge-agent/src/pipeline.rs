//! The inference stage: batches from a source are letterboxed, run through
//! the detector and the embedder, and handed to a sink in the source's
//! order.
//!
//! With [`Preparation::Ahead`], a **preparation** thread takes the next
//! batch from its source (the frame queue in the agent, the decoded video
//! in `bench`) and letterboxes it into a free [`DetectorInput`], while the
//! **calling** thread runs the detector on the batch before, cuts the crops
//! of the people it kept, embeds them and hands the results on. The two
//! threads share exactly two inputs: one being filled, one in the model. So
//! at most one batch is prepared ahead (its frames are out of the queue,
//! where a live camera's newer frame would have replaced them: they are at
//! most one batch older than in turn), and the preparation thread waits,
//! rather than buffers more, when the model is behind: nothing is dropped
//! here, and nothing queues without bound. This pays only where the models
//! leave a core free: on two cores that ONNX Runtime keeps busy, the
//! preparation thread only competes with its threads (measured: end to end
//! up to 2 % slower). So with [`Preparation::InTurn`], the default there,
//! the calling thread takes and letterboxes each batch itself, just before
//! its detector call.
//!
//! Shutdown: the source returning `None` ends the preparation thread, and
//! the calling thread finishes the batches already prepared. A sink that
//! breaks (or panics) stops the calling thread at once; the caller's `halt`
//! then makes the source end soon (the agent stops its frame queue), and
//! the preparation thread stops at its next hand-over.

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vision::roi::RegionFilter;

use crate::inference::{Detector, DetectorInput, Embedder, InferenceError};
use crate::queue::Frame;
use crate::{BatchAnalysis, analyse_with, rgb};

/// What the source gives the preparation thread.
#[derive(Debug)]
pub enum Input<M> {
    /// Frames to analyse together (at most one per camera in the agent).
    Frames(Vec<Frame>),
    /// Something for the sink, in order with the frames around it (an
    /// end-of-stream marker, a source error).
    Marker(M),
}

/// What the sink gets, in the order the source gave it.
#[derive(Debug)]
pub enum Output<M> {
    /// A batch of frames and what was found in them.
    Analysed {
        /// The frames, as the source gave them.
        frames: Vec<Frame>,
        /// Each frame's analysis (in order), and the batch's timings.
        analysis: BatchAnalysis,
    },
    /// A marker, passed through.
    Marker(M),
}

/// Where batches are letterboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// On a preparation thread, one batch ahead of the models. Pays where
    /// the models leave a core for it; on cores they keep busy it only
    /// competes with them.
    Ahead,
    /// On the calling thread, just before each batch's detector call.
    InTurn,
}

impl Preparation {
    /// [`Ahead`](Self::Ahead) when each model's ONNX Runtime session runs
    /// on fewer intra-op threads than this machine has cores, so one is free
    /// for the preparation thread; else [`InTurn`](Self::InTurn). 0 threads
    /// (ONNX Runtime's default) counts as every core.
    pub fn for_threads(intra_threads: &[usize]) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::for_threads_on(intra_threads, cores)
    }

    /// [`for_threads`](Self::for_threads) on a machine of `cores` cores.
    pub fn for_threads_on(intra_threads: &[usize], cores: usize) -> Self {
        if !intra_threads.is_empty() && intra_threads.iter().all(|&t| t > 0 && t < cores) {
            Preparation::Ahead
        } else {
            Preparation::InTurn
        }
    }
}

/// A batch letterboxed and ready for the models.
enum Prepared<M> {
    Frames {
        frames: Vec<Frame>,
        input: Box<DetectorInput>,
        letterbox: Duration,
    },
    Marker(M),
}

/// The models a stage runs and how it letterboxes.
pub struct Stage<'a> {
    /// Each frame is masked with `filters[frame.camera]` (none when it has
    /// no entry).
    pub filters: &'a [RegionFilter],
    /// The detector; its own input is not used (the stage has its own).
    pub detector: &'a mut Detector,
    /// The embedder, if any.
    pub embedder: Option<&'a mut Embedder>,
    /// Where batches are letterboxed.
    pub preparation: Preparation,
    /// The inputs have room for batches of this many frames from the start
    /// (a larger batch grows them): one input in turn, two ahead.
    pub max_batch: usize,
}

/// Runs `stage` until `next` returns `None` (and every batch taken is
/// analysed and given to `sink`) or `sink` breaks. `halt` is called once
/// the calling thread stops taking batches, however it stops (the source
/// ended, the sink broke or panicked), before the preparation thread is
/// waited for: it must make a `next` that is waiting for input return soon
/// (the agent stops its frame queue). Fails only when the preparation
/// thread cannot be started.
pub fn run<M: Send>(
    stage: Stage<'_>,
    next: impl FnMut() -> Option<Input<M>> + Send,
    halt: impl FnOnce(),
    mut sink: impl FnMut(Output<M>) -> ControlFlow<()>,
) -> std::io::Result<()> {
    let max_batch = stage.max_batch;
    let mut models = Models {
        filters: stage.filters,
        no_filter: RegionFilter::default(),
        detector: stage.detector,
        embedder: stage.embedder,
    };
    let halt = OnDrop(Some(halt));
    if stage.preparation == Preparation::InTurn {
        let mut next = next;
        let mut spare = Some(Box::new(models.detector.new_input(max_batch)));
        while let Some(item) = next() {
            let prepared = match item {
                Input::Marker(marker) => Prepared::Marker(marker),
                Input::Frames(frames) => {
                    // Always back from the batch before.
                    let input = spare
                        .take()
                        .unwrap_or_else(|| Box::new(models.detector.new_input(max_batch)));
                    prepare(frames, input)
                }
            };
            let output = models.analyse(prepared, |input| spare = Some(input));
            if sink(output).is_break() {
                break;
            }
        }
        return Ok(());
    }
    // Rendezvous: a prepared batch is handed over only when the calling
    // thread is ready for it; the second input is the one batch of lead.
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Prepared<M>>(0);
    // Never holds more than the two inputs: sends do not block.
    let (free_tx, free_rx) = mpsc::sync_channel::<Box<DetectorInput>>(2);
    for _ in 0..2 {
        let _ = free_tx.send(Box::new(models.detector.new_input(max_batch)));
    }
    std::thread::scope(move |scope| {
        std::thread::Builder::new()
            .name("prepare".into())
            .spawn_scoped(scope, move || prepare_ahead(next, &free_rx, &ready_tx))?;
        // Moved in, with the channels' ends: when this closure ends or
        // unwinds, `halt` runs and the channels close before the scope
        // waits for the preparation thread, so a preparation thread
        // waiting for input, to hand over a batch or for a free input
        // stops.
        let _halt = halt;
        for prepared in ready_rx {
            // The input is free for the batch after next before the
            // embedder runs.
            let output = models.analyse(prepared, |input| {
                let _ = free_tx.send(input);
            });
            if sink(output).is_break() {
                break;
            }
        }
        Ok(())
    })
}

/// Calls its function when dropped (also while unwinding).
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// What the calling thread analyses with.
struct Models<'a> {
    filters: &'a [RegionFilter],
    no_filter: RegionFilter,
    detector: &'a mut Detector,
    embedder: Option<&'a mut Embedder>,
}

impl Models<'_> {
    /// Detects, masks and embeds a prepared batch; `release` gets its input
    /// back as soon as the detector is done with it (before the embedder
    /// runs), or at the end when there was no detector call (no readable
    /// frame): an input is never lost.
    fn analyse<M>(
        &mut self,
        prepared: Prepared<M>,
        release: impl FnOnce(Box<DetectorInput>),
    ) -> Output<M> {
        let (frames, input, letterbox) = match prepared {
            Prepared::Marker(marker) => return Output::Marker(marker),
            Prepared::Frames {
                frames,
                input,
                letterbox,
            } => (frames, input, letterbox),
        };
        let items: Vec<(&Frame, &RegionFilter)> = frames
            .iter()
            .map(|f| (f, self.filters.get(f.camera).unwrap_or(&self.no_filter)))
            .collect();
        let detector = &mut *self.detector;
        let mut held = Some((input, release));
        let analysis = analyse_with(
            &items,
            |rgbs, timings| {
                let Some((input, release)) = held.take() else {
                    return Err(InferenceError::Ort("the batch's input is gone".into()));
                };
                timings.letterbox = Some(letterbox);
                let started = Instant::now();
                let found = if input.len() == rgbs.len() {
                    detector.detect_prepared(&input)
                } else {
                    Err(InferenceError::Ort(format!(
                        "{} frames letterboxed for {} readable",
                        input.len(),
                        rgbs.len()
                    )))
                };
                timings.detect = Some(started.elapsed());
                release(input);
                found
            },
            self.embedder.as_deref_mut(),
        );
        if let Some((input, release)) = held.take() {
            release(input);
        }
        Output::Analysed { frames, analysis }
    }
}

/// Letterboxes the readable ones of `frames` (as the calling thread will
/// find them) into `input`.
fn prepare<M>(frames: Vec<Frame>, mut input: Box<DetectorInput>) -> Prepared<M> {
    let started = Instant::now();
    let rgbs: Vec<_> = frames.iter().filter_map(|f| rgb(f).ok()).collect();
    input.letterbox(&rgbs);
    Prepared::Frames {
        frames,
        input,
        letterbox: started.elapsed(),
    }
}

/// The preparation thread: takes from `next` until it ends or the calling
/// thread is gone.
fn prepare_ahead<M>(
    mut next: impl FnMut() -> Option<Input<M>>,
    free: &mpsc::Receiver<Box<DetectorInput>>,
    ready: &mpsc::SyncSender<Prepared<M>>,
) {
    while let Some(item) = next() {
        let prepared = match item {
            Input::Marker(marker) => Prepared::Marker(marker),
            Input::Frames(frames) => {
                let Ok(input) = free.recv() else {
                    return;
                };
                prepare(frames, input)
            }
        };
        if ready.send(prepared).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Preparation::{Ahead, InTurn};
    use super::*;

    #[test]
    fn batches_are_prepared_ahead_only_where_every_model_leaves_a_core_free() {
        assert_eq!(Preparation::for_threads_on(&[1], 2), Ahead);
        assert_eq!(Preparation::for_threads_on(&[1, 1], 2), Ahead);
        assert_eq!(Preparation::for_threads_on(&[3, 2], 4), Ahead);
        // Every core taken by a model, or ONNX Runtime's default (all).
        assert_eq!(Preparation::for_threads_on(&[2], 2), InTurn);
        assert_eq!(Preparation::for_threads_on(&[1, 2], 2), InTurn);
        assert_eq!(Preparation::for_threads_on(&[0], 8), InTurn);
        assert_eq!(Preparation::for_threads_on(&[1, 0], 8), InTurn);
        assert_eq!(Preparation::for_threads_on(&[1], 1), InTurn);
        assert_eq!(Preparation::for_threads_on(&[], 8), InTurn);
    }
}
