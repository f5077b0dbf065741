//! Parquet files of the aggregator's tables.
//!
//! Layout: `<data_dir>/<table>/date=YYYY-MM-DD/part-<writer>-<seq>.parquet`
//! (Hive-style date partitions, so a day's query reads one directory). Each
//! file is written to a temporary name, synced and renamed into place, so a
//! process killed mid-write leaves no partial file visible to queries, and
//! the Kafka offsets of its rows are committed only afterwards.

use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use schemas::tables::Table;

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// Parquet encoding error.
    #[error("parquet {path}: {source}")]
    Parquet {
        /// Path involved.
        path: PathBuf,
        /// Encoder error.
        source: datafusion::parquet::errors::ParquetError,
    },
}

/// Rows per row group: ~1 MiB groups for these narrow tables.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Directory of a table.
pub fn table_dir(data_dir: &Path, table: Table) -> PathBuf {
    data_dir.join(table.name())
}

/// Writes one batch as a new Parquet file and returns its final path.
pub fn write_batch(
    data_dir: &Path,
    table: Table,
    date: &str,
    batch: &RecordBatch,
    file_stem: &str,
) -> Result<PathBuf, StoreError> {
    let dir = table_dir(data_dir, table).join(format!("date={date}"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("part-{file_stem}.parquet"));
    let tmp = dir.join(format!(".part-{file_stem}.parquet.tmp"));
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let parquet = |source| StoreError::Parquet {
        path: tmp.clone(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet)?;
    writer.write(batch).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}
