//! The rules compiled for the engine, one check per kind, with the state
//! each keeps: who is in which zone since when, how many people each camera
//! shows, who ran last when, and the topology for impossible paths.

use std::collections::{BTreeMap, BTreeSet};

use mot::topology::{Link, Topology, validate_links};

use super::book::{AlertBook, AlertKey, Raise};
use super::state::Visit;
use super::{person_evidence, running_evidence, secs_to_us, us_to_secs};
use crate::config::{Rule, RuleKind, Severity};
use crate::zone::{DailyWindow, Polygon};
use crate::{AlertEvent, Evidence};

/// A rule ready to run: what it is and what it remembers.
pub(crate) struct CompiledRule {
    /// Name, severity, cool-down, cameras.
    pub(crate) meta: RuleMeta,
    /// The check and its state.
    pub(crate) check: Check,
}

/// What every rule has.
pub(crate) struct RuleMeta {
    /// The rule's name.
    pub(crate) name: String,
    /// Severity of its alerts.
    pub(crate) severity: Severity,
    /// Cool-down after a close, µs.
    pub(crate) cooldown_us: i64,
    /// Cameras it watches; empty: all.
    pub(crate) cameras: BTreeSet<String>,
}

impl RuleMeta {
    /// Whether the rule watches the camera.
    pub(crate) fn applies(&self, camera: &str) -> bool {
        self.cameras.is_empty() || self.cameras.contains(camera)
    }
}

/// The check of a rule, with its state.
pub(crate) enum Check {
    /// Loitering and restricted: time in a zone, within a window.
    Dwell(Dwell),
    /// Too many people on a camera.
    Occupancy(Occupancy),
    /// Too fast.
    Running(Running),
    /// Through the topology; no state (the engine keeps last cameras).
    ImpossiblePath,
    /// A camera down; no state (the engine keeps camera health).
    CameraDown(CameraDown),
}

/// Compiles one validated rule.
pub(crate) fn compile(rule: &Rule) -> Result<CompiledRule, String> {
    let zone = |points: &Option<Vec<[f64; 2]>>| points.as_deref().map(Polygon::new).transpose();
    let check = match &rule.kind {
        RuleKind::Loitering(r) => Check::Dwell(Dwell {
            restricted: false,
            zone: zone(&r.zone)?,
            window: None,
            max_dwell_us: secs_to_us(r.max_dwell_s),
            absence_us: secs_to_us(r.absence_s),
            stays: BTreeMap::new(),
        }),
        RuleKind::Restricted(r) => Check::Dwell(Dwell {
            restricted: true,
            zone: zone(&r.zone)?,
            window: r.window.as_deref().map(str::parse).transpose()?,
            max_dwell_us: 0,
            absence_us: secs_to_us(r.absence_s),
            stays: BTreeMap::new(),
        }),
        RuleKind::Occupancy(r) => Check::Occupancy(Occupancy {
            zone: zone(&r.zone)?,
            max_people: r.max_people,
            min_duration_us: secs_to_us(r.min_duration_s),
            absence_us: secs_to_us(r.absence_s),
            crowds: BTreeMap::new(),
        }),
        RuleKind::Running(r) => Check::Running(Running {
            max_speed: r.max_speed,
            absence_us: secs_to_us(r.absence_s),
            fast: BTreeMap::new(),
        }),
        RuleKind::ImpossiblePath(_) => Check::ImpossiblePath,
        RuleKind::CameraDown(r) => Check::CameraDown(CameraDown {
            max_down_us: secs_to_us(r.max_down_s),
        }),
    };
    Ok(CompiledRule {
        meta: RuleMeta {
            name: rule.name.clone(),
            severity: rule.severity,
            cooldown_us: secs_to_us(rule.cooldown_s),
            cameras: rule.kind.cameras().iter().cloned().collect(),
        },
        check,
    })
}

/// One usable track of a frame.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Global person id.
    pub(crate) person: u64,
    /// Bottom centre of the box.
    pub(crate) feet: [f64; 2],
    /// Centre of the box.
    pub(crate) centre: [f64; 2],
    /// Smoothed calibrated speed, once there are enough observations.
    pub(crate) speed: Option<f64>,
    /// The camera the person was on before this one, and when last seen
    /// there, when this frame moved them.
    pub(crate) transition: Option<(String, i64)>,
}

/// A frame being applied to the rules.
pub(crate) struct FrameCtx<'a> {
    /// Its camera.
    pub(crate) camera: &'a str,
    /// Its capture timestamp.
    pub(crate) ts: i64,
    /// Its usable tracks.
    pub(crate) seen: &'a [Seen],
    /// The camera's persons, for evidence.
    pub(crate) visits: Option<&'a BTreeMap<u64, Visit>>,
}

impl FrameCtx<'_> {
    /// The visit of a person of this frame.
    pub(crate) fn visit(&self, person: u64) -> Option<&Visit> {
        self.visits.and_then(|visits| visits.get(&person))
    }
}

/// What a rule needs to raise alerts.
pub(crate) struct Raiser<'a> {
    /// The rule's index.
    pub(crate) index: usize,
    /// The rule.
    pub(crate) meta: &'a RuleMeta,
    /// Open alerts and cool-downs.
    pub(crate) book: &'a mut AlertBook,
    /// Where events go.
    pub(crate) out: &'a mut Vec<AlertEvent>,
}

/// Loitering (`max_dwell_us > 0`, no window) and restricted (`0`, maybe a
/// window): a person in the zone long enough raises.
pub(crate) struct Dwell {
    /// Restricted (for messages).
    pub(crate) restricted: bool,
    /// Where; none: everywhere.
    pub(crate) zone: Option<Polygon>,
    /// When; none: always.
    pub(crate) window: Option<DailyWindow>,
    /// Time in the zone that raises.
    pub(crate) max_dwell_us: i64,
    /// Unseen in the zone this long, a person has left it.
    pub(crate) absence_us: i64,
    /// Persons in the zone, by camera and person.
    pub(crate) stays: BTreeMap<(String, u64), Stay>,
}

/// A person's stay in a zone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stay {
    /// First observation in the zone.
    pub(crate) entered_us: i64,
    /// Latest observation in the zone.
    pub(crate) last_in_us: i64,
}

impl Dwell {
    /// When the stay ends unless the person is seen in the zone again, and
    /// whether it is the window's end rather than absence that ends it.
    pub(crate) fn leave_at(&self, stay: &Stay) -> (i64, bool) {
        let absent = stay.last_in_us.saturating_add(self.absence_us);
        match self.window.map(|w| w.end_after(stay.entered_us)) {
            Some(end) if end < absent => (end, true),
            _ => (absent, false),
        }
    }

    /// Records who is in the zone, raising for those there long enough.
    pub(crate) fn observe(&mut self, frame: &FrameCtx<'_>, alert: Raiser<'_>) {
        if self.window.is_some_and(|w| !w.contains(frame.ts)) {
            return;
        }
        for s in frame.seen {
            if self
                .zone
                .as_ref()
                .is_some_and(|z| !z.contains(s.feet[0], s.feet[1]))
            {
                continue;
            }
            let stay = self
                .stays
                .entry((frame.camera.to_owned(), s.person))
                .or_insert(Stay {
                    entered_us: frame.ts,
                    last_in_us: frame.ts,
                });
            stay.last_in_us = frame.ts;
            let dwell_us = frame.ts.saturating_sub(stay.entered_us);
            let key = AlertKey::person(alert.index, frame.camera, s.person);
            if dwell_us < self.max_dwell_us || !alert.book.can_raise(&key, frame.ts) {
                continue;
            }
            let dwell_s = us_to_secs(dwell_us);
            let message = if self.restricted {
                let during = self
                    .window
                    .map(|w| format!(" during {w} UTC"))
                    .unwrap_or_default();
                format!(
                    "Person {} is in the restricted zone of camera {}{during}",
                    s.person, frame.camera
                )
            } else {
                format!(
                    "Person {} has stayed {dwell_s:.1} s in the zone of camera {} (limit {} s)",
                    s.person,
                    frame.camera,
                    us_to_secs(self.max_dwell_us)
                )
            };
            let evidence = Evidence {
                dwell_s,
                ..person_evidence(frame.visit(s.person))
            };
            let raise = Raise {
                ts_us: frame.ts,
                trigger_ts_us: frame.ts,
                person_ids: vec![s.person],
                message,
                evidence,
            };
            alert.book.raise(key, alert.meta, raise, alert.out);
        }
    }
}

/// Too many people at once on a camera.
pub(crate) struct Occupancy {
    /// Where people are counted; none: everywhere.
    pub(crate) zone: Option<Polygon>,
    /// Most people allowed.
    pub(crate) max_people: u32,
    /// How long the count must stay above the limit.
    pub(crate) min_duration_us: i64,
    /// Without frames this long, an open alert closes.
    pub(crate) absence_us: i64,
    /// Per camera.
    pub(crate) crowds: BTreeMap<String, Crowd>,
}

/// The count of one camera.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crowd {
    /// First frame of the current run of frames above the limit.
    pub(crate) over_since_us: Option<i64>,
    /// The camera's latest frame.
    pub(crate) last_frame_us: i64,
}

impl Occupancy {
    /// Counts the frame's people in the zone; raises when the count has been
    /// above the limit long enough, closes when it no longer is.
    pub(crate) fn observe(&mut self, frame: &FrameCtx<'_>, alert: Raiser<'_>) {
        let inside: BTreeSet<u64> = frame
            .seen
            .iter()
            .filter(|s| {
                self.zone
                    .as_ref()
                    .is_none_or(|z| z.contains(s.feet[0], s.feet[1]))
            })
            .map(|s| s.person)
            .collect();
        let count = u32::try_from(inside.len()).unwrap_or(u32::MAX);
        let crowd = self.crowds.entry(frame.camera.to_owned()).or_insert(Crowd {
            over_since_us: None,
            last_frame_us: frame.ts,
        });
        crowd.last_frame_us = frame.ts;
        let key = AlertKey::camera(alert.index, frame.camera);
        if count <= self.max_people {
            crowd.over_since_us = None;
            let camera = frame.camera;
            let max = self.max_people;
            alert
                .book
                .close(&key, alert.meta, frame.ts, alert.out, |open| {
                    let message =
                        format!("Camera {camera} is back to {count} people (limit {max})");
                    let evidence = Evidence {
                        count: Some(count),
                        last_seen_us: Some(frame.ts),
                        dwell_s: us_to_secs(frame.ts.saturating_sub(open.trigger_ts_us))
                            + open.evidence.dwell_s,
                        ..Evidence::default()
                    };
                    (message, evidence)
                });
            return;
        }
        let since = *crowd.over_since_us.get_or_insert(frame.ts);
        let over_us = frame.ts.saturating_sub(since);
        if over_us < self.min_duration_us || !alert.book.can_raise(&key, frame.ts) {
            return;
        }
        let message = format!(
            "{count} people on camera {} (limit {}) for {:.1} s",
            frame.camera,
            self.max_people,
            us_to_secs(over_us)
        );
        let evidence = Evidence {
            count: Some(count),
            last_seen_us: Some(frame.ts),
            dwell_s: us_to_secs(over_us),
            ..Evidence::default()
        };
        let raise = Raise {
            ts_us: frame.ts,
            trigger_ts_us: frame.ts,
            person_ids: inside.into_iter().collect(),
            message,
            evidence,
        };
        alert.book.raise(key, alert.meta, raise, alert.out);
    }
}

/// Too fast.
pub(crate) struct Running {
    /// Largest allowed calibrated speed.
    pub(crate) max_speed: f64,
    /// Not faster for this long, an alert closes.
    pub(crate) absence_us: i64,
    /// Latest observation above the limit, per camera and person.
    pub(crate) fast: BTreeMap<(String, u64), i64>,
}

impl Running {
    /// Raises for people whose smoothed speed is above the limit.
    pub(crate) fn observe(&mut self, frame: &FrameCtx<'_>, alert: Raiser<'_>) {
        for s in frame.seen {
            let Some(speed) = s.speed.filter(|&speed| speed > self.max_speed) else {
                continue;
            };
            self.fast
                .insert((frame.camera.to_owned(), s.person), frame.ts);
            let key = AlertKey::person(alert.index, frame.camera, s.person);
            if !alert.book.can_raise(&key, frame.ts) {
                continue;
            }
            let message = format!(
                "Person {} is moving at {speed:.2} on camera {} (limit {})",
                s.person, frame.camera, self.max_speed
            );
            let raise = Raise {
                ts_us: frame.ts,
                trigger_ts_us: frame.ts,
                person_ids: vec![s.person],
                message,
                evidence: running_evidence(frame.visit(s.person), frame.ts),
            };
            alert.book.raise(key, alert.meta, raise, alert.out);
        }
    }
}

/// A camera down too long.
pub(crate) struct CameraDown {
    /// Down this long raises.
    pub(crate) max_down_us: i64,
}

/// Raises (and at once closes) an alert for every person of the frame who
/// arrived from a camera the topology says they cannot have come from in
/// that time.
pub(crate) fn impossible_paths(paths: &Paths, frame: &FrameCtx<'_>, alert: Raiser<'_>) {
    for s in frame.seen {
        let Some((previous, previous_seen)) = &s.transition else {
            continue;
        };
        let gap_us = frame.ts.saturating_sub(*previous_seen);
        let Some(reason) = paths.impossible(previous, frame.camera, gap_us) else {
            continue;
        };
        let key = AlertKey::person(alert.index, frame.camera, s.person);
        if !alert.book.can_raise(&key, frame.ts) {
            continue;
        }
        let message = format!(
            "Person {} reached camera {} {:.1} s after camera {previous}: {reason}",
            s.person,
            frame.camera,
            us_to_secs(gap_us)
        );
        let evidence = Evidence {
            previous_camera: Some(previous.clone()),
            previous_seen_us: Some(*previous_seen),
            ..person_evidence(frame.visit(s.person))
        };
        let raise = Raise {
            ts_us: frame.ts,
            trigger_ts_us: frame.ts,
            person_ids: vec![s.person],
            message,
            evidence,
        };
        alert.book.raise(key.clone(), alert.meta, raise, alert.out);
        alert
            .book
            .close(&key, alert.meta, frame.ts, alert.out, |open| {
                let message = format!("{} (instant alert)", open.message);
                (message, open.evidence.clone())
            });
    }
}

/// The topology as impossible_path reads it.
pub(crate) struct Paths {
    /// The tracker's compiled topology.
    topology: Topology,
    /// Shortest transit per directed pair of linked cameras, µs
    /// (`i64::MIN` for overlapping views).
    min_transit_us: BTreeMap<(String, String), i64>,
}

impl Paths {
    /// Compiles the links (those with problems of their own are ignored, as
    /// [`Topology::new`] does).
    pub(crate) fn new(links: &[Link]) -> Self {
        let mut min_transit_us: BTreeMap<(String, String), i64> = BTreeMap::new();
        for link in links
            .iter()
            .filter(|link| validate_links(std::slice::from_ref(link)).is_empty())
        {
            let lo = if link.min_transit_s == 0.0 {
                i64::MIN
            } else {
                secs_to_us(link.min_transit_s)
            };
            let mut directions = vec![(&link.from, &link.to)];
            if link.bidirectional {
                directions.push((&link.to, &link.from));
            }
            for (from, to) in directions {
                min_transit_us
                    .entry((from.clone(), to.clone()))
                    .and_modify(|min| *min = (*min).min(lo))
                    .or_insert(lo);
            }
        }
        Paths {
            topology: Topology::new(links),
            min_transit_us,
        }
    }

    /// Why walking from `from` to `to` in `gap_us` is impossible, or none.
    /// Arriving later than a link's `max_transit_s` is late, not impossible.
    pub(crate) fn impossible(&self, from: &str, to: &str, gap_us: i64) -> Option<String> {
        if self.topology.gap_allowed(from, to, gap_us) {
            return None;
        }
        match self.min_transit_us.get(&(from.to_owned(), to.to_owned())) {
            None => Some(format!("no link from camera {from} to camera {to}")),
            Some(&min) if gap_us >= min => None,
            Some(&min) => Some(format!(
                "faster than the {:.1} s minimum transit",
                us_to_secs(min)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_tell_impossible_from_late() {
        let link = |from: &str, to: &str, min, max| Link {
            from: from.into(),
            to: to.into(),
            min_transit_s: min,
            max_transit_s: max,
            bidirectional: true,
        };
        let paths = Paths::new(&[link("a", "b", 5.0, Some(60.0)), link("b", "c", 0.0, None)]);
        const S: i64 = 1_000_000;
        assert_eq!(paths.impossible("a", "b", 5 * S), None);
        assert_eq!(
            paths.impossible("a", "b", 600 * S),
            None,
            "late is possible"
        );
        assert!(
            paths
                .impossible("a", "b", 4 * S)
                .unwrap()
                .contains("minimum transit")
        );
        assert!(
            paths
                .impossible("a", "c", 600 * S)
                .unwrap()
                .contains("no link")
        );
        assert_eq!(paths.impossible("c", "b", -S), None, "overlapping views");
        assert!(
            Paths::new(&[]).impossible("x", "y", 0).is_none(),
            "permissive"
        );
    }
}
