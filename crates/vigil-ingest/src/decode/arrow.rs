//! Arrow IPC stream messages, for bulk producers: one row per sample.
//!
//! Columns: `ts` (epoch seconds, float or integer), `service`, `version`,
//! `metric` (strings), `value` (float or integer), and any further string
//! columns as labels (a null label cell leaves that label off). A null in a
//! required column rejects the message.

use std::io::Cursor;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_schema::{ArrowError, DataType};
use vigil_core::events::MAX_LABELS;
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};

use super::DecodeError;

const REQUIRED: [&str; 5] = ["ts", "service", "version", "metric", "value"];

/// Decodes an Arrow IPC stream into one sample per row.
///
/// # Errors
///
/// A malformed stream, a missing or mistyped required column, a null in one.
pub fn decode_arrow(payload: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    // arrow-ipc's reader can panic on malformed data that its own checks let
    // through (buffer counts that disagree with the schema). A message must
    // never stop the consumer; the closure only reads `payload` and owns what
    // it builds, so nothing is left half-updated by an unwind.
    std::panic::catch_unwind(|| decode_stream(payload)).unwrap_or_else(|_| {
        Err(DecodeError::Arrow(ArrowError::IpcError(
            "malformed data made the arrow ipc reader fail".to_owned(),
        )))
    })
}

fn decode_stream(payload: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    let reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let mut samples = Vec::new();
    for batch in reader {
        batch_samples(&batch?, &mut samples)?;
    }
    Ok(samples)
}

fn column_error(column: &'static str, problem: impl Into<String>) -> DecodeError {
    DecodeError::ArrowColumn {
        column,
        problem: problem.into(),
    }
}

/// A numeric column read as f64, row by row.
fn numbers(batch: &RecordBatch, name: &'static str) -> Result<Vec<f64>, DecodeError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| column_error(name, "is missing"))?;
    if column.null_count() > 0 {
        return Err(column_error(name, "holds nulls"));
    }
    match column.data_type() {
        DataType::Float64 => Ok(column.as_primitive::<Float64Type>().values().to_vec()),
        DataType::Int64 => Ok(column
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect()),
        other => Err(column_error(
            name,
            format!("must be float64 or int64, is {other}"),
        )),
    }
}

fn strings<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a arrow_array::StringArray, DecodeError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| column_error(name, "is missing"))?;
    if column.null_count() > 0 {
        return Err(column_error(name, "holds nulls"));
    }
    column
        .as_string_opt::<i32>()
        .ok_or_else(|| column_error(name, format!("must be utf8, is {}", column.data_type())))
}

fn batch_samples(batch: &RecordBatch, samples: &mut Vec<Sample>) -> Result<(), DecodeError> {
    let ts = numbers(batch, "ts")?;
    let value = numbers(batch, "value")?;
    let service = strings(batch, "service")?;
    let version = strings(batch, "version")?;
    let metric = strings(batch, "metric")?;
    let schema = batch.schema();
    let label_columns: Vec<(&str, &arrow_array::StringArray)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !REQUIRED.contains(&f.name().as_str()))
        .filter_map(|(f, c)| Some((f.name().as_str(), c.as_string_opt::<i32>()?)))
        .take(MAX_LABELS)
        .collect();
    samples.reserve(batch.num_rows());
    // Rows of one batch usually share their names: reuse the last ones.
    let mut last: Option<(ServiceName, Version, MetricName)> = None;
    for row in 0..batch.num_rows() {
        let names = match last.take() {
            Some((s, v, m))
                if s.as_str() == service.value(row)
                    && v.as_str() == version.value(row)
                    && m.as_str() == metric.value(row) =>
            {
                (s, v, m)
            }
            _ => (
                ServiceName::new(service.value(row))?,
                Version::new(version.value(row))?,
                MetricName::new(metric.value(row))?,
            ),
        };
        let labels = if label_columns.is_empty() {
            Labels::empty()
        } else {
            Labels::from_pairs(
                label_columns
                    .iter()
                    .filter(|(_, c)| c.is_valid(row))
                    .map(|(k, c)| (*k, c.value(row))),
            )
        };
        samples.push(Sample {
            ts: ts[row],
            service: names.0.clone(),
            version: names.1.clone(),
            metric: names.2.clone(),
            labels,
            observation: Observation::Value(value[row]),
        });
        last = Some(names);
    }
    Ok(())
}
