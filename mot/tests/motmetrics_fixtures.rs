//! Golden values: py-motmetrics 1.4.0's `test_motchallenge_files` on its
//! TUD-Campus and TUD-Stadtmitte fixtures (IoU distance threshold 0.5), which
//! `scripts/setup.sh` unpacks under `$ARGUS_ASSETS/motmetrics` (default
//! `~/.cache/argus/assets/motmetrics`).

use std::path::PathBuf;

use mot::eval::{self, Metrics};
use mot::motchallenge;

fn fixture(sequence: &str, file: &str) -> Vec<motchallenge::Row> {
    let dir = std::env::var_os("ARGUS_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/argus/assets")))
        .unwrap_or_else(|| PathBuf::from(".cache/argus/assets"));
    let path = dir.join("motmetrics").join(sequence).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}: run `bash scripts/setup.sh` first",
            path.display()
        )
    });
    motchallenge::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn sequence(name: &str) -> Metrics {
    let gt = fixture(name, "gt.txt");
    let test = fixture(name, "test.txt");
    eval::evaluate(&gt, &test, 0.5).metrics()
}

/// The 15 columns of motmetrics' expected table, in its order.
fn columns(m: &Metrics) -> [(&'static str, f64); 15] {
    [
        ("idf1", m.idf1),
        ("idp", m.idp),
        ("idr", m.idr),
        ("recall", m.recall),
        ("precision", m.precision),
        ("num_unique_objects", m.num_unique_objects as f64),
        ("mostly_tracked", m.mostly_tracked as f64),
        ("partially_tracked", m.partially_tracked as f64),
        ("mostly_lost", m.mostly_lost as f64),
        ("num_false_positives", m.num_false_positives as f64),
        ("num_misses", m.num_misses as f64),
        ("num_switches", m.num_switches as f64),
        ("num_fragmentations", m.num_fragmentations as f64),
        ("mota", m.mota),
        ("motp", m.motp),
    ]
}

fn assert_row(name: &str, got: &Metrics, want: [f64; 15]) {
    let mut wrong = Vec::new();
    for ((column, g), w) in columns(got).into_iter().zip(want) {
        if (g - w).abs() > 1e-6 {
            wrong.push(format!("{column}: got {g:.9}, motmetrics {w}"));
        }
    }
    assert!(wrong.is_empty(), "{name}:\n  {}", wrong.join("\n  "));
}

#[test]
fn tud_campus_tud_stadtmitte_and_overall_match_motmetrics() {
    let campus = sequence("TUD-Campus");
    let stadtmitte = sequence("TUD-Stadtmitte");
    let overall = Metrics::overall(&[campus.clone(), stadtmitte.clone()]);
    #[rustfmt::skip]
    let want = [
        ("TUD-Campus", &campus, [
            0.557659, 0.729730, 0.451253, 0.582173, 0.941441,
            8.0, 1.0, 6.0, 1.0, 13.0, 150.0, 7.0, 7.0, 0.526462, 0.277201,
        ]),
        ("TUD-Stadtmitte", &stadtmitte, [
            0.644619, 0.819760, 0.531142, 0.608997, 0.939920,
            10.0, 5.0, 4.0, 1.0, 45.0, 452.0, 7.0, 6.0, 0.564014, 0.345904,
        ]),
        ("OVERALL", &overall, [
            0.624296, 0.799176, 0.512211, 0.602640, 0.940268,
            18.0, 6.0, 10.0, 2.0, 58.0, 602.0, 14.0, 13.0, 0.555116, 0.330177,
        ]),
    ];
    for (name, got, values) in want {
        assert_row(name, got, values);
    }
    // The files' own sizes, as a check on the parsing.
    assert_eq!((campus.num_objects, campus.num_predictions), (359, 222));
    assert_eq!(
        (stadtmitte.num_objects, stadtmitte.num_predictions),
        (1156, 749)
    );
}
