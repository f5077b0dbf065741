//! Deep SORT throughput: box-updates per second on one core against the
//! number of people tracked at once, with 128-d appearance embeddings.
//!
//! `cargo bench -p mot --bench deep_sort` prints one line per crowd size.
//! People walk at constant speed (bouncing off the edges) through a scene
//! whose area grows with the crowd, so density — and thus the number of
//! plausible pairs the gates let through — stays like a real camera's.

use std::time::Instant;

use mot::deep_sort::{DeepSort, DeepSortParams, Detection};
use mot::rng::SplitMix64 as Rng;

const DIM: usize = 128;

struct Person {
    x: f64,
    y: f64,
    vx: f64,
    vy: f64,
    prototype: Vec<f32>,
}

fn scene(n: usize, rng: &mut Rng) -> (Vec<Person>, f64) {
    // About 60 000 px² per person: a 1920×1080 frame holds ~35 people.
    let side = (n as f64 * 60_000.0).sqrt();
    let people = (0..n)
        .map(|_| Person {
            x: rng.uniform() * side,
            y: rng.uniform() * side,
            vx: rng.gaussian() * 2.0,
            vy: rng.gaussian() * 1.0,
            prototype: (0..DIM).map(|_| rng.gaussian() as f32).collect(),
        })
        .collect();
    (people, side)
}

fn frame(people: &mut [Person], side: f64, rng: &mut Rng) -> Vec<Detection> {
    people
        .iter_mut()
        .map(|p| {
            p.x += p.vx;
            p.y += p.vy;
            if !(0.0..side).contains(&p.x) {
                p.vx = -p.vx;
            }
            if !(0.0..side).contains(&p.y) {
                p.vy = -p.vy;
            }
            let feature = p
                .prototype
                .iter()
                .map(|v| v + 0.3 * rng.gaussian() as f32)
                .collect();
            Detection {
                tlwh: [p.x + rng.gaussian(), p.y + rng.gaussian(), 40.0, 100.0],
                confidence: 0.9,
                feature,
            }
        })
        .collect()
}

fn main() {
    println!("Deep SORT, one core, {DIM}-d appearance, nn_budget 100, paper parameters");
    println!(
        "{:>8} {:>8} {:>14} {:>16} {:>10}",
        "tracks", "frames", "ms/frame", "box-updates/s", "confirmed"
    );
    for n in [10usize, 20, 100, 1000] {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let (mut people, side) = scene(n, &mut rng);
        let mut tracker = DeepSort::new(DeepSortParams::default());
        // Warm up until every gallery is full (nn_budget frames).
        for _ in 0..110 {
            tracker.step(&frame(&mut people, side, &mut rng));
        }
        let frames = (200_000 / n).clamp(50, 5_000);
        let inputs: Vec<Vec<Detection>> = (0..frames)
            .map(|_| frame(&mut people, side, &mut rng))
            .collect();
        let start = Instant::now();
        for dets in &inputs {
            tracker.step(dets);
        }
        let seconds = start.elapsed().as_secs_f64();
        let confirmed = tracker.reported().count();
        println!(
            "{n:>8} {frames:>8} {:>14.3} {:>16.0} {confirmed:>10}",
            seconds * 1e3 / frames as f64,
            (n * frames) as f64 / seconds
        );
    }
}
