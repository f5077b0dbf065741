//! Loading a service's TOML configuration, with environment-variable
//! overrides ([`overrides`]), and collecting its problems.

pub mod overrides;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that cannot be used. Messages name the file and,
/// for syntax or type errors, the line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this service.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser error with location.
        source: Box<toml::de::Error>,
    },
    /// Values parse but are not acceptable; every problem is listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Reads and deserialises a TOML file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source: Box::new(source),
    })
}

/// Collects validation problems so all of them are reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records a problem when `ok` is false.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    /// Records a problem unconditionally.
    pub fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    /// Records several problems.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.0.extend(problems);
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
    }

    #[test]
    fn unknown_keys_and_missing_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("svckit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "name = \"x\"\nnmae = \"y\"\n").unwrap();
        let err = load::<Sample>(&file).unwrap_err().to_string();
        assert!(err.contains("nmae") && err.contains("bad.toml"), "{err}");
        let err = load::<Sample>(&dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut p = Problems::default();
        p.check(false, || "first".into());
        p.check(true, || "never".into());
        p.push("second".into());
        let err = p.finish().unwrap_err().to_string();
        assert_eq!(err, "invalid configuration:\n  - first\n  - second");
    }
}
