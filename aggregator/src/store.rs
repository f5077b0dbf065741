//! Where the tables live: an `object_store` (local directory by default, any
//! S3-compatible store by config), Parquet encoding, and the committed view
//! that hides every file the manifest does not list.
//!
//! Layout under the storage root:
//! `<table>/date=YYYY-MM-DD/part-<writer>-<seq>.parquet` (Hive-style date
//! partitions, rows sorted by the table's time column, 64 Ki-row groups with
//! page statistics) and `_manifest/` (see [`crate::manifest`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use schemas::tables::Table;
use serde::Deserialize;
use url::Url;

use crate::manifest::{FileEntry, Manifest, ManifestError, State};

/// Storage could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Local file-system error (creating the root directory).
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: std::path::PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The object store refused an operation.
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    /// Parquet encoding or decoding failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        /// Object involved.
        path: String,
        /// Codec error.
        source: datafusion::parquet::errors::ParquetError,
    },
    /// Sorting or concatenating record batches failed.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The storage URL or its options are invalid.
    #[error("storage {0}")]
    Config(String),
}

/// Tables in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2...)
/// instead of a local directory: the `[s3]` section of the configuration.
///
/// Anything left out comes from the standard `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT`...), then from the instance or web-identity
/// credential providers. The commit log needs conditional writes
/// (`If-None-Match: *`), which AWS S3, MinIO and R2 support.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket name (the bucket must exist).
    pub bucket: String,
    /// Key prefix the tables live under, e.g. `"argus/tables"`; empty: the bucket root.
    #[serde(default)]
    pub prefix: String,
    /// Region, e.g. `"eu-west-1"`; default from the environment, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `"https://minio.internal:9000"`;
    /// default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow a plain `http://` endpoint (only on a trusted network).
    #[serde(default)]
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.endpoint/key`) instead of path
    /// style (`endpoint/bucket/key`, the default, which S3-compatible servers expect).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Access key id; default from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key; default from the environment.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials; default from the environment.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .finish()
    }
}

impl S3Settings {
    /// Every problem with these settings (empty when they are usable).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.bucket.trim().is_empty() || self.bucket.contains('/') {
            problems.push(format!(
                "bucket {:?} must be a bucket name (no '/')",
                self.bucket
            ));
        }
        if Path::parse(self.prefix.trim_matches('/')).is_err() {
            problems.push(format!(
                "prefix {:?} is not a valid key prefix",
                self.prefix
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            match Url::parse(endpoint) {
                Ok(url) if url.scheme() == "https" => {}
                Ok(url) if url.scheme() == "http" && !self.allow_http => problems.push(format!(
                    "endpoint {endpoint} is plain http: set allow_http = true to use it"
                )),
                Ok(url) if url.scheme() == "http" => {}
                Ok(_) | Err(_) => {
                    problems.push(format!("endpoint {endpoint:?} is not an http(s) URL"))
                }
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            problems.push("access_key_id and secret_access_key go together".into());
        }
        problems
    }
}

/// Rows per row group: ~1 MiB groups for these narrow tables.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// An opened storage root.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The directory, for local storage.
    local_dir: Option<std::path::PathBuf>,
    /// Scheme and authority DataFusion resolves the store by (`file:///`, `s3://bucket/`).
    base: Url,
}

impl Storage {
    /// A local directory (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let dir = std::fs::canonicalize(dir).map_err(io)?;
        Ok(Storage {
            local_dir: Some(dir.clone()),
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            root: Path::from_absolute_path(&dir)
                .map_err(|e| StoreError::Config(format!("{}: {e}", dir.display())))?,
            base: Url::parse("file:///").map_err(|e| StoreError::Config(e.to_string()))?,
        })
    }

    /// An S3-compatible bucket (see [`S3Settings`]). Nothing is contacted
    /// until the first read or write.
    pub fn s3(settings: &S3Settings) -> Result<Self, StoreError> {
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(StoreError::Config(problems.join("; ")));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.allow_http)
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token);
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::Config(format!("s3://{}: {e}", settings.bucket)))?;
        let base = Url::parse(&format!("s3://{}/", settings.bucket))
            .map_err(|e| StoreError::Config(format!("bucket {:?}: {e}", settings.bucket)))?;
        let root = Path::parse(settings.prefix.trim_matches('/'))
            .map_err(|e| StoreError::Config(format!("prefix {:?}: {e}", settings.prefix)))?;
        Ok(Storage::new(Arc::new(store), base, root))
    }

    /// Where the tables are, for logs: a directory or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.local_dir {
            Some(dir) => dir.display().to_string(),
            None => format!("{}{}", self.base, self.root),
        }
    }

    /// The local directory, for local storage.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// Any object store, e.g. S3, with the tables under `root`; `base` is the
    /// URL DataFusion knows the store by (`s3://bucket/`).
    pub fn new(store: Arc<dyn ObjectStore>, base: Url, root: Path) -> Self {
        Storage {
            store,
            root,
            base,
            local_dir: None,
        }
    }

    /// Takes the writer lock of a local directory (`.writer.lock`, released
    /// when the returned file is dropped or the process dies). Another
    /// process holding it is an error: one writer per storage root.
    pub fn lock_writer(&self) -> Result<Option<std::fs::File>, StoreError> {
        let Some(dir) = &self.local_dir else {
            return Ok(None);
        };
        let path = dir.join(".writer.lock");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Config(format!(
                "{}: another aggregator is writing to this directory (one writer per storage root)",
                dir.display()
            ))),
            Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
        }
    }

    /// Every object under the table directories, with its table and path
    /// relative to the root.
    async fn table_objects(&self) -> Result<Vec<(Table, String, ObjectMeta)>, StoreError> {
        let mut out = Vec::new();
        for table in Table::ALL {
            let metas: Vec<ObjectMeta> = self
                .store
                .list(Some(&self.path(table.name())))
                .try_collect()
                .await?;
            for meta in metas {
                if let Some(relative) = relative_to(&self.root, &meta.location) {
                    out.push((table, relative, meta));
                }
            }
        }
        Ok(out)
    }

    /// Every Parquet file under the table directories, as manifest entries
    /// (for adopting tables written before the manifest existed).
    pub async fn existing_files(&self) -> Result<Vec<FileEntry>, StoreError> {
        let mut files = Vec::new();
        for (table, relative, meta) in self.table_objects().await? {
            if !relative.ends_with(".parquet") {
                continue;
            }
            let date = relative
                .split('/')
                .find_map(|part| part.strip_prefix("date="))
                .unwrap_or_default()
                .to_string();
            let rows = self
                .read_parquet(&relative)
                .await
                .map(|b| b.num_rows() as u64)
                .unwrap_or(0);
            files.push(FileEntry {
                path: relative,
                table: table.name().to_string(),
                date,
                rows,
                bytes: meta.size,
            });
        }
        Ok(files)
    }

    /// The raw object store (every file, committed or not).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// Scheme and authority of the store, for registering it with DataFusion.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The storage root inside the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit log of this root.
    pub fn manifest(&self) -> Manifest {
        Manifest::new(self.store(), &self.root)
    }

    /// Absolute object path of a path relative to the root.
    pub fn path(&self, relative: &str) -> Path {
        let mut parts: Vec<_> = self.root.parts().collect();
        let relative = Path::from(relative);
        parts.extend(relative.parts());
        Path::from_iter(parts)
    }

    /// URL of a table's directory, as DataFusion lists it.
    pub fn table_url(&self, table: Table) -> String {
        format!("{}{}/", self.base, self.path(table.name()))
    }

    /// A view of the store in which table files appear only once committed.
    pub fn committed_view(&self) -> Arc<CommittedView> {
        Arc::new(CommittedView::new(self))
    }

    /// Sorts a batch by the table's time column, encodes it as Parquet and
    /// stores it (not yet visible: the caller commits the returned entry).
    pub async fn put_parquet(
        &self,
        table: Table,
        date: &str,
        stem: &str,
        batch: &RecordBatch,
    ) -> Result<FileEntry, StoreError> {
        let relative = format!("{}/date={date}/part-{stem}.parquet", table.name());
        let batch = sort_by_time(table, batch)?;
        let bytes = encode_parquet(&batch).map_err(|source| StoreError::Parquet {
            path: relative.clone(),
            source,
        })?;
        let size = bytes.len() as u64;
        self.store
            .put(&self.path(&relative), PutPayload::from(bytes))
            .await?;
        Ok(FileEntry {
            path: relative,
            table: table.name().to_string(),
            date: date.to_string(),
            rows: batch.num_rows() as u64,
            bytes: size,
        })
    }

    /// Reads a stored Parquet file back into one batch.
    pub async fn read_parquet(&self, relative: &str) -> Result<RecordBatch, StoreError> {
        let bytes = self.store.get(&self.path(relative)).await?.bytes().await?;
        let parquet = |source| StoreError::Parquet {
            path: relative.to_string(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(parquet)?
            .build()
            .map_err(parquet)?;
        let schema = datafusion::arrow::array::RecordBatchReader::schema(&reader);
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        Ok(concat_batches(&schema, &batches)?)
    }

    /// Deletes objects (relative paths); missing ones are fine.
    pub async fn delete(&self, relative: &[String]) -> Result<(), StoreError> {
        for path in relative {
            match self.store.delete(&self.path(path)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Deletes every object under the table directories that `state` does
    /// not list: files of a flush that crashed before its commit, files a
    /// compaction replaced, leftovers of interrupted uploads. Writer start-up only.
    pub async fn sweep_uncommitted(&self, state: &State) -> Result<Vec<String>, StoreError> {
        let orphans: Vec<String> = self
            .table_objects()
            .await?
            .into_iter()
            .map(|(_, relative, _)| relative)
            .filter(|relative| !state.is_live(relative))
            .collect();
        self.delete(&orphans).await?;
        Ok(orphans)
    }
}

/// `location` relative to `root`, if inside it.
fn relative_to(root: &Path, location: &Path) -> Option<String> {
    let mut parts = location.parts();
    for part in root.parts() {
        if parts.next()? != part {
            return None;
        }
    }
    let rest: Vec<_> = parts.map(|p| p.as_ref().to_string()).collect();
    (!rest.is_empty()).then(|| rest.join("/"))
}

/// A stored batch in the table's current schema, column by name: columns
/// added since the file was written (nullable ones) read as null, so files
/// of older versions compact together with new ones.
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch, StoreError> {
    let schema = table.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => Arc::clone(column),
            None => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The batch sorted by the table's time column (stable for equal times).
pub fn sort_by_time(table: Table, batch: &RecordBatch) -> Result<RecordBatch, StoreError> {
    let Ok(index) = batch.schema().index_of(table.time_column()) else {
        return Ok(batch.clone());
    };
    let indices = lexsort_to_indices(
        &[SortColumn {
            values: Arc::clone(batch.column(index)),
            options: None,
        }],
        None,
    )?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Parquet bytes of a batch: zstd, 64 Ki-row groups, page statistics.
pub fn encode_parquet(
    batch: &RecordBatch,
) -> Result<Bytes, datafusion::parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(buffer))
}

/// The storage as queries see it: a table file is listed only if the
/// manifest's newest commit has it, so a half-finished flush or compaction
/// is invisible and a compaction's inputs and output are never both counted.
/// Re-reads the manifest (incrementally) on every listing.
pub struct CommittedView {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    manifest: Manifest,
    state: Arc<tokio::sync::Mutex<Arc<State>>>,
}

impl fmt::Debug for CommittedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommittedView")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for CommittedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommittedView({}, {})", self.inner, self.root)
    }
}

impl CommittedView {
    fn new(storage: &Storage) -> Self {
        CommittedView {
            inner: storage.store(),
            root: storage.root.clone(),
            manifest: storage.manifest(),
            state: Arc::new(tokio::sync::Mutex::new(Arc::new(State::default()))),
        }
    }

    /// The newest committed state.
    pub async fn current(&self) -> object_store::Result<Arc<State>> {
        refreshed(&self.manifest, &self.state).await
    }
}

/// Brings the cached state up to the newest commit and returns it.
async fn refreshed(
    manifest: &Manifest,
    cached: &tokio::sync::Mutex<Arc<State>>,
) -> object_store::Result<Arc<State>> {
    let mut guard = cached.lock().await;
    let mut next = State::clone(&guard);
    let changed = match manifest.refresh(&mut next).await {
        // A cleanup deleted what the listing named: start over from the newest checkpoint.
        Err(ManifestError::Store(object_store::Error::NotFound { .. })) => {
            next = manifest.load().await.map_err(manifest_error)?;
            true
        }
        other => other.map_err(manifest_error)?,
    };
    if changed {
        *guard = Arc::new(next);
    }
    Ok(Arc::clone(&guard))
}

fn manifest_error(error: ManifestError) -> object_store::Error {
    object_store::Error::Generic {
        store: "argus manifest",
        source: Box::new(error),
    }
}

/// Whether a listed object is visible under `state`.
fn visible(root: &Path, state: &State, location: &Path) -> bool {
    let Some(relative) = relative_to(root, location) else {
        return true;
    };
    let table_dir = relative.split('/').next().unwrap_or_default();
    Table::from_name(table_dir).is_none() || state.is_live(&relative)
}

#[async_trait]
impl ObjectStore for CommittedView {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let root = self.root.clone();
        let prefix = prefix.cloned();
        let manifest = self.manifest.clone();
        let cached = Arc::clone(&self.state);
        futures::stream::once(async move {
            let state = refreshed(&manifest, &cached).await?;
            let listed = inner.list(prefix.as_ref()).try_filter(move |meta| {
                futures::future::ready(visible(&root, &state, &meta.location))
            });
            Ok::<_, object_store::Error>(listed)
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let state = self.current().await?;
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result
            .objects
            .retain(|meta| visible(&self.root, &state, &meta.location));
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Relative paths of live files per (table, date), for maintenance.
pub fn live_files_by_partition(
    state: &State,
) -> std::collections::BTreeMap<(String, String), Vec<FileEntry>> {
    let mut groups: std::collections::BTreeMap<(String, String), Vec<FileEntry>> =
        Default::default();
    for file in state.files.values() {
        groups
            .entry((file.table.clone(), file.date.clone()))
            .or_default()
            .push(file.clone());
    }
    groups
}

/// Distinct dates present in a state (for retention).
pub fn dates(state: &State) -> HashSet<String> {
    state.files.values().map(|f| f.date.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, BooleanArray, StringArray};
    use datafusion::arrow::datatypes::Schema;

    #[test]
    fn alerts_files_written_before_the_evidence_columns_conform_with_nulls() {
        // The eight columns the alerts table had before trigger_ts and evidence.
        let current = Table::Alerts.schema();
        let old_fields: Vec<_> = current.fields().iter().take(8).cloned().collect();
        let old = Arc::new(Schema::new(old_fields));
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as _;
        let columns = vec![
            text("a1"),
            text("linger"),
            text("WARNING"),
            text("cam"),
            text("7"),
            Arc::new(
                datafusion::arrow::array::TimestampMicrosecondArray::from(vec![1_000_000])
                    .with_timezone("UTC"),
            ) as _,
            text("m"),
            Arc::new(BooleanArray::from(vec![false])) as _,
        ];
        let batch = RecordBatch::try_new(old, columns).unwrap();
        let conformed = conform(Table::Alerts, &batch).unwrap();
        assert_eq!(conformed.schema(), current);
        assert_eq!(conformed.column(0).as_string::<i32>().value(0), "a1");
        assert!(conformed.column_by_name("trigger_ts").unwrap().is_null(0));
        assert!(conformed.column_by_name("evidence").unwrap().is_null(0));
        // And it concatenates with a batch of the current schema.
        let merged = concat_batches(&current, &[conformed.clone(), conformed]).unwrap();
        assert_eq!(merged.num_rows(), 2);
    }
}
