//! SQL over the Parquet tables with DataFusion.
//!
//! Every table of `schemas::tables` is registered (with its `date` partition
//! column), plus the `transitions` view: consecutive presence intervals of the
//! same person at different cameras, `(person_id, from_camera, to_camera,
//! left_at, arrived_at)`.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use schemas::tables::Table;

use crate::store::table_dir;

/// A query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is invalid or failed (message from DataFusion).
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// Results could not be rendered.
    #[error("formatting results: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// Definition of the `transitions` view.
pub const TRANSITIONS_VIEW: &str = "CREATE VIEW transitions AS \
    SELECT person_id, from_camera, to_camera, left_at, arrived_at FROM ( \
      SELECT person_id, \
             LAG(camera_id) OVER (PARTITION BY person_id ORDER BY enter, exit) AS from_camera, \
             camera_id AS to_camera, \
             LAG(exit) OVER (PARTITION BY person_id ORDER BY enter, exit) AS left_at, \
             enter AS arrived_at \
      FROM people_present) AS visits \
    WHERE from_camera IS NOT NULL AND from_camera <> to_camera";

/// A session with every table under `data_dir` registered.
pub async fn context(data_dir: &Path) -> Result<SessionContext, QueryError> {
    let ctx = SessionContext::new();
    for table in Table::ALL {
        let dir = table_dir(data_dir, table);
        std::fs::create_dir_all(&dir).map_err(|source| QueryError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = std::fs::canonicalize(&dir).map_err(|source| QueryError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
        let url = format!("{}/", dir.display());
        ctx.register_listing_table(table.name(), url, options, Some(table.schema()), None)
            .await?;
    }
    ctx.sql(TRANSITIONS_VIEW).await?.collect().await?;
    Ok(ctx)
}

/// Runs one statement and returns its batches.
pub async fn sql(ctx: &SessionContext, statement: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(statement).await?.collect().await?)
}

/// Runs one statement and renders the result as a text table.
pub async fn sql_text(ctx: &SessionContext, statement: &str) -> Result<String, QueryError> {
    let batches = sql(ctx, statement).await?;
    Ok(pretty_format_batches(&batches)?.to_string())
}
