//! Environment-variable overrides of a service's TOML configuration.
//!
//! A variable `<PREFIX>__<KEY>__<KEY>…` sets one setting of the file: the
//! segments between `__` name table keys, matched lower-cased
//! (`ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD` sets `detector.score_threshold`).
//! In an array of tables (`[[cameras]]`), the segment after the array's
//! name picks the element whose `id` equals it, ignoring case
//! (`ARGUS_EDGE__CAMERAS__ENTRANCE__URL`); an element whose `id` has other
//! characters than ASCII letters, digits and single underscores cannot be
//! named, and overrides never add elements. Missing tables are created.
//!
//! A value is read as a TOML value when it is one (`0.4`, `true`,
//! `[0, 2]`, `"quoted text"`), else as the string itself (`host:9092`,
//! `/models/x.onnx`, `on-roll`). A value that reads as a number, boolean,
//! date or array but lands on a string setting is taken as the string
//! itself, so `1234` can be a user name. An empty value is the empty
//! string.
//!
//! The overrides change the parsed document before it is deserialised, so
//! the service's own checks cover the values they set. A variable that names
//! no setting, or whose value does not fit the setting's type, is reported
//! by name, with every other such problem; its value is never repeated, as
//! it may be a secret.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::{Table, Value};

use super::ConfigError;

/// Separates the prefix and the keys of a variable's name.
pub const SEPARATOR: &str = "__";

/// The key that names an element of an array of tables.
pub const ELEMENT_KEY: &str = "id";

/// A variable that set a setting. It holds no value: values may be secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The variable's name.
    pub var: String,
    /// The setting it set, e.g. `detector.score_threshold` or
    /// `cameras[id="entrance"].url`.
    pub key: String,
}

/// A configuration deserialised with its overrides.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The configuration, with every override that fits applied.
    pub config: T,
    /// The overrides applied, in the order of their names.
    pub applied: Vec<Applied>,
    /// Overrides left out: each names its variable. The service reports them
    /// with the problems its own checks find.
    pub problems: Vec<String>,
}

/// The process environment as `(name, value)` pairs, for [`load_with_env`].
/// Variables whose name or value is not UTF-8 are left out.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// Reads the TOML file at `path`, applies the variables of `env` named
/// `<prefix>__…` and deserialises the result. Errors name the file; a file
/// that does not deserialise without any override is reported as
/// [`ConfigError::Parse`], with its line, as [`super::load`] does.
pub fn load_with_env<T: DeserializeOwned>(
    path: &Path,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<T>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let parse_error = |source| ConfigError::Parse {
        path: path.into(),
        source: Box::new(source),
    };
    let base: Table = toml::from_str(&text).map_err(parse_error)?;
    let mut overrides = Vec::new();
    let mut problems = Vec::new();
    for (var, raw) in env {
        match Override::from_var(&var, &raw, prefix) {
            Some(Ok(found)) => overrides.push(found),
            Some(Err(problem)) => problems.push(problem),
            None => {}
        }
    }
    overrides.sort_by(|a, b| (&a.keys, &a.var).cmp(&(&b.keys, &b.var)));
    for pair in overrides.windows(2) {
        if pair[0].keys == pair[1].keys {
            problems.push(format!(
                "{} and {} set the same setting; keep one",
                pair[0].var, pair[1].var
            ));
        }
    }
    overrides.dedup_by(|later, earlier| later.keys == earlier.keys);
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    // Each pass leaves out the override the deserialiser blames, or first
    // reads its value as a string, until the document fits or the fault is
    // the file's: at most two passes per override.
    loop {
        let mut doc = base.clone();
        let mut placed = Vec::new();
        for (index, found) in overrides.iter_mut().enumerate() {
            if !found.active {
                continue;
            }
            match found.place(&mut doc) {
                Ok(place) => placed.push((index, place)),
                Err(problem) => {
                    found.active = false;
                    problems.push(problem);
                }
            }
        }
        let error = match serde_path_to_error::deserialize::<_, T>(Value::Table(doc)) {
            Ok(config) => {
                let applied = placed
                    .into_iter()
                    .map(|(index, place)| Applied {
                        var: overrides[index].var.clone(),
                        key: place.name,
                    })
                    .collect();
                return Ok(Loaded {
                    config,
                    applied,
                    problems,
                });
            }
            Err(error) => error,
        };
        let at = flat_path(error.path());
        // toml adds a line "in `key`": the path says that already.
        let message = error.into_inner().to_string();
        let message = message.lines().next().unwrap_or_default().to_string();
        let Some((index, place)) = placed.iter().find(|(_, place)| place.is_blamed(&at)) else {
            // Parse the file again, alone, for an error with its line.
            let file_error = toml::from_str::<T>(&text).err().map(parse_error);
            if placed.is_empty() && problems.is_empty() {
                return Err(file_error.unwrap_or(ConfigError::Invalid(vec![message])));
            }
            problems.push(match file_error {
                Some(error) => error.to_string(),
                None => format!(
                    "invalid config file {} with the overrides applied: {}: {message}",
                    path.display(),
                    dotted(&at)
                ),
            });
            return Err(ConfigError::Invalid(problems));
        };
        let found = &mut overrides[*index];
        let refused_value = place.is_at_or_above(&at) && !message.starts_with("unknown field");
        if refused_value && !matches!(found.value, Value::String(_)) {
            found.value = Value::String(found.raw.clone());
            found.refusal = Some((at, message));
        } else {
            found.active = false;
            // The value as TOML tells more than as a string: `[0, -1]` is
            // refused for its -1, not for being a string.
            let (at, message) = found.refusal.take().unwrap_or((at, message));
            problems.push(describe(&found.var, place, &at, &message));
        }
    }
}

/// One variable of the prefix, before it is placed in a document.
#[derive(Debug)]
struct Override {
    var: String,
    raw: String,
    /// Lower-cased segments of the name after the prefix.
    keys: Vec<String>,
    value: Value,
    active: bool,
    /// Where and why the value, read as TOML, was refused.
    refusal: Option<(Vec<Step>, String)>,
}

impl Override {
    /// `None` when `var` is not of the prefix.
    fn from_var(var: &str, raw: &str, prefix: &str) -> Option<Result<Override, String>> {
        let rest = var.strip_prefix(prefix)?.strip_prefix(SEPARATOR)?;
        let keys: Vec<String> = rest.split(SEPARATOR).map(str::to_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Some(Err(format!(
                "{var}: an empty key; keys are separated by a double underscore, {prefix}{SEPARATOR}TABLE{SEPARATOR}KEY"
            )));
        }
        Some(Ok(Override {
            var: var.into(),
            raw: raw.into(),
            keys,
            value: toml_value(raw),
            active: true,
            refusal: None,
        }))
    }

    /// Sets the value in `doc`, creating missing tables. A table or a list
    /// of tables is refused, as value or as target: an override sets one
    /// setting and never replaces a section (resetting its other keys to
    /// their defaults) or the list of cameras.
    fn place(&self, doc: &mut Table) -> Result<Place, String> {
        let place = Place::locate(doc, &self.keys).map_err(|e| format!("{}: {e}", self.var))?;
        if holds_tables(&self.value) || get_at(doc, &place.path).is_some_and(holds_tables) {
            return Err(format!(
                "{}: {} is a table or a list of tables; set its settings one by one",
                self.var, place.name
            ));
        }
        // `locate` checked the path in this document: it always fits.
        if insert_at(doc, &place.path, self.value.clone()) {
            Ok(place)
        } else {
            Err(format!("{}: cannot set {}", self.var, place.name))
        }
    }
}

/// Whether `value` is a table or an array holding one.
fn holds_tables(value: &Value) -> bool {
    match value {
        Value::Table(_) => true,
        Value::Array(items) => items.iter().any(|item| matches!(item, Value::Table(_))),
        _ => false,
    }
}

/// The value at `path` in `table`, if the document has it.
fn get_at<'a>(table: &'a Table, path: &[Step]) -> Option<&'a Value> {
    match path {
        [Step::Key(key)] => table.get(key.as_str()),
        [Step::Key(key), Step::Index(index), rest @ ..] => match table.get(key.as_str()) {
            Some(Value::Array(items)) => match items.get(*index) {
                Some(Value::Table(inner)) => get_at(inner, rest),
                _ => None,
            },
            _ => None,
        },
        [Step::Key(key), rest @ ..] => match table.get(key.as_str()) {
            Some(Value::Table(inner)) => get_at(inner, rest),
            _ => None,
        },
        _ => None,
    }
}

/// Sets `value` at `path`, creating missing tables; false when the
/// document's shape does not fit the path.
fn insert_at(table: &mut Table, path: &[Step], value: Value) -> bool {
    match path {
        [Step::Key(key)] => {
            table.insert(key.clone(), value);
            true
        }
        [Step::Key(key), Step::Index(index), rest @ ..] => match table.get_mut(key.as_str()) {
            Some(Value::Array(items)) => match items.get_mut(*index) {
                Some(Value::Table(inner)) => insert_at(inner, rest, value),
                _ => false,
            },
            _ => false,
        },
        [Step::Key(key), rest @ ..] => match table
            .entry(key.as_str())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(inner) => insert_at(inner, rest, value),
            _ => false,
        },
        _ => false,
    }
}

/// A segment of a path in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where an override lands in a document.
#[derive(Debug)]
struct Place {
    /// Keys and element indices from the root to the setting.
    path: Vec<Step>,
    /// Position in `path` of the first key the file does not have.
    created_from: Option<usize>,
    /// The setting's name for people.
    name: String,
}

impl Place {
    fn locate(doc: &Table, keys: &[String]) -> Result<Place, String> {
        let mut path = Vec::new();
        let mut name = String::new();
        let mut created_from = None;
        let mut table = Some(doc);
        let mut keys = keys.iter().peekable();
        while let Some(key) = keys.next() {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(key);
            path.push(Step::Key(key.clone()));
            let value = table.and_then(|t| t.get(key.as_str()));
            if value.is_none() && created_from.is_none() {
                created_from = Some(path.len() - 1);
            }
            if keys.peek().is_none() {
                break;
            }
            table = match value {
                None => None,
                Some(Value::Table(inner)) => Some(inner),
                Some(Value::Array(items)) => {
                    let id = keys.next().expect("peeked");
                    let (index, element) =
                        element_by_id(items, id).map_err(|e| format!("{name} has {e}"))?;
                    if keys.peek().is_none() {
                        return Err(format!(
                            "names the element {id:?} of {name}, not one of its settings"
                        ));
                    }
                    let exact_id = element_id(element).unwrap_or(id);
                    name.push_str(&format!("[{ELEMENT_KEY}={exact_id:?}]"));
                    path.push(Step::Index(index));
                    Some(element)
                }
                Some(_) => {
                    return Err(format!(
                        "{name} is a single value, not a table with settings"
                    ));
                }
            };
        }
        Ok(Place {
            path,
            created_from,
            name,
        })
    }

    /// Whether the error at `at` is at this setting or inside its value.
    fn is_at_or_above(&self, at: &[Step]) -> bool {
        at.starts_with(&self.path)
    }

    /// Whether this override causes an error at `at`: the error is at the
    /// setting (a wrong type, or an unknown key: the deserialiser names the
    /// key), inside its value, or in a table the override created (a
    /// missing key).
    fn is_blamed(&self, at: &[Step]) -> bool {
        self.is_at_or_above(at)
            || (self.path.starts_with(at) && self.created_from.is_some_and(|from| from < at.len()))
    }
}

/// The element of an array of tables whose [`ELEMENT_KEY`] is `id`
/// (lower-case), ignoring case.
fn element_by_id<'a>(items: &'a [Value], id: &str) -> Result<(usize, &'a Table), String> {
    let mut found = None;
    for (index, item) in items.iter().enumerate() {
        let Value::Table(element) = item else {
            return Err(
                "values, not tables: set the whole list, e.g. [1, 2], in one variable".into(),
            );
        };
        let Some(element_id) = element_id(element) else {
            continue;
        };
        if element_id.to_lowercase() == id {
            if found.is_some() {
                return Err(format!(
                    "more than one element whose {ELEMENT_KEY} is {id:?} ignoring case"
                ));
            }
            found = Some((index, element));
        }
    }
    found.ok_or_else(|| {
        format!(
            "no element whose {ELEMENT_KEY} is {id:?} (ignoring case; ids of other characters than \
             letters, digits and single underscores cannot be named)"
        )
    })
}

fn element_id(element: &Table) -> Option<&str> {
    element.get(ELEMENT_KEY).and_then(Value::as_str)
}

/// `raw` as a TOML value when it is one, else as a string.
fn toml_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("value = {raw}"))
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| Value::String(raw.into()))
}

/// The deserialiser's path as steps (enum variants and unknowns dropped).
fn flat_path(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn dotted(path: &[Step]) -> String {
    if path.is_empty() {
        return "the top level".into();
    }
    let mut name = String::new();
    for step in path {
        match step {
            Step::Key(key) if name.is_empty() => name.push_str(key),
            Step::Key(key) => {
                name.push('.');
                name.push_str(key);
            }
            Step::Index(index) => name.push_str(&format!("[{index}]")),
        }
    }
    name
}

/// A problem naming the variable, without its value: the deserialiser's
/// message is kept only where it cannot hold the value.
fn describe(var: &str, place: &Place, at: &[Step], message: &str) -> String {
    if message.starts_with("unknown field") {
        return format!("{var}: there is no setting {} ({message})", place.name);
    }
    if message.starts_with("missing field") {
        return format!(
            "{var}: sets {}, but the file has no {} and the variable makes it incomplete ({message})",
            place.name,
            dotted(at)
        );
    }
    match message.split_once(", expected ") {
        Some((_, expected)) => format!(
            "{var}: the value does not fit {}: expected {expected}",
            place.name
        ),
        None => format!("{var}: the value does not fit {}", place.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        detector: Detector,
        #[serde(default)]
        metrics: Option<Metrics>,
        #[serde(default)]
        cameras: Vec<Camera>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Detector {
        model: String,
        score_threshold: f32,
        #[serde(default)]
        classes: Vec<u32>,
        #[serde(default)]
        enabled: bool,
        #[serde(default)]
        fsync: Fsync,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Fsync {
        #[default]
        OnRoll,
        Always,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Metrics {
        listen: String,
        #[serde(default)]
        unhealthy_after_s: f64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Camera {
        id: String,
        url: String,
        #[serde(default)]
        username: Option<String>,
    }

    const FILE: &str = r#"
        name = "edge"
        [detector]
        model = "det.onnx"
        score_threshold = 0.3
        classes = [0]
        [[cameras]]
        id = "entrance"
        url = "rtsp://cam/1"
        [[cameras]]
        id = "Back_Door"
        url = "rtsp://cam/2"
        [[cameras]]
        id = "lobby-1"
        url = "rtsp://cam/3"
    "#;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Loaded<Sample>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample.toml");
        std::fs::write(&path, file).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_with_env(&path, "ARGUS_TEST", env)
    }

    fn applied(loaded: &Loaded<Sample>) -> Vec<(&str, &str)> {
        loaded
            .applied
            .iter()
            .map(|a| (a.var.as_str(), a.key.as_str()))
            .collect()
    }

    #[test]
    fn values_are_toml_when_they_parse_and_strings_otherwise() {
        let loaded = load(
            FILE,
            &[
                ("ARGUS_TEST__DETECTOR__SCORE_THRESHOLD", "0.45"),
                ("ARGUS_TEST__DETECTOR__MODEL", "/models/x.onnx"),
                ("ARGUS_TEST__DETECTOR__ENABLED", "true"),
                ("ARGUS_TEST__DETECTOR__CLASSES", "[0, 2, 7]"),
                ("ARGUS_TEST__DETECTOR__FSYNC", "always"),
                ("ARGUS_TEST__METRICS__LISTEN", "0.0.0.0:9100"),
                ("ARGUS_TEST__NAME", "1234"),
                ("OTHER__NAME", "ignored"),
                ("ARGUS_TESTING__NAME", "ignored"),
            ],
        )
        .unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let config = loaded.config;
        assert_eq!(config.name, "1234", "a number on a string setting");
        assert_eq!(config.detector.score_threshold, 0.45);
        assert_eq!(config.detector.model, "/models/x.onnx");
        assert!(config.detector.enabled);
        assert_eq!(config.detector.classes, [0, 2, 7]);
        assert_eq!(config.detector.fsync, Fsync::Always);
        assert_eq!(
            config.metrics,
            Some(Metrics {
                listen: "0.0.0.0:9100".into(),
                unhealthy_after_s: 0.0,
            }),
            "a missing table is created"
        );
    }

    #[test]
    fn the_environment_beats_the_file_and_applied_overrides_are_named() {
        let file = format!("{FILE}\n[metrics]\nlisten = \"127.0.0.1:1\"\n");
        let loaded = load(
            &file,
            &[
                ("ARGUS_TEST__METRICS__LISTEN", "0.0.0.0:9100"),
                ("ARGUS_TEST__METRICS__UNHEALTHY_AFTER_S", "30"),
                ("ARGUS_TEST__CAMERAS__ENTRANCE__URL", "rtsp://other/1"),
                ("ARGUS_TEST__CAMERAS__BACK_DOOR__USERNAME", "admin"),
            ],
        )
        .unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(
            applied(&loaded),
            [
                (
                    "ARGUS_TEST__CAMERAS__BACK_DOOR__USERNAME",
                    "cameras[id=\"Back_Door\"].username"
                ),
                (
                    "ARGUS_TEST__CAMERAS__ENTRANCE__URL",
                    "cameras[id=\"entrance\"].url"
                ),
                ("ARGUS_TEST__METRICS__LISTEN", "metrics.listen"),
                (
                    "ARGUS_TEST__METRICS__UNHEALTHY_AFTER_S",
                    "metrics.unhealthy_after_s"
                ),
            ]
        );
        let config = loaded.config;
        let metrics = config.metrics.unwrap();
        assert_eq!(
            (metrics.listen.as_str(), metrics.unhealthy_after_s),
            ("0.0.0.0:9100", 30.0)
        );
        assert_eq!(config.cameras[0].url, "rtsp://other/1");
        assert_eq!(config.cameras[1].username.as_deref(), Some("admin"));
        assert_eq!(config.cameras[2].url, "rtsp://cam/3", "untouched");
        let unchanged = load(FILE, &[]).unwrap();
        assert!(unchanged.applied.is_empty());
        assert_eq!(unchanged.config.detector.score_threshold, 0.3);
    }

    #[test]
    fn every_bad_override_is_reported_by_name_without_its_value() {
        let loaded = load(
            FILE,
            &[
                ("ARGUS_TEST__DETECTOR__SCORE_THRESHOLD", "high-secret"),
                ("ARGUS_TEST__DETECTOR__SCORE_TRESHOLD", "0.5"),
                ("ARGUS_TEST__DETECTR__MODEL", "x.onnx"),
                ("ARGUS_TEST__DETECTOR__CLASSES", "[0, -1]"),
                ("ARGUS_TEST__DETECTOR__FSYNC", "sometimes"),
                ("ARGUS_TEST__METRICS__UNHEALTHY_AFTER_S", "5"),
                ("ARGUS_TEST__CAMERAS__LOBBY_1__URL", "rtsp://x"),
                ("ARGUS_TEST__CAMERAS__ENTRANCE", "rtsp://x"),
                ("ARGUS_TEST__NAME__FIRST", "x"),
                ("ARGUS_TEST__DETECTOR____MODEL", "x"),
                ("ARGUS_TEST__DETECTOR__MODEL", "/m/a.onnx"),
            ],
        )
        .unwrap();
        let problems = loaded.problems.join("\n");
        for needle in [
            "ARGUS_TEST__DETECTOR__SCORE_THRESHOLD: the value does not fit detector.score_threshold: expected f32",
            "ARGUS_TEST__DETECTOR__SCORE_TRESHOLD: there is no setting detector.score_treshold (unknown field `score_treshold`",
            "ARGUS_TEST__DETECTR__MODEL: there is no setting detectr.model (unknown field `detectr`",
            "ARGUS_TEST__DETECTOR__CLASSES: the value does not fit detector.classes: expected u32",
            "ARGUS_TEST__DETECTOR__FSYNC: the value does not fit detector.fsync: expected `on-roll` or `always`",
            "ARGUS_TEST__METRICS__UNHEALTHY_AFTER_S: sets metrics.unhealthy_after_s, but the file has no metrics",
            "missing field `listen`",
            "ARGUS_TEST__CAMERAS__LOBBY_1__URL: cameras has no element whose id is \"lobby_1\"",
            "ARGUS_TEST__CAMERAS__ENTRANCE: names the element \"entrance\" of cameras, not one of its settings",
            "ARGUS_TEST__NAME__FIRST: name is a single value, not a table with settings",
            "ARGUS_TEST__DETECTOR____MODEL: an empty key",
        ] {
            assert!(
                problems.contains(needle),
                "missing {needle:?} in:\n{problems}"
            );
        }
        assert_eq!(loaded.problems.len(), 10, "{problems}");
        assert!(!problems.contains("high-secret"), "a value in:\n{problems}");
        assert!(!problems.contains("sometimes"), "a value in:\n{problems}");
        // The good override is still applied, the bad ones are left out.
        assert_eq!(
            applied(&loaded),
            [("ARGUS_TEST__DETECTOR__MODEL", "detector.model")]
        );
        assert_eq!(loaded.config.detector.score_threshold, 0.3);
        assert_eq!(loaded.config.detector.model, "/m/a.onnx");
    }

    #[test]
    fn tables_and_lists_of_tables_are_never_replaced_or_added() {
        let loaded = load(
            FILE,
            &[
                (
                    "ARGUS_TEST__CAMERAS",
                    "[{ id = \"x\", url = \"rtsp://x\" }]",
                ),
                ("ARGUS_TEST__DETECTOR", "{ model = \"m.onnx\" }"),
                ("ARGUS_TEST__METRICS", "{ listen = \"127.0.0.1:1\" }"),
            ],
        )
        .unwrap();
        let problems = loaded.problems.join("\n");
        for name in ["cameras", "detector", "metrics"] {
            let needle = format!(
                "ARGUS_TEST__{}: {name} is a table or a list of tables; set its settings one by one",
                name.to_uppercase()
            );
            assert!(
                problems.contains(&needle),
                "missing {needle:?} in:\n{problems}"
            );
        }
        assert_eq!(loaded.problems.len(), 3, "{problems}");
        assert_eq!(loaded.config.cameras.len(), 3);
        assert_eq!(loaded.config.detector.score_threshold, 0.3);
    }

    #[test]
    fn names_differing_in_case_only_are_one_setting_twice() {
        let loaded = load(
            FILE,
            &[("ARGUS_TEST__NAME", "a"), ("ARGUS_TEST__name", "b")],
        )
        .unwrap();
        assert_eq!(
            loaded.problems,
            ["ARGUS_TEST__NAME and ARGUS_TEST__name set the same setting; keep one"]
        );
    }

    #[test]
    fn file_errors_keep_their_line_and_are_listed_with_override_errors() {
        let broken = FILE.replace("score_threshold = 0.3", "score_threshold = \"x\"");
        let err = load(&broken, &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("line 5"), "{err}");
        let err = load(&broken, &[("ARGUS_TEST__DETECTOR__ENABLED", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ARGUS_TEST__DETECTOR__ENABLED: the value does not fit detector.enabled: expected a boolean"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        // An override fixes what the file got wrong.
        let fixed = load(&broken, &[("ARGUS_TEST__DETECTOR__SCORE_THRESHOLD", "0.5")]).unwrap();
        assert_eq!(fixed.config.detector.score_threshold, 0.5);
    }

    #[test]
    fn values_parse_as_toml_or_stay_strings() {
        let cases = [
            ("0.4", Value::Float(0.4)),
            ("12", Value::Integer(12)),
            ("false", Value::Boolean(false)),
            (
                "[1, 2]",
                Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
            ),
            ("\"0.4\"", Value::String("0.4".into())),
            ("host:9092", Value::String("host:9092".into())),
            ("/path/x.onnx", Value::String("/path/x.onnx".into())),
            ("", Value::String(String::new())),
            ("1\nother = 2", Value::String("1\nother = 2".into())),
        ];
        for (raw, value) in cases {
            assert_eq!(toml_value(raw), value, "{raw:?}");
        }
    }
}
