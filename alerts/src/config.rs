//! The alert rules: typed serde (TOML-friendly), with every problem of a
//! configuration reported at once by [`RulesConfig::validate`].
//!
//! An example with every rule kind and key, commented, is
//! `deploy/config/alerts-rules.example.toml`.

use std::collections::{BTreeMap, HashMap};

use mot::topology::{Link, validate_links};
use serde::{Deserialize, Serialize};

use crate::zone::{DailyWindow, Polygon};

/// Every alert rule and what they share: the camera topology, per-camera
/// calibration and the engine's memory bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Seconds without an observation after which a person's state on a
    /// camera (and their last camera, for `impossible_path`) is forgotten.
    #[serde(default = "default_forget_after_s")]
    pub forget_after_s: f64,
    /// Most persons remembered per camera; beyond it the one seen least
    /// recently is forgotten (its alerts close).
    #[serde(default = "default_max_persons_per_camera")]
    pub max_persons_per_camera: usize,
    /// Most cameras remembered; input from further cameras is skipped (and
    /// counted in [`crate::EngineStats`]).
    #[serde(default = "default_max_cameras")]
    pub max_cameras: usize,
    /// Seconds of observations a person's speed is estimated over (the
    /// Theil–Sen slope of the box centre, robust to a noisy frame).
    #[serde(default = "default_speed_window_s")]
    pub speed_window_s: f64,
    /// Fewest observations a speed is estimated from; at low frame rates
    /// the window stretches back to this many (at most 5 windows back).
    /// Between 3 and 32; the default 5 rejects one bad box anywhere in the
    /// window.
    #[serde(default = "default_speed_min_observations")]
    pub speed_min_observations: usize,
    /// Per camera: image units (pixels) per unit of `running.max_speed`,
    /// e.g. pixels per metre for speeds in m/s. Cameras not listed use 1.0
    /// (speeds in pixels per second).
    #[serde(default)]
    pub calibration: BTreeMap<String, f64>,
    /// Camera links, as the tracker's `[[reid.links]]`: which cameras a
    /// person can walk between and the shortest transit. Used by
    /// `impossible_path`; cameras need not appear in any rule. Default none.
    #[serde(default)]
    pub topology: Vec<Link>,
    /// The rules, evaluated in order. Default none.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            forget_after_s: default_forget_after_s(),
            max_persons_per_camera: default_max_persons_per_camera(),
            max_cameras: default_max_cameras(),
            speed_window_s: default_speed_window_s(),
            speed_min_observations: default_speed_min_observations(),
            calibration: BTreeMap::new(),
            topology: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Most observations a speed is estimated from (the newest are kept): the
/// Theil–Sen estimate costs the square of this per observation.
pub(crate) const MAX_SPEED_OBSERVATIONS: usize = 32;

/// Ten minutes: far beyond any rule's absence time, and the tracker's
/// re-identification gallery forgets people on the same scale.
const fn default_forget_after_s() -> f64 {
    600.0
}
/// Far more people than one camera view holds at once.
const fn default_max_persons_per_camera() -> usize {
    1_000
}
/// Far more cameras than one deployment of the tracker serves.
const fn default_max_cameras() -> usize {
    1_024
}
/// About two strides: long enough to smooth box jitter, short enough to
/// catch a sprint.
const fn default_speed_window_s() -> f64 {
    1.0
}
/// Five points: the Theil–Sen median then ignores one outlier anywhere.
const fn default_speed_min_observations() -> usize {
    5
}

/// One alert rule: what it is called, how serious it is, and what it checks.
///
/// In TOML the kind and its keys sit beside the common keys:
/// `kind = "loitering"`, `max_dwell_s = 30.0`, …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Unique name; part of every alert id. Required (empty is reported by
    /// validation).
    #[serde(default)]
    pub name: String,
    /// Severity of the alerts. Default `warning`.
    #[serde(default)]
    pub severity: Severity,
    /// Seconds after an alert of this rule closes during which the same
    /// subject (person or camera) on the same camera cannot raise it again.
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: f64,
    /// What the rule checks, with its parameters. Unknown keys of a rule
    /// are refused here.
    #[serde(flatten)]
    pub kind: RuleKind,
}

/// One minute: a person pacing in and out of a zone raises one alert a minute at most.
const fn default_cooldown_s() -> f64 {
    60.0
}
/// Five seconds: longer than the tracker's usual occlusion gaps.
const fn default_absence_s() -> f64 {
    5.0
}
/// Two seconds: several analysed frames at the edge agents' 2–10 fps.
const fn default_min_duration_s() -> f64 {
    2.0
}

/// How serious an alert is (the `schemas` `Alert.Severity`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording.
    Info,
    /// Worth a look (the default).
    #[default]
    Warning,
    /// Needs someone now.
    Critical,
}

/// What a rule checks: `kind = "…"` in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// A person staying in a zone too long.
    Loitering(LoiteringRule),
    /// Anyone in a zone, possibly only at certain hours.
    Restricted(RestrictedRule),
    /// Too many people at once on a camera.
    Occupancy(OccupancyRule),
    /// A person moving too fast.
    Running(RunningRule),
    /// A person reaching a camera they cannot have walked to (topology).
    ImpossiblePath(ImpossiblePathRule),
    /// A camera down, stalled or silent too long.
    CameraDown(CameraDownRule),
}

/// `kind = "loitering"`: a person in the zone for `max_dwell_s` raises;
/// the alert closes when they have not been seen in it for `absence_s` or
/// their track ends. Subject: the person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoiteringRule {
    /// Cameras the rule watches; empty (the default) watches every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Polygon `[[x, y], …]` in image pixels that a person's feet (the
    /// bottom centre of the box) must be in; none (the default) is the
    /// whole picture.
    #[serde(default)]
    pub zone: Option<Vec<[f64; 2]>>,
    /// Seconds in the zone that raise. Required.
    pub max_dwell_s: f64,
    /// Seconds unseen in the zone after which a person has left it.
    #[serde(default = "default_absence_s")]
    pub absence_s: f64,
}

/// `kind = "restricted"`: anyone in the zone during the window raises at
/// once; the alert closes when they leave (unseen in it for `absence_s`,
/// or the track ends) or the window ends. Subject: the person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictedRule {
    /// Cameras the rule watches; empty (the default) watches every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Polygon `[[x, y], …]` in image pixels; none (the default) is the
    /// whole picture.
    #[serde(default)]
    pub zone: Option<Vec<[f64; 2]>>,
    /// Daily window `"HH:MM-HH:MM"` in UTC, start included, end excluded;
    /// may wrap midnight (`"22:00-06:00"`). None (the default): always.
    #[serde(default)]
    pub window: Option<String>,
    /// Seconds unseen in the zone after which a person has left it.
    #[serde(default = "default_absence_s")]
    pub absence_s: f64,
}

/// `kind = "occupancy"`: more than `max_people` distinct people in the
/// zone of one camera, in every frame for `min_duration_s`, raises; the
/// first frame with at most `max_people` closes it, as does a camera that
/// sends no frame for `absence_s`. Subject: the camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OccupancyRule {
    /// Cameras the rule watches, each counted on its own; empty (the
    /// default) watches every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Polygon `[[x, y], …]` in image pixels; none (the default) is the
    /// whole picture.
    #[serde(default)]
    pub zone: Option<Vec<[f64; 2]>>,
    /// Most people allowed at once. Required.
    pub max_people: u32,
    /// Seconds the count must stay above `max_people` before raising, so a
    /// one-frame false detection does not alert.
    #[serde(default = "default_min_duration_s")]
    pub min_duration_s: f64,
    /// Seconds without frames from the camera after which an open alert
    /// closes (nothing is known any more).
    #[serde(default = "default_absence_s")]
    pub absence_s: f64,
}

/// `kind = "running"`: a person whose smoothed speed exceeds `max_speed`
/// raises; the alert closes once no observation was faster for
/// `absence_s`, or the track ends. Subject: the person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningRule {
    /// Cameras the rule watches; empty (the default) watches every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Largest allowed speed of the box centre, in image units per second
    /// divided by the camera's `calibration` (m/s when calibrated in pixels
    /// per metre). Required.
    pub max_speed: f64,
    /// Seconds below `max_speed` (or unseen) after which the alert closes.
    #[serde(default = "default_absence_s")]
    pub absence_s: f64,
}

/// `kind = "impossible_path"`: a person seen on camera B after camera A
/// where the `topology` has no link from A to B, or where they arrived
/// faster than the link's `min_transit_s`. Raises and closes at once.
/// Subject: the person, on camera B. Needs `[[topology]]` links.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpossiblePathRule {}

/// `kind = "camera_down"`: a camera reporting a state other than UP
/// (stalled, reconnecting, down) for `max_down_s`, or sending neither
/// frames nor health reports for `max_down_s`, raises; an UP report (or,
/// for a silent camera, any input) closes it. A camera reporting ENDED
/// (its file finished) is not down. Subject: the camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraDownRule {
    /// Cameras the rule watches; empty (the default) watches every camera
    /// the engine has heard of. Listed cameras are watched from the first
    /// input, so one that never reports is down after `max_down_s`.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Seconds down that raise. Required.
    pub max_down_s: f64,
}

impl RuleKind {
    /// The kind's name as written in `kind = "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Loitering(_) => "loitering",
            RuleKind::Restricted(_) => "restricted",
            RuleKind::Occupancy(_) => "occupancy",
            RuleKind::Running(_) => "running",
            RuleKind::ImpossiblePath(_) => "impossible_path",
            RuleKind::CameraDown(_) => "camera_down",
        }
    }

    /// The cameras the rule is limited to (empty: all).
    pub fn cameras(&self) -> &[String] {
        match self {
            RuleKind::Loitering(r) => &r.cameras,
            RuleKind::Restricted(r) => &r.cameras,
            RuleKind::Occupancy(r) => &r.cameras,
            RuleKind::Running(r) => &r.cameras,
            RuleKind::ImpossiblePath(_) => &[],
            RuleKind::CameraDown(r) => &r.cameras,
        }
    }

    /// The zone's points, for kinds that have one.
    fn zone(&self) -> Option<&[[f64; 2]]> {
        match self {
            RuleKind::Loitering(r) => r.zone.as_deref(),
            RuleKind::Restricted(r) => r.zone.as_deref(),
            RuleKind::Occupancy(r) => r.zone.as_deref(),
            _ => None,
        }
    }

    /// Problems of the kind's own parameters.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |key: &str, value: f64, zero_ok: bool| {
            if let Some(problem) = duration_problem(key, value, zero_ok) {
                problems.push(problem);
            }
        };
        match self {
            RuleKind::Loitering(r) => {
                check("max_dwell_s", r.max_dwell_s, false);
                check("absence_s", r.absence_s, false);
            }
            RuleKind::Restricted(r) => check("absence_s", r.absence_s, false),
            RuleKind::Occupancy(r) => {
                check("min_duration_s", r.min_duration_s, true);
                check("absence_s", r.absence_s, false);
            }
            RuleKind::Running(r) => {
                check("max_speed", r.max_speed, false);
                check("absence_s", r.absence_s, false);
            }
            RuleKind::ImpossiblePath(_) => {}
            RuleKind::CameraDown(r) => check("max_down_s", r.max_down_s, false),
        }
        if let Some(Err(problem)) = self.zone().map(Polygon::new) {
            problems.push(problem);
        }
        if let RuleKind::Restricted(RestrictedRule {
            window: Some(window),
            ..
        }) = self
            && let Err(problem) = window.parse::<DailyWindow>()
        {
            problems.push(problem);
        }
        if self.cameras().iter().any(String::is_empty) {
            problems.push("`cameras` has an empty camera id".to_owned());
        }
        problems
    }
}

/// A problem with a number of seconds (or a speed): it must be finite and
/// positive (or zero, where allowed).
fn duration_problem(key: &str, value: f64, zero_ok: bool) -> Option<String> {
    let fine = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
    (!fine).then(|| {
        let bound = if zero_ok { "≥ 0" } else { "> 0" };
        format!("{key} must be a finite number {bound}, got {value}")
    })
}

impl RulesConfig {
    /// Every problem with the configuration, one message each, prefixed by
    /// where it is (`rules[2] ("lobby")`, `topology: links[0]`, …); empty
    /// when the configuration is fine.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = if rule.name.is_empty() {
                format!("rules[{i}]")
            } else {
                format!("rules[{i}] ({:?})", rule.name)
            };
            if rule.name.is_empty() {
                problems.push(format!(
                    "{at}: `name` is empty; every rule needs a unique name"
                ));
            } else if let Some(first) = names.get(rule.name.as_str()) {
                problems.push(format!("{at}: duplicate name, also used by rules[{first}]"));
            } else {
                names.insert(&rule.name, i);
            }
            if let Some(problem) = duration_problem("cooldown_s", rule.cooldown_s, true) {
                problems.push(format!("{at}: {problem}"));
            }
            for problem in rule.kind.problems() {
                problems.push(format!("{at}: {problem}"));
            }
            if matches!(rule.kind, RuleKind::ImpossiblePath(_)) && self.topology.is_empty() {
                problems.push(format!(
                    "{at}: impossible_path needs [[topology]] links; without them every path is possible"
                ));
            }
        }
        for problem in validate_links(&self.topology) {
            problems.push(format!("topology: {problem}"));
        }
        for (camera, factor) in &self.calibration {
            if camera.is_empty() {
                problems.push("calibration: empty camera id".to_owned());
            }
            if !(factor.is_finite() && *factor > 0.0) {
                problems.push(format!(
                    "calibration: {camera:?} must be a finite number > 0 (image units per unit of speed), got {factor}"
                ));
            }
        }
        let globals = [
            ("forget_after_s", self.forget_after_s),
            ("speed_window_s", self.speed_window_s),
        ];
        for (key, value) in globals {
            problems.extend(duration_problem(key, value, false));
        }
        if self.max_persons_per_camera == 0 {
            problems.push("max_persons_per_camera must be at least 1".to_owned());
        }
        if self.max_cameras == 0 {
            problems.push("max_cameras must be at least 1".to_owned());
        }
        if !(3..=MAX_SPEED_OBSERVATIONS).contains(&self.speed_min_observations) {
            problems.push(format!(
                "speed_min_observations must be between 3 and {MAX_SPEED_OBSERVATIONS}, got {}",
                self.speed_min_observations
            ));
        }
        problems
    }
}

/// A configuration that [`RulesConfig::validate`] refused, with every
/// problem it found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid alert rules ({} problem(s)): {}", .problems.len(), .problems.join("; "))]
pub struct ConfigError {
    /// One message per problem; fix them all and load again.
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example, so it can never drift from the code.
    const EXAMPLE: &str = include_str!("../../deploy/config/alerts-rules.example.toml");

    #[test]
    fn example_parses_with_all_six_kinds_and_is_valid() {
        let config: RulesConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(config.validate(), Vec::<String>::new());
        let kinds: Vec<&str> = config.rules.iter().map(|r| r.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "loitering",
                "restricted",
                "occupancy",
                "running",
                "impossible_path",
                "camera_down"
            ]
        );
        assert_eq!(config.topology.len(), 2);
        assert_eq!(config.calibration["west"], 40.0);
        let RuleKind::Restricted(restricted) = &config.rules[1].kind else {
            panic!("rules[1] is restricted");
        };
        assert_eq!(restricted.window.as_deref(), Some("22:00-06:00"));
        assert_eq!(config.rules[1].severity, Severity::Critical);
        crate::Engine::new(&config).unwrap();
    }

    #[test]
    fn defaults_fill_everything_but_names_and_thresholds() {
        let config: RulesConfig = toml::from_str(
            r#"
            [[rules]]
            name = "crowd"
            kind = "occupancy"
            max_people = 3
            "#,
        )
        .unwrap();
        assert_eq!(config.forget_after_s, 600.0);
        assert_eq!(config.speed_min_observations, 5);
        let rule = &config.rules[0];
        assert_eq!((rule.severity, rule.cooldown_s), (Severity::Warning, 60.0));
        let RuleKind::Occupancy(occupancy) = &rule.kind else {
            panic!("occupancy");
        };
        assert_eq!(
            occupancy,
            &OccupancyRule {
                cameras: vec![],
                zone: None,
                max_people: 3,
                min_duration_s: 2.0,
                absence_s: 5.0
            }
        );
        assert!(config.validate().is_empty());
        assert_eq!(
            toml::from_str::<RulesConfig>("").unwrap(),
            RulesConfig::default()
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        let unknown_in_rule = toml::from_str::<RulesConfig>(
            "[[rules]]\nname = \"a\"\nkind = \"loitering\"\nmax_dwell_s = 3\nmax_dwel_s = 4\n",
        );
        assert!(
            unknown_in_rule
                .unwrap_err()
                .to_string()
                .contains("max_dwel_s")
        );
        let unknown_top = toml::from_str::<RulesConfig>("forget_after = 3\n");
        assert!(
            unknown_top
                .unwrap_err()
                .to_string()
                .contains("forget_after")
        );
        let unknown_kind =
            toml::from_str::<RulesConfig>("[[rules]]\nname = \"a\"\nkind = \"lurking\"\n");
        assert!(unknown_kind.unwrap_err().to_string().contains("lurking"));
        let missing_threshold =
            toml::from_str::<RulesConfig>("[[rules]]\nname = \"a\"\nkind = \"running\"\n");
        assert!(
            missing_threshold
                .unwrap_err()
                .to_string()
                .contains("max_speed")
        );
        let key_of_other_kind = toml::from_str::<RulesConfig>(
            "[[rules]]\nname = \"a\"\nkind = \"camera_down\"\nmax_down_s = 3\nmax_people = 4\n",
        );
        assert!(key_of_other_kind.is_err());
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let config: RulesConfig = toml::from_str(
            r#"
            forget_after_s = 0
            speed_min_observations = 2

            [calibration]
            west = 0.0
            east = 25.0

            # A camera no rule mentions is fine in the topology.
            [[topology]]
            from = "west"
            to = "stairwell"
            min_transit_s = 3.0

            [[rules]]
            name = "a"
            kind = "loitering"
            zone = [[0, 0], [10, 0]]
            max_dwell_s = -5
            cooldown_s = -1

            [[rules]]
            name = "a"
            kind = "restricted"
            window = "25:00-06:00"

            [[rules]]
            name = ""
            kind = "occupancy"
            max_people = 2
            min_duration_s = nan
            cameras = [""]

            [[rules]]
            name = "night"
            kind = "restricted"
            window = "22h-6h"
            zone = [[0, 0], [1, 1], [2, 2]]

            [[rules]]
            name = "fine"
            kind = "impossible_path"
            "#,
        )
        .unwrap();
        let problems = config.validate();
        let expected = [
            r#"rules[0] ("a"): cooldown_s must be a finite number ≥ 0, got -1"#,
            r#"rules[0] ("a"): max_dwell_s must be a finite number > 0, got -5"#,
            r#"rules[0] ("a"): a zone needs at least 3 points [x, y], got 2"#,
            r#"rules[1] ("a"): duplicate name, also used by rules[0]"#,
            r#"rules[1] ("a"): window must be "HH:MM-HH:MM" in UTC (e.g. "22:00-06:00"), got "25:00-06:00""#,
            "rules[2]: `name` is empty; every rule needs a unique name",
            "rules[2]: min_duration_s must be a finite number ≥ 0, got NaN",
            "rules[2]: `cameras` has an empty camera id",
            r#"rules[3] ("night"): zone has no area (all points on one line)"#,
            r#"rules[3] ("night"): window must be "HH:MM-HH:MM" in UTC (e.g. "22:00-06:00"), got "22h-6h""#,
            r#"calibration: "west" must be a finite number > 0 (image units per unit of speed), got 0"#,
            "forget_after_s must be a finite number > 0, got 0",
            "speed_min_observations must be between 3 and 32, got 2",
        ];
        assert_eq!(problems, expected);
        let error = crate::Engine::new(&config).err().unwrap();
        assert_eq!(error.problems.len(), expected.len());
        assert!(
            error
                .to_string()
                .starts_with("invalid alert rules (13 problem(s)): rules[0]")
        );
    }

    #[test]
    fn topology_problems_and_a_useless_impossible_path_are_reported() {
        let config = RulesConfig {
            topology: vec![Link {
                from: "a".into(),
                to: "a".into(),
                ..Link::default()
            }],
            rules: vec![Rule {
                name: "path".into(),
                severity: Severity::Info,
                cooldown_s: 0.0,
                kind: RuleKind::ImpossiblePath(ImpossiblePathRule {}),
            }],
            ..RulesConfig::default()
        };
        let problems = config.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("topology: links[0]: self link"));
        let without_topology = RulesConfig {
            topology: vec![],
            ..config
        };
        assert_eq!(
            without_topology.validate(),
            [
                r#"rules[0] ("path"): impossible_path needs [[topology]] links; without them every path is possible"#
            ]
        );
    }

    #[test]
    fn config_round_trips_through_toml_and_json() {
        let config: RulesConfig = toml::from_str(EXAMPLE).unwrap();
        let again: RulesConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
        let json: RulesConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(json, config);
    }
}
