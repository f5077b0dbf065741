//! The commit log that makes Parquet files visible, together with the Kafka
//! offsets their rows came from.
//!
//! A Parquet file exists for readers only once a commit lists it. A commit
//! is one small JSON object, `_manifest/<seq>.json`, created with
//! "create if absent" semantics (a rename or a conditional PUT, atomic on a
//! local file system and on S3): it names the files it adds and removes and
//! carries the full map of next offsets per topic partition that the live
//! files cover. Writing files and moving offsets forward are therefore one
//! atomic step: after a crash the service resumes from the last commit's
//! offsets, skips messages below them, and deletes files no commit lists.
//!
//! Every [`CHECKPOINT_EVERY`] commits the writer also stores the whole state
//! as `_manifest/<seq>.checkpoint.json`, so readers replay at most that many
//! commits; commits older than the previous checkpoint are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

/// Directory of the commit log, beside the table directories.
pub const MANIFEST_DIR: &str = "_manifest";
/// Commits between two checkpoints.
pub const CHECKPOINT_EVERY: u64 = 100;

/// The commit log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The object store failed.
    #[error("manifest store: {0}")]
    Store(#[from] object_store::Error),
    /// A commit or checkpoint is not valid JSON of the expected shape.
    #[error("manifest {path}: {source}")]
    Json {
        /// Object involved.
        path: String,
        /// Decoder error.
        source: serde_json::Error,
    },
    /// Commits are missing between the checkpoint and the newest commit.
    #[error("manifest is missing commit {missing} (newest is {newest}); refusing to guess")]
    Gap {
        /// First missing sequence number.
        missing: u64,
        /// Newest sequence number found.
        newest: u64,
    },
    /// Another writer created the commit this one meant to create.
    #[error(
        "commit {seq} already exists: another aggregator is writing to the same storage \
         (only one writer per storage location is supported)"
    )]
    Conflict {
        /// Sequence number both wanted.
        seq: u64,
    },
}

/// One Parquet file a commit made visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the storage root, e.g. `people_present/date=2026-11-22/part-x.parquet`.
    pub path: String,
    /// Table directory name.
    pub table: String,
    /// The `date=` partition value.
    pub date: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// One commit (also the shape of a checkpoint, whose `added` is every live file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Sequence number, 1 for the first commit, contiguous.
    pub seq: u64,
    /// Who wrote it (process start time and host, for people reading the log).
    pub writer: String,
    /// When it was written (Unix µs).
    pub ts_us: i64,
    /// True for a checkpoint: `added` is the complete live set.
    #[serde(default)]
    pub checkpoint: bool,
    /// Files made visible.
    #[serde(default)]
    pub added: Vec<FileEntry>,
    /// Files no longer visible (compacted or expired), by path.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Next offset to read per `topic/partition`, covering every live file.
    #[serde(default)]
    pub offsets: BTreeMap<String, i64>,
}

/// The state the commits add up to: live files and the offsets they cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Sequence number of the last applied commit (0: nothing committed).
    pub seq: u64,
    /// Live files by path.
    pub files: BTreeMap<String, FileEntry>,
    /// Next offset to read per (topic, partition).
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl State {
    /// Applies the next commit (or a checkpoint, which replaces everything).
    pub fn apply(&mut self, commit: &Commit) -> Result<(), ManifestError> {
        if !commit.checkpoint && commit.seq != self.seq + 1 {
            return Err(ManifestError::Gap {
                missing: self.seq + 1,
                newest: commit.seq,
            });
        }
        if commit.checkpoint {
            self.files.clear();
        }
        for path in &commit.removed {
            self.files.remove(path);
        }
        for file in &commit.added {
            self.files.insert(file.path.clone(), file.clone());
        }
        self.offsets = commit
            .offsets
            .iter()
            .filter_map(|(key, offset)| {
                let (topic, partition) = key.rsplit_once('/')?;
                Some(((topic.to_string(), partition.parse().ok()?), *offset))
            })
            .collect();
        self.seq = commit.seq;
        Ok(())
    }

    /// The next offset to read for a partition, if any file covers it.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_string(), partition)).copied()
    }

    /// Whether a path (relative to the root) is a live file.
    pub fn is_live(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// This state as a checkpoint with sequence number `self.seq`.
    pub fn checkpoint(&self, writer: &str, ts_us: i64) -> Commit {
        Commit {
            seq: self.seq,
            writer: writer.to_string(),
            ts_us,
            checkpoint: true,
            added: self.files.values().cloned().collect(),
            removed: Vec::new(),
            offsets: offsets_map(&self.offsets),
        }
    }
}

/// Offsets as the JSON map of a commit (`topic/partition` keys).
pub fn offsets_map(offsets: &BTreeMap<(String, i32), i64>) -> BTreeMap<String, i64> {
    offsets
        .iter()
        .map(|((topic, partition), offset)| (format!("{topic}/{partition}"), *offset))
        .collect()
}

/// What one manifest directory listing holds.
#[derive(Debug, Default)]
struct Listing {
    commits: Vec<u64>,
    checkpoints: Vec<u64>,
}

/// The commit log of one storage root.
#[derive(Debug, Clone)]
pub struct Manifest {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl Manifest {
    /// The log under `root/_manifest`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &Path) -> Self {
        Manifest {
            store,
            dir: root.clone().join(MANIFEST_DIR),
        }
    }

    fn commit_path(&self, seq: u64) -> Path {
        self.dir.clone().join(format!("{seq:020}.json"))
    }

    fn checkpoint_path(&self, seq: u64) -> Path {
        self.dir.clone().join(format!("{seq:020}.checkpoint.json"))
    }

    async fn list(&self) -> Result<Listing, ManifestError> {
        let metas: Vec<_> = self.store.list(Some(&self.dir)).try_collect().await?;
        let mut listing = Listing::default();
        for meta in metas {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if let Some(seq) = name.strip_suffix(".checkpoint.json") {
                if let Ok(seq) = seq.parse() {
                    listing.checkpoints.push(seq);
                }
            } else if let Some(seq) = name.strip_suffix(".json")
                && let Ok(seq) = seq.parse()
            {
                listing.commits.push(seq);
            }
        }
        listing.commits.sort_unstable();
        listing.checkpoints.sort_unstable();
        Ok(listing)
    }

    async fn read(&self, path: &Path) -> Result<Commit, ManifestError> {
        let bytes = self.store.get(path).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|source| ManifestError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// Reads the state from the newest checkpoint and the commits after it.
    /// A concurrent cleanup can delete what a listing named; that is retried.
    pub async fn load(&self) -> Result<State, ManifestError> {
        let mut attempt = 0;
        loop {
            let mut state = State::default();
            match self.refresh(&mut state).await {
                Err(ManifestError::Store(object_store::Error::NotFound { .. })) if attempt < 3 => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
                Ok(_) => return Ok(state),
            }
        }
    }

    /// Brings `state` up to the newest commit; returns whether it changed.
    pub async fn refresh(&self, state: &mut State) -> Result<bool, ManifestError> {
        let listing = self.list().await?;
        let newest = listing
            .commits
            .last()
            .copied()
            .unwrap_or(0)
            .max(listing.checkpoints.last().copied().unwrap_or(0));
        if newest <= state.seq {
            return Ok(false);
        }
        // Replay from where we are if every commit since is still there,
        // else from the newest checkpoint.
        let contiguous_from_here = listing.commits.binary_search(&(state.seq + 1)).is_ok();
        if !contiguous_from_here || state.seq == 0 {
            if let Some(&checkpoint) = listing.checkpoints.last() {
                if checkpoint > state.seq {
                    *state = State::default();
                    state.apply(&self.read(&self.checkpoint_path(checkpoint)).await?)?;
                }
            } else if state.seq != 0 {
                return Err(ManifestError::Gap {
                    missing: state.seq + 1,
                    newest,
                });
            }
        }
        let after = state.seq;
        for &seq in listing.commits.iter().filter(|&&seq| seq > after) {
            state.apply(&self.read(&self.commit_path(seq)).await?)?;
        }
        Ok(true)
    }

    /// Creates commit `state.seq + 1`, applies it to `state`, and every
    /// [`CHECKPOINT_EVERY`] commits writes a checkpoint and deletes commits
    /// older than the previous one. Fails with [`ManifestError::Conflict`]
    /// if another writer created that commit first.
    pub async fn commit(
        &self,
        state: &mut State,
        writer: &str,
        ts_us: i64,
        added: Vec<FileEntry>,
        removed: Vec<String>,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<u64, ManifestError> {
        let commit = Commit {
            seq: state.seq + 1,
            writer: writer.to_string(),
            ts_us,
            checkpoint: false,
            added,
            removed,
            offsets: offsets_map(offsets),
        };
        let json = serde_json::to_vec_pretty(&commit).map_err(|source| ManifestError::Json {
            path: self.commit_path(commit.seq).to_string(),
            source,
        })?;
        let options = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(
                &self.commit_path(commit.seq),
                PutPayload::from(json),
                options,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(ManifestError::Conflict { seq: commit.seq });
            }
            Err(error) => return Err(error.into()),
        }
        state.apply(&commit)?;
        // The commit exists: a failed checkpoint or cleanup only leaves a
        // longer log behind, so it must not make the caller retry the commit.
        if commit.seq.is_multiple_of(CHECKPOINT_EVERY)
            && let Err(error) = self.checkpoint(state, writer, ts_us).await
        {
            tracing::warn!(%error, seq = commit.seq, "Manifest checkpoint failed; the log stays longer");
        }
        Ok(commit.seq)
    }

    /// Writes a checkpoint of `state` and deletes what the one before it made
    /// redundant (commits and checkpoints older than the previous checkpoint).
    async fn checkpoint(
        &self,
        state: &State,
        writer: &str,
        ts_us: i64,
    ) -> Result<(), ManifestError> {
        let checkpoint = state.checkpoint(writer, ts_us);
        let path = self.checkpoint_path(checkpoint.seq);
        let json = serde_json::to_vec(&checkpoint).map_err(|source| ManifestError::Json {
            path: path.to_string(),
            source,
        })?;
        self.store.put(&path, PutPayload::from(json)).await?;
        let listing = self.list().await?;
        let Some(&previous) = listing.checkpoints.iter().rev().nth(1) else {
            return Ok(());
        };
        for seq in listing.commits.into_iter().filter(|&seq| seq <= previous) {
            self.delete(&self.commit_path(seq)).await?;
        }
        for seq in listing
            .checkpoints
            .into_iter()
            .filter(|&seq| seq < previous)
        {
            self.delete(&self.checkpoint_path(seq)).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &Path) -> Result<(), ManifestError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn file(name: &str) -> FileEntry {
        FileEntry {
            path: format!("people_present/date=2026-11-22/{name}.parquet"),
            table: "people_present".into(),
            date: "2026-11-22".into(),
            rows: 10,
            bytes: 100,
        }
    }

    fn offsets(next: i64) -> BTreeMap<(String, i32), i64> {
        [(("argus.presence.v1".to_string(), 0), next)].into()
    }

    #[tokio::test]
    async fn commits_add_and_remove_files_and_carry_offsets() {
        let manifest = Manifest::new(Arc::new(InMemory::new()), &Path::from("tables"));
        let mut state = manifest.load().await.unwrap();
        assert_eq!(state, State::default());
        manifest
            .commit(
                &mut state,
                "w",
                1,
                vec![file("a"), file("b")],
                vec![],
                &offsets(5),
            )
            .await
            .unwrap();
        manifest
            .commit(
                &mut state,
                "w",
                2,
                vec![file("c")],
                vec![file("a").path],
                &offsets(9),
            )
            .await
            .unwrap();
        let loaded = manifest.load().await.unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded.seq, 2);
        assert_eq!(
            loaded.files.keys().cloned().collect::<Vec<_>>(),
            vec![file("b").path, file("c").path]
        );
        assert_eq!(loaded.next_offset("argus.presence.v1", 0), Some(9));
        assert_eq!(loaded.next_offset("argus.presence.v1", 1), None);
    }

    #[tokio::test]
    async fn a_second_writer_of_the_same_commit_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("t");
        let a = Manifest::new(Arc::clone(&store), &root);
        let b = Manifest::new(store, &root);
        let mut sa = a.load().await.unwrap();
        let mut sb = b.load().await.unwrap();
        a.commit(&mut sa, "a", 1, vec![file("a")], vec![], &offsets(1))
            .await
            .unwrap();
        let err = b
            .commit(&mut sb, "b", 1, vec![file("b")], vec![], &offsets(1))
            .await
            .unwrap_err();
        assert!(matches!(err, ManifestError::Conflict { seq: 1 }), "{err}");
        assert_eq!(b.load().await.unwrap(), sa, "the loser changed nothing");
    }

    #[tokio::test]
    async fn checkpoints_bound_the_log_and_readers_catch_up_across_them() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("t");
        let manifest = Manifest::new(Arc::clone(&store), &root);
        let mut writer = State::default();
        let mut reader = State::default();
        for i in 1..=(3 * CHECKPOINT_EVERY + 5) {
            let removed = if i > 1 {
                vec![file(&format!("f{}", i - 1)).path]
            } else {
                vec![]
            };
            manifest
                .commit(
                    &mut writer,
                    "w",
                    i as i64,
                    vec![file(&format!("f{i}"))],
                    removed,
                    &offsets(i as i64),
                )
                .await
                .unwrap();
            if i == 7 {
                manifest.refresh(&mut reader).await.unwrap();
                assert_eq!(reader.seq, 7);
            }
        }
        // The reader at 7 lost its commits to cleanup: it restarts from a checkpoint.
        assert!(manifest.refresh(&mut reader).await.unwrap());
        assert_eq!(reader, writer);
        assert_eq!(reader.files.len(), 1);
        let listing = manifest.list().await.unwrap();
        assert_eq!(
            listing.checkpoints,
            vec![2 * CHECKPOINT_EVERY, 3 * CHECKPOINT_EVERY]
        );
        assert_eq!(listing.commits.first(), Some(&(2 * CHECKPOINT_EVERY + 1)));
        assert!(!manifest.refresh(&mut reader).await.unwrap(), "nothing new");
    }

    #[tokio::test]
    async fn a_missing_commit_is_an_error_not_a_silent_loss() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("t");
        let manifest = Manifest::new(Arc::clone(&store), &root);
        let mut state = State::default();
        for i in 1..=3 {
            manifest
                .commit(
                    &mut state,
                    "w",
                    i,
                    vec![file(&format!("f{i}"))],
                    vec![],
                    &offsets(i),
                )
                .await
                .unwrap();
        }
        store.delete(&manifest.commit_path(2)).await.unwrap();
        let err = manifest.load().await.unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::Gap {
                    missing: 2,
                    newest: 3
                }
            ),
            "{err}"
        );
    }
}
