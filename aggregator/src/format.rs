//! Query results as bytes: a text table, CSV, JSON, Arrow IPC or Parquet.
//!
//! Every format carries the result's columns even when it has no rows: the
//! text table and CSV print their header, JSON is `[]`, and Arrow IPC and
//! Parquet hold the schema. Timestamps with a time zone come out as RFC 3339
//! (`2024-05-01T10:00:00Z`, fractional seconds only when present) in the
//! text formats; timestamps without a time zone have no offset to print and
//! come out as ISO 8601 local date-times (`2024-05-01T10:00:00`).

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::errors::ParquetError;

/// How query results are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum OutputFormat {
    /// A text table for people, with borders.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array with one object per row.
    Json,
    /// An Arrow IPC stream (schema, then record batches).
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl OutputFormat {
    /// Every format, in the order of the enum.
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Table,
        OutputFormat::Csv,
        OutputFormat::Json,
        OutputFormat::Arrow,
        OutputFormat::Parquet,
    ];

    /// The name used on the command line and in `?format=`.
    pub const fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
            OutputFormat::Arrow => "arrow",
            OutputFormat::Parquet => "parquet",
        }
    }

    /// The HTTP `Content-Type` of the encoded bytes.
    pub const fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Table => "text/plain; charset=utf-8",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Json => "application/json",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The format whose media type is `media_type` (without parameters,
    /// compared case-insensitively), if any. `text/plain` is the text table.
    pub fn from_media_type(media_type: &str) -> Option<OutputFormat> {
        let media_type = media_type.trim();
        OutputFormat::ALL.into_iter().find(|format| {
            let own = format.content_type();
            let own = own.split(';').next().unwrap_or(own);
            own.eq_ignore_ascii_case(media_type)
        })
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is none of [`OutputFormat`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format {0:?}; expected one of table, csv, json, arrow, parquet")]
pub struct UnknownFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    /// Parses a format name, ignoring ASCII case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        OutputFormat::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| UnknownFormat(name.to_string()))
    }
}

/// The result could not be encoded in the chosen format, typically because
/// a column's type has no representation there (nested types in CSV, for
/// example).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Arrow's writers (table, CSV, JSON, IPC) refused the data.
    #[error("cannot encode the result as {format}: {source}")]
    Arrow {
        /// The format being written.
        format: OutputFormat,
        /// Arrow's reason.
        source: ArrowError,
    },
    /// The Parquet writer refused the data.
    #[error("cannot encode the result as parquet: {0}")]
    Parquet(#[from] ParquetError),
    /// The destination refused the bytes.
    #[error("cannot write {format} output: {source}")]
    Io {
        /// The format being written.
        format: OutputFormat,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Encodes `batches` (all with `schema`) in `format`.
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    write(&mut out, schema, batches, format)?;
    Ok(out)
}

/// Writes `batches` (all with `schema`) to `out` in `format`.
pub fn write<W: Write + Send>(
    out: &mut W,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<(), FormatError> {
    let arrow = |source| FormatError::Arrow { format, source };
    match format {
        OutputFormat::Table => {
            let table =
                pretty_format_batches_with_schema(schema.clone(), batches).map_err(arrow)?;
            writeln!(out, "{table}").map_err(|source| FormatError::Io { format, source })?;
        }
        OutputFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(out);
            // The CSV writer prints its header with the first batch it sees,
            // so an empty result still needs one (empty) batch.
            let empty = [RecordBatch::new_empty(schema.clone())];
            let batches = if batches.is_empty() { &empty } else { batches };
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(out);
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
        }
        OutputFormat::Arrow => {
            let mut writer = StreamWriter::try_new(out, schema).map_err(arrow)?;
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
        }
        OutputFormat::Parquet => {
            let mut writer = ArrowWriter::try_new(out, schema.clone(), None)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use datafusion::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::ipc::reader::StreamReader;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    /// 2024-05-01T10:00:00Z in microseconds since the epoch.
    const T0: i64 = 1_714_557_600_000_000;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("camera", DataType::Utf8, false),
            Field::new("person", DataType::Int64, false),
            Field::new(
                "seen_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("score", DataType::Float64, true),
        ]))
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec!["cam-a", "cam,b"])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![T0, T0 + 1_500_000]).with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![Some(0.5), None])),
            ],
        )
        .unwrap()
    }

    fn text(format: OutputFormat, batches: &[RecordBatch]) -> String {
        String::from_utf8(encode(&schema(), batches, format).unwrap()).unwrap()
    }

    #[test]
    fn names_parse_and_round_trip() {
        for format in OutputFormat::ALL {
            assert_eq!(format.name().parse::<OutputFormat>(), Ok(format));
            assert_eq!(format.to_string(), format.name());
            let media_type = format.content_type().split(';').next().unwrap();
            assert_eq!(OutputFormat::from_media_type(media_type), Some(format));
        }
        assert_eq!("JSON".parse::<OutputFormat>(), Ok(OutputFormat::Json));
        assert_eq!(
            "xml".parse::<OutputFormat>(),
            Err(UnknownFormat("xml".into()))
        );
        assert_eq!(OutputFormat::from_media_type("image/png"), None);
        let names: Vec<String> = <OutputFormat as clap::ValueEnum>::value_variants()
            .iter()
            .filter_map(clap::ValueEnum::to_possible_value)
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(names, ["table", "csv", "json", "arrow", "parquet"]);
    }

    #[test]
    fn csv_has_a_header_and_rfc3339_timestamps() {
        assert_eq!(
            text(OutputFormat::Csv, &[batch()]),
            "camera,person,seen_at,score\n\
             cam-a,1,2024-05-01T10:00:00Z,0.5\n\
             \"cam,b\",2,2024-05-01T10:00:01.500Z,\n"
        );
        assert_eq!(
            text(OutputFormat::Csv, &[]),
            "camera,person,seen_at,score\n"
        );
    }

    #[test]
    fn json_is_an_array_of_row_objects_with_explicit_nulls() {
        assert_eq!(
            text(OutputFormat::Json, &[batch()]),
            r#"[{"camera":"cam-a","person":1,"seen_at":"2024-05-01T10:00:00Z","score":0.5},{"camera":"cam,b","person":2,"seen_at":"2024-05-01T10:00:01.500Z","score":null}]"#
        );
        assert_eq!(text(OutputFormat::Json, &[]), "[]");
        assert_eq!(
            text(
                OutputFormat::Json,
                &[RecordBatch::new_empty(schema()), batch().slice(0, 1)]
            ),
            r#"[{"camera":"cam-a","person":1,"seen_at":"2024-05-01T10:00:00Z","score":0.5}]"#
        );
    }

    #[test]
    fn table_is_bordered_text() {
        assert_eq!(
            text(OutputFormat::Table, &[batch()]),
            "+--------+--------+--------------------------+-------+\n\
             | camera | person | seen_at                  | score |\n\
             +--------+--------+--------------------------+-------+\n\
             | cam-a  | 1      | 2024-05-01T10:00:00Z     | 0.5   |\n\
             | cam,b  | 2      | 2024-05-01T10:00:01.500Z |       |\n\
             +--------+--------+--------------------------+-------+\n"
        );
        assert_eq!(
            text(OutputFormat::Table, &[]),
            "+--------+--------+---------+-------+\n\
             | camera | person | seen_at | score |\n\
             +--------+--------+---------+-------+\n\
             +--------+--------+---------+-------+\n"
        );
    }

    #[test]
    fn arrow_ipc_round_trips() {
        let bytes = encode(&schema(), &[batch(), batch()], OutputFormat::Arrow).unwrap();
        let reader = StreamReader::try_new(bytes.as_slice(), None).unwrap();
        assert_eq!(reader.schema(), schema());
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches, [batch(), batch()]);

        let empty = encode(&schema(), &[], OutputFormat::Arrow).unwrap();
        let reader = StreamReader::try_new(empty.as_slice(), None).unwrap();
        assert_eq!(reader.schema(), schema());
        assert_eq!(reader.count(), 0);
    }

    #[test]
    fn parquet_round_trips() {
        let bytes = encode(&schema(), &[batch()], OutputFormat::Parquet).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches, [batch()]);

        let empty = encode(&schema(), &[], OutputFormat::Parquet).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(empty)).unwrap();
        assert_eq!(builder.schema(), &schema());
        assert_eq!(builder.build().unwrap().count(), 0);
    }

    #[test]
    fn unsupported_types_are_errors_naming_the_format() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        )]));
        let err = encode(&schema, &[], OutputFormat::Csv).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot encode the result as csv: "),
            "{err}"
        );
    }
}
