//! Alert slots: at most one open alert per rule, camera and subject, the
//! cool-down after each close, and the raise and close events themselves.

use std::collections::BTreeMap;
use std::fmt;

use super::checks::RuleMeta;
use crate::{AlertEvent, Evidence};

/// Who an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subject {
    /// A person.
    Person(u64),
    /// The camera itself.
    Camera,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Person(id) => write!(f, "{id}"),
            Subject::Camera => f.write_str("camera"),
        }
    }
}

/// One alert slot: at most one open alert per rule, camera and subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AlertKey {
    /// The rule's index.
    pub(crate) rule: usize,
    /// The camera.
    pub(crate) camera: String,
    /// The subject.
    pub(crate) subject: Subject,
}

impl AlertKey {
    /// The slot of a person on a camera.
    pub(crate) fn person(rule: usize, camera: &str, person: u64) -> Self {
        AlertKey {
            rule,
            camera: camera.to_owned(),
            subject: Subject::Person(person),
        }
    }

    /// The slot of a camera.
    pub(crate) fn camera(rule: usize, camera: &str) -> Self {
        AlertKey {
            rule,
            camera: camera.to_owned(),
            subject: Subject::Camera,
        }
    }
}

/// What a raise says.
pub(crate) struct Raise {
    /// When.
    pub(crate) ts_us: i64,
    /// The observation (or instant) that made it true.
    pub(crate) trigger_ts_us: i64,
    /// Who.
    pub(crate) person_ids: Vec<u64>,
    /// What, in a sentence.
    pub(crate) message: String,
    /// The summary.
    pub(crate) evidence: Evidence,
}

/// Open alerts and cool-downs.
#[derive(Debug, Default)]
pub(crate) struct AlertBook {
    /// The raise event of every open alert.
    pub(crate) open: BTreeMap<AlertKey, AlertEvent>,
    /// Until when a slot may not raise again (after a close).
    pub(crate) cooldown_until: BTreeMap<AlertKey, i64>,
}

impl AlertBook {
    /// Whether the slot may raise at `ts`: nothing open and no cool-down.
    pub(crate) fn can_raise(&self, key: &AlertKey, ts: i64) -> bool {
        !self.open.contains_key(key)
            && self
                .cooldown_until
                .get(key)
                .is_none_or(|&until| ts >= until)
    }

    /// Opens an alert in the slot (the caller checked [`Self::can_raise`]).
    pub(crate) fn raise(
        &mut self,
        key: AlertKey,
        meta: &RuleMeta,
        raise: Raise,
        out: &mut Vec<AlertEvent>,
    ) {
        let event = AlertEvent {
            alert_id: format!(
                "{}:{}:{}:{}",
                meta.name, key.camera, key.subject, raise.ts_us
            ),
            rule: meta.name.clone(),
            severity: meta.severity,
            camera_id: key.camera.clone(),
            person_ids: raise.person_ids,
            ts_us: raise.ts_us,
            message: raise.message,
            closed: false,
            evidence: raise.evidence,
            trigger_ts_us: raise.trigger_ts_us,
        };
        out.push(event.clone());
        self.open.insert(key, event);
    }

    /// Closes the slot's open alert, if any, at `ts` (not before its raise),
    /// with the message and evidence `describe` makes from the raise; the
    /// cool-down starts.
    pub(crate) fn close(
        &mut self,
        key: &AlertKey,
        meta: &RuleMeta,
        ts: i64,
        out: &mut Vec<AlertEvent>,
        describe: impl FnOnce(&AlertEvent) -> (String, Evidence),
    ) {
        let Some(open) = self.open.remove(key) else {
            return;
        };
        let ts = ts.max(open.ts_us);
        let (message, evidence) = describe(&open);
        self.cooldown_until
            .insert(key.clone(), ts.saturating_add(meta.cooldown_us));
        out.push(AlertEvent {
            ts_us: ts,
            trigger_ts_us: ts,
            message,
            closed: true,
            evidence,
            ..open
        });
    }
}
