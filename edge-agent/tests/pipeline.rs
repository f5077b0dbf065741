//! The two-thread inference stage (`edge_agent::pipeline`) on the real
//! models: it finds what analysing each batch in turn finds, keeps the
//! source's order, prepares at most one batch ahead and stops when its sink
//! does. Needs the assets from `scripts/setup.sh`.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use edge_agent::inference::{Detector, Embedder};
use edge_agent::pipeline::{self, Input, Output, Preparation, Stage};
use edge_agent::queue::{Frame, Pixels};
use edge_agent::{Analysis, analyse_batch};
use vision::roi::{Polygon, RegionFilter};

#[allow(dead_code)] // each test crate uses part of it
mod common;

use common::{asset, ort_environment, person_params, vtest_frames};

/// An owned copy of `frame` as camera `camera` of a batch.
fn copy(frame: &Frame, camera: usize) -> Frame {
    Frame {
        camera,
        data: frame.data.clone(),
        ..*frame
    }
}

/// A frame whose buffer is shorter than its rows: it cannot be analysed.
fn truncated(camera: usize) -> Frame {
    Frame {
        camera,
        seq: 999,
        capture_ts_us: 0,
        width: 64,
        height: 48,
        stride: 192,
        data: Pixels::Owned(vec![0; 100]),
    }
}

/// A stage of `detector` alone, without masks, for batches of 1.
fn stage(detector: &mut Detector, preparation: Preparation) -> Stage<'_> {
    Stage {
        filters: &[],
        detector,
        embedder: None,
        preparation,
        max_batch: 1,
    }
}

/// A grey 64x48 frame of camera 0.
fn grey(seq: u64) -> Frame {
    Frame {
        camera: 0,
        seq,
        capture_ts_us: 0,
        width: 64,
        height: 48,
        stride: 192,
        data: Pixels::Owned(vec![128; 64 * 48 * 3]),
    }
}

/// Runs `f` on a thread of its own; fails the test when it has not
/// returned within a minute (a hung stage), or gives what it returned.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the stage hung")
}

fn detector() -> Detector {
    Detector::load(
        &ort_environment(),
        &asset("yolov3-tiny.onnx"),
        person_params(),
        0,
    )
    .unwrap()
}

/// What one batch gave: each frame's (camera, seq) and its analysis or error.
type Found = Vec<((usize, u64), Result<Analysis, String>)>;

fn found(
    frames: &[Frame],
    analyses: Vec<Result<Analysis, edge_agent::inference::InferenceError>>,
) -> Found {
    frames
        .iter()
        .zip(analyses)
        .map(|(f, a)| ((f.camera, f.seq), a.map_err(|e| e.to_string())))
        .collect()
}

#[test]
fn the_pipeline_finds_what_each_batch_in_turn_finds_in_the_source_order() {
    let env = ort_environment();
    let mut detector = detector();
    let mut embedder =
        Embedder::load(&env, &asset("mobilenetv2-embedder.onnx"), 128, 64, 0).unwrap();
    let video = vtest_frames(|seq| seq % 30 == 0, 8);
    // Camera 1 sees only the left half of the picture.
    let left_half = RegionFilter {
        include: vec![
            Polygon::new(vec![[0.0, 0.0], [384.0, 0.0], [384.0, 576.0], [0.0, 576.0]]).unwrap(),
        ],
        ..Default::default()
    };
    let filters = [RegionFilter::default(), left_half];
    // Batches of 3, 1, 2 (one of them unreadable) and 3 frames, with markers
    // between them.
    let batches: Vec<Vec<Frame>> = vec![
        vec![copy(&video[0], 0), copy(&video[1], 1), copy(&video[2], 2)],
        vec![copy(&video[3], 1)],
        vec![truncated(0), copy(&video[4], 1)],
        vec![copy(&video[5], 0), copy(&video[6], 1), copy(&video[7], 2)],
    ];

    // Each batch in turn, on the calling thread.
    let mut expected = Vec::new();
    for batch in &batches {
        let items: Vec<(&Frame, &RegionFilter)> = batch
            .iter()
            .map(|f| (f, filters.get(f.camera).unwrap_or(&filters[0])))
            .collect();
        let analysis = analyse_batch(&items, &mut detector, Some(&mut embedder));
        expected.push(found(batch, analysis.frames));
    }
    let people: usize = expected
        .iter()
        .flatten()
        .filter_map(|(_, a)| a.as_ref().ok())
        .map(|a| a.detections.len())
        .sum();
    assert!(people >= 10, "vtest.avi has people: {people}");
    let masked: u64 = expected
        .iter()
        .flatten()
        .filter_map(|(_, a)| a.as_ref().ok())
        .map(|a| a.masked)
        .sum();
    assert!(masked > 0, "camera 1's ROI masks someone");

    // The same batches through the stage, a marker after each, in both
    // modes.
    for preparation in [Preparation::Ahead, Preparation::InTurn] {
        // Batches taken from the source beyond those handed to the sink.
        let lead = match preparation {
            Preparation::Ahead => 1,
            Preparation::InTurn => 0,
        };
        let mut source = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let frames = batch
                .iter()
                .map(|f| {
                    if f.seq == 999 {
                        truncated(f.camera)
                    } else {
                        copy(f, f.camera)
                    }
                })
                .collect();
            source.push(Input::Frames(frames));
            source.push(Input::Marker(i));
        }
        let mut source = source.into_iter();
        let taken = AtomicUsize::new(0);
        let next = || {
            let item = source.next();
            if item.is_some() {
                taken.fetch_add(1, Ordering::SeqCst);
            }
            item
        };
        let (mut outputs, mut markers, mut given, mut most_ahead) = (Vec::new(), Vec::new(), 0, 0);
        let sink = |output: Output<usize>| {
            given += 1;
            let ahead = taken.load(Ordering::SeqCst) - given;
            assert!(ahead <= lead, "{preparation:?}: {ahead} taken ahead");
            most_ahead = most_ahead.max(ahead);
            match output {
                Output::Marker(i) => markers.push((i, outputs.len())),
                Output::Analysed { frames, analysis } => {
                    let t = &analysis.timings;
                    let readable = frames.iter().filter(|f| f.seq != 999).count();
                    assert_eq!(t.frames, readable);
                    assert!(t.letterbox.is_some() && t.detect.is_some());
                    outputs.push(found(&frames, analysis.frames));
                }
            }
            ControlFlow::Continue(())
        };
        let stage = Stage {
            filters: &filters,
            detector: &mut detector,
            embedder: Some(&mut embedder),
            preparation,
            // Batches of 3 grow the inputs.
            max_batch: 2,
        };
        pipeline::run(stage, next, || (), sink).unwrap();

        assert_eq!(
            markers,
            vec![(0, 1), (1, 2), (2, 3), (3, 4)],
            "{preparation:?}"
        );
        assert_eq!(outputs.len(), expected.len());
        for (i, (got, want)) in outputs.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{preparation:?}: batch {i}");
        }
        let (frame, result) = &outputs[2][0];
        assert_eq!(*frame, (0, 999));
        assert!(
            result.as_ref().is_err_and(|e| e.contains("bad frame")),
            "{result:?}"
        );
        if preparation == Preparation::InTurn {
            assert_eq!(most_ahead, 0);
        }
    }
}

#[test]
fn a_sink_that_stops_stops_the_pipeline_without_draining_its_source() {
    let mut detector = detector();
    // The batch after the last one handed over is taken when prepared
    // ahead, and no more: the source is not drained.
    for (preparation, taken_at_end) in [(Preparation::Ahead, 4), (Preparation::InTurn, 3)] {
        // An endless source.
        let taken = AtomicUsize::new(0);
        let next = || {
            let seq = taken.fetch_add(1, Ordering::SeqCst) as u64;
            Some(Input::<()>::Frames(vec![grey(seq)]))
        };
        let mut seqs = Vec::new();
        let sink = |output: Output<()>| {
            let Output::Analysed { frames, analysis } = output else {
                panic!("no marker was given");
            };
            assert!(analysis.frames[0].as_ref().unwrap().detections.is_empty());
            seqs.push(frames[0].seq);
            if seqs.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let halted = AtomicUsize::new(0);
        let halt = || {
            halted.fetch_add(1, Ordering::SeqCst);
        };
        pipeline::run(stage(&mut detector, preparation), next, halt, sink).unwrap();
        assert_eq!(halted.load(Ordering::SeqCst), 1, "halted once");
        assert_eq!(seqs, vec![0, 1, 2], "{preparation:?}");
        assert_eq!(
            taken.load(Ordering::SeqCst),
            taken_at_end,
            "{preparation:?}"
        );

        // An empty source ends at once.
        let mut outputs = 0;
        pipeline::run(
            stage(&mut detector, preparation),
            || None::<Input<()>>,
            || (),
            |_| {
                outputs += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(outputs, 0);
    }
}

#[test]
fn batches_with_no_readable_frame_pass_and_the_stage_keeps_going() {
    // Three batches nothing can be read of, then a readable one: each mode
    // reports the bad frames and still analyses the last batch (the inputs
    // of the unreadable batches come back for the next ones).
    for preparation in [Preparation::Ahead, Preparation::InTurn] {
        let outputs = within_a_minute(move || {
            let mut detector = detector();
            let mut source = vec![
                Input::<()>::Frames(vec![truncated(0)]),
                Input::Frames(vec![truncated(0)]),
                Input::Frames(vec![truncated(0)]),
                Input::Frames(vec![grey(7)]),
            ]
            .into_iter();
            let mut outputs = Vec::new();
            let sink = |output: Output<()>| {
                let Output::Analysed { frames, analysis } = output else {
                    panic!("no marker was given");
                };
                let t = &analysis.timings;
                outputs.push((
                    frames[0].seq,
                    analysis.frames[0].is_ok(),
                    t.frames,
                    t.detect.is_some(),
                ));
                ControlFlow::Continue(())
            };
            pipeline::run(
                stage(&mut detector, preparation),
                || source.next(),
                || (),
                sink,
            )
            .unwrap();
            outputs
        });
        assert_eq!(
            outputs,
            vec![
                (999, false, 0, false),
                (999, false, 0, false),
                (999, false, 0, false),
                (7, true, 1, true),
            ],
            "{preparation:?}"
        );
    }
}

#[test]
fn halt_ends_a_waiting_source_when_the_sink_stops_or_panics() {
    for (preparation, panics) in [
        (Preparation::Ahead, false),
        (Preparation::Ahead, true),
        (Preparation::InTurn, true),
    ] {
        let (halted, outcome) = within_a_minute(move || {
            let mut detector = detector();
            // Like the agent's frame queue: after one batch, the source
            // waits for frames until it is halted, then ends.
            let halted = AtomicBool::new(false);
            let mut given = 0;
            let next = || {
                if given < 1 {
                    given += 1;
                    return Some(Input::<()>::Frames(vec![grey(given)]));
                }
                while !halted.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                None
            };
            let sink = |_: Output<()>| {
                if panics {
                    panic!("the sink fails");
                }
                ControlFlow::Break(())
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pipeline::run(
                    stage(&mut detector, preparation),
                    next,
                    || halted.store(true, Ordering::SeqCst),
                    sink,
                )
            }));
            (halted.load(Ordering::SeqCst), outcome.is_err())
        });
        assert!(halted, "{preparation:?}, panics: {panics}");
        assert_eq!(
            outcome, panics,
            "{preparation:?}: the panic goes on to the caller"
        );
    }
}
