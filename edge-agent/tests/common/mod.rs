//! Shared by the edge agent's integration tests and benches (`mod common;`,
//! or `#[path = "../tests/common/mod.rs"] mod common;` from a bench).

use std::path::PathBuf;

/// A file of the asset cache that `scripts/setup.sh` fills (`ARGUS_ASSETS`,
/// else `~/.cache/argus/assets`); panics with what to run if it is missing.
pub fn asset(name: &str) -> PathBuf {
    let dir = std::env::var_os("ARGUS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/argus/assets")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}
