//! Camera topology for cross-camera re-identification: which cameras a
//! person can walk between and how long that takes (pure, no I/O).
//!
//! The topology is configured as a list of [`Link`]s (`[[reid.links]]` in
//! the tracker's TOML) and compiled into a [`Topology`] that answers one
//! question, [`Topology::gap_allowed`]: may a person last seen on camera
//! `from` at `t` be the person whose track starts on camera `to` at `t'`?
//! The gap `t' − t` is in microseconds of stream time.
//!
//! # Semantics
//! - Same camera: allowed when the gap is positive (the person left and came
//!   back; how long ago is bounded by the gallery's TTL, not here). Two
//!   tracks of one camera that overlap in time are never the same person.
//! - No links configured: **permissive**. Every pair of distinct cameras is
//!   adjacent and overlapping, with any gap (the gallery's TTL bounds it).
//! - With links: a pair of distinct cameras is allowed only through a link
//!   `from → to` (or `to → from` when `bidirectional`), with
//!   `min_transit_s ≤ gap ≤ max_transit_s`. A link with `min_transit_s = 0`
//!   means the views **overlap** (or touch): the person may be visible on
//!   both at once, so negative gaps (simultaneous presence) are allowed too.
//!   Cameras that appear in no link are isolated: only returns to the same
//!   camera match there.
//! - Links that [`validate_links`] rejects (bad numbers, self links) are
//!   ignored by [`Topology::new`], so a bad config never widens the gate.

use std::collections::{BTreeSet, HashMap};

/// One configured link between two cameras (`[[reid.links]]`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Link {
    /// Camera the person leaves. Required (empty is reported by validation).
    pub from: String,
    /// Camera the person reaches. Required (empty is reported by validation).
    pub to: String,
    /// Shortest plausible transit, seconds. Default 0: the views overlap or
    /// touch, so the person may be seen on both cameras at once.
    pub min_transit_s: f64,
    /// Longest plausible transit, seconds. Default: none, only the gallery's
    /// TTL bounds it.
    pub max_transit_s: Option<f64>,
    /// Whether the link also holds from `to` back to `from` with the same
    /// range. Default true: corridors are walked both ways.
    #[serde(default = "default_bidirectional")]
    pub bidirectional: bool,
}

/// Links are two-way unless said otherwise: most corridors are.
const fn default_bidirectional() -> bool {
    true
}

/// Every problem with a list of links, one message each (empty when fine):
/// empty camera names, self links, negative, non-finite or inverted transit
/// ranges, and duplicate directed pairs (counting the reverse direction of
/// bidirectional links).
pub fn validate_links(links: &[Link]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, link) in links.iter().enumerate() {
        for problem in link_problems(link) {
            problems.push(format!("links[{i}]: {problem}"));
        }
        let mut directions = vec![(link.from.as_str(), link.to.as_str())];
        if link.bidirectional {
            directions.push((link.to.as_str(), link.from.as_str()));
        }
        for (from, to) in directions {
            if from == to {
                continue; // reported as a self link
            }
            match seen.get(&(from, to)) {
                Some(&first) if first != i => problems.push(format!(
                    "links[{i}]: duplicate of links[{first}] ({from} → {to}); \
                     keep one link per pair of cameras"
                )),
                Some(_) => {}
                None => {
                    seen.insert((from, to), i);
                }
            }
        }
    }
    problems
}

/// Problems of one link on its own (no duplicate check).
fn link_problems(link: &Link) -> Vec<String> {
    let mut problems = Vec::new();
    if link.from.is_empty() {
        problems.push("`from` camera is empty".to_owned());
    }
    if link.to.is_empty() {
        problems.push("`to` camera is empty".to_owned());
    }
    if !link.from.is_empty() && link.from == link.to {
        problems.push(format!(
            "self link on camera {:?}; returns to the same camera are always allowed",
            link.from
        ));
    }
    let min = link.min_transit_s;
    if !(min.is_finite() && min >= 0.0) {
        problems.push(format!(
            "min_transit_s must be a finite number ≥ 0, got {min}"
        ));
    }
    if let Some(max) = link.max_transit_s {
        if !(max.is_finite() && max >= 0.0) {
            problems.push(format!(
                "max_transit_s must be a finite number ≥ 0, got {max}"
            ));
        } else if min.is_finite() && max < min {
            problems.push(format!(
                "inverted range: max_transit_s {max} < min_transit_s {min}"
            ));
        }
    }
    problems
}

/// Seconds to microseconds, saturating (`as` saturates; NaN gives 0).
pub(crate) fn secs_to_us(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}

/// An allowed range of gaps (µs, inclusive) from one camera into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GapWindow {
    /// Smallest allowed gap; `i64::MIN` for overlapping views.
    pub(crate) lo: i64,
    /// Largest allowed gap; `i64::MAX` when unbounded.
    pub(crate) hi: i64,
}

impl GapWindow {
    fn contains(self, gap_us: i64) -> bool {
        self.lo <= gap_us && gap_us <= self.hi
    }
}

/// One directed transit into a camera.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transit {
    /// Camera the person comes from.
    pub(crate) from: String,
    /// Allowed gaps.
    pub(crate) window: GapWindow,
}

/// The compiled topology; build with [`Topology::new`].
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Whether any link was configured (none: permissive).
    configured: bool,
    /// Directed transits keyed by the destination camera.
    into: HashMap<String, Vec<Transit>>,
    /// Cameras linked with a camera, in either direction.
    near: HashMap<String, BTreeSet<String>>,
    /// Unordered pairs of cameras whose views overlap (a link with
    /// `min_transit_s = 0`), stored both ways.
    overlapping: BTreeSet<(String, String)>,
}

impl Topology {
    /// Compiles links; links with problems of their own (see
    /// [`validate_links`]) are skipped.
    pub fn new(links: &[Link]) -> Self {
        let mut topology = Topology {
            configured: !links.is_empty(),
            ..Topology::default()
        };
        for link in links.iter().filter(|l| link_problems(l).is_empty()) {
            let overlap = link.min_transit_s == 0.0;
            let window = GapWindow {
                lo: if overlap {
                    i64::MIN
                } else {
                    secs_to_us(link.min_transit_s)
                },
                hi: link.max_transit_s.map_or(i64::MAX, secs_to_us),
            };
            let mut directions = vec![(&link.from, &link.to)];
            if link.bidirectional {
                directions.push((&link.to, &link.from));
            }
            for (from, to) in directions {
                topology.into.entry(to.clone()).or_default().push(Transit {
                    from: from.clone(),
                    window,
                });
                topology
                    .near
                    .entry(to.clone())
                    .or_default()
                    .insert(from.clone());
                topology
                    .near
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone());
                if overlap {
                    topology.overlapping.insert((from.clone(), to.clone()));
                    topology.overlapping.insert((to.clone(), from.clone()));
                }
            }
        }
        topology
    }

    /// True when no links are configured: every pair of cameras is adjacent
    /// and overlapping.
    pub fn is_permissive(&self) -> bool {
        !self.configured
    }

    /// Whether a person last seen on `from` may start a track on `to` after
    /// `gap_us` (new track's first timestamp minus the old one's last; may
    /// be negative when the two overlap in time).
    pub fn gap_allowed(&self, from: &str, to: &str, gap_us: i64) -> bool {
        if from == to {
            return gap_us > 0;
        }
        if self.is_permissive() {
            return true;
        }
        self.into.get(to).is_some_and(|ts| {
            ts.iter()
                .any(|t| t.from == from && t.window.contains(gap_us))
        })
    }

    /// Whether two distinct cameras' views overlap, so one person may be on
    /// both at the same time (always, when permissive).
    pub fn overlap(&self, a: &str, b: &str) -> bool {
        a != b && (self.is_permissive() || self.overlapping.contains(&(a.to_owned(), b.to_owned())))
    }

    /// Cameras linked with `camera` in either direction (empty when
    /// permissive: there every camera is a neighbour).
    pub fn neighbours(&self, camera: &str) -> impl Iterator<Item = &str> {
        self.near
            .get(camera)
            .into_iter()
            .flat_map(|set| set.iter().map(String::as_str))
    }

    /// Directed transits into `camera` (empty when permissive).
    pub(crate) fn transits_into(&self, camera: &str) -> &[Transit] {
        self.into.get(camera).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(from: &str, to: &str, min: f64, max: Option<f64>, bidirectional: bool) -> Link {
        Link {
            from: from.into(),
            to: to.into(),
            min_transit_s: min,
            max_transit_s: max,
            bidirectional,
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn empty_topology_is_permissive() {
        let t = Topology::new(&[]);
        assert!(t.is_permissive());
        assert!(t.gap_allowed("a", "b", -5 * S));
        assert!(t.gap_allowed("a", "b", 500 * S));
        assert!(t.overlap("a", "b"));
        assert!(!t.overlap("a", "a"));
        assert!(t.gap_allowed("a", "a", 1));
        assert!(!t.gap_allowed("a", "a", 0), "same frame: two people");
        assert!(
            !t.gap_allowed("a", "a", -S),
            "overlapping tracks of one camera"
        );
    }

    #[test]
    fn links_gate_by_direction_and_transit_time() {
        let t = Topology::new(&[
            link("a", "b", 2.0, Some(60.0), true),
            link("b", "c", 5.0, None, false),
            link("c", "d", 0.0, Some(10.0), true),
        ]);
        assert!(!t.is_permissive());
        assert!(t.gap_allowed("a", "b", 2 * S));
        assert!(t.gap_allowed("b", "a", 60 * S), "bidirectional");
        assert!(!t.gap_allowed("a", "b", 2 * S - 1), "too fast");
        assert!(!t.gap_allowed("a", "b", 60 * S + 1), "too slow");
        assert!(!t.gap_allowed("a", "c", 30 * S), "not adjacent");
        assert!(t.gap_allowed("b", "c", 1_000 * S), "no maximum");
        assert!(!t.gap_allowed("c", "b", 10 * S), "one-way link");
        assert!(
            t.gap_allowed("c", "d", -3 * S),
            "overlapping views: at once"
        );
        assert!(!t.gap_allowed("c", "d", 11 * S));
        assert!(t.overlap("d", "c") && !t.overlap("a", "b"));
        assert!(!t.gap_allowed("e", "a", S), "unknown camera is isolated");
        let near: Vec<&str> = t.neighbours("b").collect();
        assert_eq!(near, ["a", "c"]);
    }

    #[test]
    fn validation_reports_every_problem_and_bad_links_are_ignored() {
        let links = [
            link("a", "b", 2.0, Some(60.0), true),
            link("b", "a", 1.0, Some(5.0), false), // duplicate of the reverse of 0
            link("c", "c", 0.0, None, true),       // self link
            link("a", "d", -1.0, Some(5.0), true), // negative
            link("a", "e", 10.0, Some(5.0), true), // inverted
            link("", "f", f64::NAN, Some(f64::INFINITY), true),
        ];
        let problems = validate_links(&links);
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(problems[0].starts_with("links[1]: duplicate of links[0]"));
        assert!(problems.iter().any(|p| p.contains("self link")));
        assert!(problems.iter().any(|p| p.contains("inverted")));
        assert!(validate_links(&links[..1]).is_empty());
        let t = Topology::new(&links);
        assert!(!t.gap_allowed("a", "d", S), "negative range ignored");
        assert!(!t.gap_allowed("a", "e", 7 * S), "inverted range ignored");
    }

    #[test]
    fn links_deserialize_with_defaults_and_reject_unknown_fields() {
        let parsed: Vec<Link> =
            serde_json::from_str(r#"[{"from": "a", "to": "b", "max_transit_s": 30.0}]"#).unwrap();
        assert_eq!(parsed, [link("a", "b", 0.0, Some(30.0), true)]);
        let unknown = serde_json::from_str::<Vec<Link>>(r#"[{"from": "a", "to": "b", "mn": 1}]"#);
        assert!(unknown.is_err());
    }
}
