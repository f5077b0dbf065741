//! The two-thread inference stage (`edge_agent::pipeline`) on the real
//! models: it finds what analysing each batch in turn finds, keeps the
//! source's order, prepares at most one batch ahead and stops when its sink
//! does. Needs the assets from `scripts/setup.sh`.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_agent::inference::{Detector, Embedder};
use edge_agent::pipeline::{self, Input, Output, Preparation};
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
        pipeline::run(
            next,
            &filters,
            &mut detector,
            Some(&mut embedder),
            preparation,
            3,
            sink,
        )
        .unwrap();

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
    let grey = Frame {
        camera: 0,
        seq: 0,
        capture_ts_us: 0,
        width: 64,
        height: 48,
        stride: 192,
        data: Pixels::Owned(vec![128; 64 * 48 * 3]),
    };
    // The batch after the last one handed over is taken when prepared
    // ahead, and no more: the source is not drained.
    for (preparation, taken_at_end) in [(Preparation::Ahead, 4), (Preparation::InTurn, 3)] {
        // An endless source.
        let taken = AtomicUsize::new(0);
        let next = || {
            let seq = taken.fetch_add(1, Ordering::SeqCst) as u64;
            Some(Input::<()>::Frames(vec![Frame {
                seq,
                ..copy(&grey, 0)
            }]))
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
        pipeline::run(next, &[], &mut detector, None, preparation, 1, sink).unwrap();
        assert_eq!(seqs, vec![0, 1, 2], "{preparation:?}");
        assert_eq!(
            taken.load(Ordering::SeqCst),
            taken_at_end,
            "{preparation:?}"
        );

        // An empty source ends at once.
        let mut outputs = 0;
        pipeline::run(
            || None::<Input<()>>,
            &[],
            &mut detector,
            None,
            preparation,
            1,
            |_| {
                outputs += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(outputs, 0);
    }
}
