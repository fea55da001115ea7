//! Sample readers behind `vigil compare --baseline FILE --canary FILE`.
//!
//! Each input is a file (or `-` for standard input) holding one metric value
//! per sample, in one of four formats: plain lines, a CSV column, a field of
//! JSON lines, or a column of an Arrow IPC file or stream. Gzip is detected
//! from the content's magic bytes, so `latency.txt.gz` and a gzipped pipe
//! both work without a flag.
//!
//! Every value is validated here, at the edge, so that the statistics never
//! see NaN, infinities or negative numbers, and every rejection names the
//! input and the 1-based line (CSV: record and line, Arrow: row) that a
//! person has to fix. Malformed input is an error, never a crash: invalid
//! UTF-8, truncated gzip and corrupt Arrow data included (see `read_arrow`
//! for how arrow-ipc's own panics are contained).
//!
//! Alongside the values the readers report [`Samples::max_decimals`], the
//! precision the inputs were written with, because the caller scales values
//! to integers for an HDR histogram and must keep decimal inputs' exact
//! order and ties.
//!
//! This module deliberately does no statistics and no filtering (such as
//! selecting CSV rows by version): it turns bytes into validated numbers.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::{ArrowError, DataType, Schema};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The largest `max_decimals` reported: beyond a microsecond's worth of
/// digits on a millisecond metric, extra precision only inflates the
/// histogram's range without changing any comparison a person cares about.
pub const MAX_DECIMALS: u32 = 6;

/// Large reads keep the per-syscall overhead negligible on multi-million
/// line inputs.
const BUF_CAPACITY: usize = 64 * 1024;

/// Offending text quoted in an error is cut to this many characters, so a
/// binary file read as lines cannot produce a megabyte-long message.
const MAX_QUOTED_CHARS: usize = 40;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ARROW_FILE_MAGIC: &[u8] = b"ARROW1";
const IPC_CONTINUATION: &[u8] = &[0xff; 4];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Machine epsilons of Arrow's narrower float types, so that their values'
/// decimals are judged at the precision they were stored with.
const F16_EPSILON: f64 = 0.000_976_562_5;
const F32_EPSILON: f64 = f32::EPSILON as f64;

/// How the values are laid out in an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One number per line; blank lines and `#` comments are skipped.
    Lines,
    /// The named column of a CSV file with a header row.
    Csv { column: String },
    /// The named numeric field of one JSON object per line.
    JsonLines { field: String },
    /// The named integer or float column of an Arrow IPC file or stream.
    Arrow { column: String },
}

/// One input to read: where it is and how it is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The file to read; `-` means the standard input given to
    /// [`read_samples`].
    pub path: PathBuf,
    pub format: Format,
}

/// The validated values of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// The input's display name: its path, or `<stdin>`.
    pub source: String,
    /// Finite, non-negative values in input order; never empty.
    pub values: Vec<f64>,
    /// The most digits after the decimal point among the values, capped at
    /// [`MAX_DECIMALS`], so that `value * 10^max_decimals` is an integer for
    /// every value (up to the cap).
    pub max_decimals: u32,
}

/// Where in an input a value (or a problem) is, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line of a plain or JSON lines input.
    Line(u64),
    /// A CSV data record (the header is not counted) and the line it starts
    /// on, since quoted fields can span lines.
    Record { record: u64, line: u64 },
    /// A row of an Arrow input, counted across record batches.
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Record { record, line } => write!(f, "record {record} (line {line})"),
            Location::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// Why an input could not be turned into samples.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("--column and --field are mutually exclusive: --column selects a csv or arrow column, --field a json lines field")]
    ConflictingFlags,

    #[error("{} is an arrow ipc file: select the column with --column, not --field", .path.display())]
    FieldForArrow { path: PathBuf },

    #[error("{} looks like {format} input: pass {flag} NAME to select the values to compare", .path.display())]
    MissingFlag {
        path: PathBuf,
        format: &'static str,
        flag: &'static str,
    },

    #[error("cannot open {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot read {input}{}", At(.location))]
    Read {
        input: String,
        location: Option<Location>,
        #[source]
        source: io::Error,
    },

    #[error("invalid utf-8 at {location} of {input}")]
    InvalidUtf8 { input: String, location: Location },

    #[error("{text:?} is not a number at {location} of {input}")]
    NotANumber {
        input: String,
        location: Location,
        text: String,
    },

    #[error("{text} is not a finite number at {location} of {input}")]
    NotFinite {
        input: String,
        location: Location,
        text: String,
    },

    #[error("negative value {text} at {location} of {input}: latencies and other compared metrics must be >= 0")]
    Negative {
        input: String,
        location: Location,
        text: String,
    },

    #[error("no samples in {input}")]
    Empty { input: String },

    #[error("no column {column:?} in {input} (available columns: {})", Listing(.available))]
    MissingColumn {
        input: String,
        column: String,
        available: Vec<String>,
    },

    #[error("{location} of {input} has no {name:?} field")]
    MissingField {
        input: String,
        location: Location,
        name: String,
    },

    #[error("{kind} {name:?} value at {location} of {input}")]
    NoValue {
        input: String,
        location: Location,
        name: String,
        /// `empty` (CSV) or `null` (JSON, Arrow).
        kind: &'static str,
    },

    #[error("{name:?} is {found}, not a number, at {location} of {input}")]
    NotNumeric {
        input: String,
        location: Location,
        name: String,
        found: &'static str,
    },

    #[error("cannot parse csv in {input} at {location}")]
    Csv {
        input: String,
        location: Location,
        #[source]
        source: csv::Error,
    },

    #[error("cannot parse {location} of {input} as a json object")]
    Json {
        input: String,
        location: Location,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot read arrow ipc data from {input}")]
    Arrow {
        input: String,
        #[source]
        source: ArrowError,
    },

    #[error("column {column:?} of {input} has type {data_type}: expected an integer or floating-point column")]
    UnsupportedType {
        input: String,
        column: String,
        data_type: String,
    },
}

/// Formats an optional location as ` at line 5`, or nothing.
struct At<'a>(&'a Option<Location>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(location) => write!(f, " at {location}"),
            None => Ok(()),
        }
    }
}

/// Formats column names as a comma-separated list, or `none`.
struct Listing<'a>(&'a [String]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}

/// What a file name says about its layout, once a trailing `.gz` is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    Arrow,
    Csv,
    JsonLines,
    Other,
}

impl Extension {
    fn of(path: &Path) -> Extension {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            return Extension::Other;
        };
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        match Path::new(name).extension().and_then(|ext| ext.to_str()) {
            Some("arrow" | "ipc" | "feather") => Extension::Arrow,
            Some("csv") => Extension::Csv,
            Some("jsonl" | "ndjson") => Extension::JsonLines,
            _ => Extension::Other,
        }
    }
}

/// Chooses an input's format from the `--column`/`--field` flags and the
/// file name (with any trailing `.gz` removed).
///
/// The flags decide: `--column` means Arrow for `.arrow`/`.ipc`/`.feather`
/// files and CSV otherwise (including `-`), `--field` means JSON lines, and
/// no flag means plain lines. Without a flag, a `.csv`, `.jsonl`/`.ndjson`
/// or Arrow file is an error rather than being read as lines, because its
/// header or first object would otherwise be reported as "not a number",
/// which hides the actual mistake: the missing flag.
///
/// # Errors
///
/// [`InputError::ConflictingFlags`] for both flags,
/// [`InputError::FieldForArrow`] for `--field` on an Arrow file, and
/// [`InputError::MissingFlag`] as described above.
pub fn format_for(
    path: &Path,
    column: Option<&str>,
    field: Option<&str>,
) -> Result<Format, InputError> {
    let extension = if path == Path::new("-") {
        Extension::Other
    } else {
        Extension::of(path)
    };
    match (column, field) {
        (Some(_), Some(_)) => Err(InputError::ConflictingFlags),
        (Some(column), None) => {
            let column = column.to_owned();
            Ok(if extension == Extension::Arrow {
                Format::Arrow { column }
            } else {
                Format::Csv { column }
            })
        }
        (None, Some(field)) => {
            if extension == Extension::Arrow {
                return Err(InputError::FieldForArrow {
                    path: path.to_owned(),
                });
            }
            Ok(Format::JsonLines {
                field: field.to_owned(),
            })
        }
        (None, None) => {
            let (format, flag) = match extension {
                Extension::Other => return Ok(Format::Lines),
                Extension::Arrow => ("arrow ipc", "--column"),
                Extension::Csv => ("csv", "--column"),
                Extension::JsonLines => ("json lines", "--field"),
            };
            Err(InputError::MissingFlag {
                path: path.to_owned(),
                format,
                flag,
            })
        }
    }
}

/// Reads and validates every sample of one input.
///
/// `stdin` is read only when `spec.path` is `-`; it is a parameter so that
/// tests (and a caller reading both inputs) control it.
///
/// # Errors
///
/// Any [`InputError`] but the flag errors of [`format_for`]: the input
/// cannot be opened or read, is malformed, holds a value that is not a
/// finite non-negative number, or holds no values at all.
pub fn read_samples(spec: &InputSpec, stdin: &mut dyn Read) -> Result<Samples, InputError> {
    let (input, reader) = open(&spec.path, stdin)?;
    match &spec.format {
        Format::Lines => read_lines(reader, input),
        Format::Csv { column } => read_csv(reader, input, column),
        Format::JsonLines { field } => read_json_lines(reader, input, field),
        Format::Arrow { column } => read_arrow(reader, input, column),
    }
}

/// `raw` as it is, or gunzipped (concatenated members included) when it
/// starts with the gzip magic bytes. A pipe may deliver fewer bytes than
/// asked for, so the prefix is read until the magic's length or the end.
pub(crate) fn ungzip<'a>(mut raw: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut prefix = [0_u8; 2];
    let mut n_prefix = 0;
    while n_prefix < prefix.len() {
        match raw.read(&mut prefix[n_prefix..]) {
            Ok(0) => break,
            Ok(n) => n_prefix += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let is_gzip = prefix[..n_prefix] == GZIP_MAGIC;
    let content = Cursor::new(prefix).take(n_prefix as u64).chain(raw);
    Ok(if is_gzip {
        Box::new(flate2::read::MultiGzDecoder::new(content))
    } else {
        Box::new(content)
    })
}

/// Opens the input and returns its display name and decoded content,
/// gunzipping when the content starts with the gzip magic bytes.
///
/// Sniffing the content rather than trusting a `.gz` suffix lets a gzipped
/// pipe on stdin work too; plain text, CSV, JSON and Arrow data never start
/// with 0x1f 0x8b.
fn open<'a>(
    path: &Path,
    stdin: &'a mut dyn Read,
) -> Result<(String, Box<dyn Read + 'a>), InputError> {
    let (input, raw): (String, Box<dyn Read + 'a>) = if path == Path::new("-") {
        ("<stdin>".to_owned(), Box::new(stdin))
    } else {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_owned(),
            source,
        })?;
        (path.display().to_string(), Box::new(file))
    };

    let decoded = ungzip(raw).map_err(|source| InputError::Read {
        input: input.clone(),
        location: None,
        source,
    })?;
    Ok((input, decoded))
}

/// Collects validated values and the decimals they were written with.
struct Accumulator {
    input: String,
    values: Vec<f64>,
    max_decimals: u32,
}

impl Accumulator {
    fn new(input: String) -> Self {
        Accumulator {
            input,
            values: Vec::new(),
            max_decimals: 0,
        }
    }

    /// Parses a trimmed, non-empty textual value.
    fn push_text(&mut self, text: &str, location: Location) -> Result<(), InputError> {
        let Ok(value) = text.parse::<f64>() else {
            return Err(InputError::NotANumber {
                input: self.input.clone(),
                location,
                text: quoted(text),
            });
        };
        self.push_value(value, location, || quoted(text))?;
        if self.max_decimals < MAX_DECIMALS {
            self.max_decimals = self.max_decimals.max(text_decimals(text));
        }
        Ok(())
    }

    /// Validates a value; `text` renders it for an error message, lazily so
    /// that the common path does not allocate.
    fn push_value(
        &mut self,
        value: f64,
        location: Location,
        text: impl FnOnce() -> String,
    ) -> Result<(), InputError> {
        if !value.is_finite() {
            return Err(InputError::NotFinite {
                input: self.input.clone(),
                location,
                text: text(),
            });
        }
        if value < 0.0 {
            return Err(InputError::Negative {
                input: self.input.clone(),
                location,
                text: text(),
            });
        }
        // Adding zero turns -0.0 into 0.0, so no consumer ever prints "-0".
        self.values.push(value + 0.0);
        Ok(())
    }

    /// Records a value that had no text (JSON, Arrow floats): its decimals
    /// come from the value at the given precision.
    fn note_float_decimals(&mut self, value: f64, epsilon: f64) {
        if self.max_decimals < MAX_DECIMALS {
            self.max_decimals = self.max_decimals.max(value_decimals(value, epsilon));
        }
    }

    fn finish(self) -> Result<Samples, InputError> {
        if self.values.is_empty() {
            return Err(InputError::Empty { input: self.input });
        }
        Ok(Samples {
            source: self.input,
            values: self.values,
            max_decimals: self.max_decimals,
        })
    }
}

/// Cuts text quoted in an error message to a readable length.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Digits after the decimal point of a valid float literal, accounting for
/// its exponent ("12.50" -> 2, "3e-2" -> 2, "1.5e3" -> 0), capped at
/// [`MAX_DECIMALS`]. Trailing zeros count: they are the precision the
/// value was written with.
fn text_decimals(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let (mantissa, exponent) = match bytes.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&bytes[..at], saturating_exponent(&bytes[at + 1..])),
        None => (bytes, 0),
    };
    let fraction_digits = mantissa
        .iter()
        .position(|&b| b == b'.')
        .map_or(0, |dot| mantissa.len() - dot - 1);
    let fraction_digits = i64::try_from(fraction_digits).unwrap_or(i64::MAX);
    let decimals = fraction_digits.saturating_sub(exponent);
    u32::try_from(decimals.clamp(0, i64::from(MAX_DECIMALS))).unwrap_or(MAX_DECIMALS)
}

/// Parses an exponent's optional sign and digits, saturating rather than
/// failing, since "1e-99999999999999999999" is a valid (zero) float.
fn saturating_exponent(bytes: &[u8]) -> i64 {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    let magnitude = digits
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0_i64, |acc, &b| {
            acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
        });
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// The smallest `d <= MAX_DECIMALS` such that `value * 10^d` is an integer,
/// allowing for the rounding error of a float of the given `epsilon` (the
/// value's native type: an f32 0.1 widened to f64 is 0.10000000149).
fn value_decimals(value: f64, epsilon: f64) -> u32 {
    let mut scaled = value;
    for d in 0..MAX_DECIMALS {
        let tolerance = (scaled.abs() * 4.0 * epsilon).max(1e-9);
        if (scaled - scaled.round()).abs() <= tolerance {
            return d;
        }
        scaled *= 10.0;
    }
    MAX_DECIMALS
}

/// Calls `each` with every non-blank line's trimmed text and 1-based line
/// number, reusing one buffer for all lines.
fn for_each_line(
    reader: Box<dyn Read + '_>,
    input: &str,
    mut each: impl FnMut(&str, Location) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut reader = BufReader::with_capacity(BUF_CAPACITY, reader);
    let mut buf = Vec::with_capacity(128);
    let mut line: u64 = 0;
    loop {
        line += 1;
        let location = Location::Line(line);
        buf.clear();
        let n_read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| InputError::Read {
                input: input.to_owned(),
                location: Some(location),
                source,
            })?;
        if n_read == 0 {
            return Ok(());
        }
        let bytes = if line == 1 {
            buf.strip_prefix(UTF8_BOM).unwrap_or(&buf)
        } else {
            &buf
        };
        let text = std::str::from_utf8(bytes).map_err(|_| InputError::InvalidUtf8 {
            input: input.to_owned(),
            location,
        })?;
        let text = text.trim();
        if !text.is_empty() {
            each(text, location)?;
        }
    }
}

fn read_lines(reader: Box<dyn Read + '_>, input: String) -> Result<Samples, InputError> {
    let mut acc = Accumulator::new(input);
    let name = acc.input.clone();
    for_each_line(reader, &name, |text, location| {
        if text.starts_with('#') {
            return Ok(());
        }
        acc.push_text(text, location)
    })?;
    acc.finish()
}

fn read_csv(
    reader: Box<dyn Read + '_>,
    input: String,
    column: &str,
) -> Result<Samples, InputError> {
    let mut csv_reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Short records are reported as a missing field of the one record,
        // which names the problem better than csv's "unequal lengths".
        .flexible(true)
        .buffer_capacity(BUF_CAPACITY)
        .from_reader(reader);

    let headers = match csv_reader.byte_headers() {
        Ok(headers) => headers,
        Err(error) => return Err(csv_error(error, &input, Location::Line(1))),
    };
    if headers.is_empty() {
        return Err(InputError::Empty { input });
    }
    // Names and the selected field are trimmed here rather than by csv's
    // `Trim::All`, which would trim every field and double the parse time.
    let Some(index) = headers
        .iter()
        .position(|name| name.trim_ascii() == column.as_bytes())
    else {
        let available = headers
            .iter()
            .map(|name| String::from_utf8_lossy(name.trim_ascii()).into_owned())
            .collect();
        return Err(InputError::MissingColumn {
            input,
            column: column.to_owned(),
            available,
        });
    };

    let mut acc = Accumulator::new(input);
    let mut record = csv::ByteRecord::new();
    let mut n_records: u64 = 0;
    loop {
        n_records += 1;
        let next_line = csv_reader.position().line();
        let more = csv_reader.read_byte_record(&mut record).map_err(|error| {
            let location = Location::Record {
                record: n_records,
                line: error.position().map_or(next_line, csv::Position::line),
            };
            csv_error(error, &acc.input, location)
        })?;
        if !more {
            break;
        }
        let location = Location::Record {
            record: n_records,
            line: record.position().map_or(next_line, csv::Position::line),
        };
        let Some(field) = record.get(index).map(<[u8]>::trim_ascii) else {
            return Err(InputError::MissingField {
                input: acc.input,
                location,
                name: column.to_owned(),
            });
        };
        if field.is_empty() {
            return Err(InputError::NoValue {
                input: acc.input,
                location,
                name: column.to_owned(),
                kind: "empty",
            });
        }
        let Ok(text) = std::str::from_utf8(field) else {
            return Err(InputError::InvalidUtf8 {
                input: acc.input,
                location,
            });
        };
        acc.push_text(text, location)?;
    }
    acc.finish()
}

/// Keeps IO failures (such as truncated gzip) as read errors, so they read
/// the same whatever the format.
fn csv_error(error: csv::Error, input: &str, location: Location) -> InputError {
    if !error.is_io_error() {
        return InputError::Csv {
            input: input.to_owned(),
            location,
            source: error,
        };
    }
    let source = match error.into_kind() {
        csv::ErrorKind::Io(source) => source,
        // Unreachable: is_io_error() holds only for the Io kind, and csv
        // offers no way to rebuild the error from its kind.
        _ => io::Error::other("csv reader failed"),
    };
    InputError::Read {
        input: input.to_owned(),
        location: Some(location),
        source,
    }
}

fn read_json_lines(
    reader: Box<dyn Read + '_>,
    input: String,
    field: &str,
) -> Result<Samples, InputError> {
    let mut acc = Accumulator::new(input);
    let name = acc.input.clone();
    for_each_line(reader, &name, |text, location| {
        let seed = FieldOf { name: field };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let value = seed
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value))
            .map_err(|source| InputError::Json {
                input: acc.input.clone(),
                location,
                source,
            })?;
        match value {
            JsonValue::Absent => Err(InputError::MissingField {
                input: acc.input.clone(),
                location,
                name: field.to_owned(),
            }),
            JsonValue::Null => Err(InputError::NoValue {
                input: acc.input.clone(),
                location,
                name: field.to_owned(),
                kind: "null",
            }),
            JsonValue::Other(found) => Err(InputError::NotNumeric {
                input: acc.input.clone(),
                location,
                name: field.to_owned(),
                found,
            }),
            JsonValue::Integer(value) => acc.push_value(value, location, || value.to_string()),
            JsonValue::Float(value) => {
                acc.push_value(value, location, || value.to_string())?;
                acc.note_float_decimals(value, f64::EPSILON);
                Ok(())
            }
        }
    })?;
    acc.finish()
}

/// What one JSON line held under the requested field.
///
/// `serde_json` without `arbitrary_precision` does not keep a number's text,
/// so float decimals are derived from the value ("12.50" counts as 1).
#[derive(Debug)]
enum JsonValue {
    Absent,
    Null,
    Integer(f64),
    Float(f64),
    Other(&'static str),
}

/// Deserializes a JSON object, keeping only the named field, so that a
/// line costs no map or string allocations.
struct FieldOf<'f> {
    name: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldOf<'_> {
    type Value = JsonValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsonValue, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldOf<'_> {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        let mut found = JsonValue::Absent;
        while let Some(is_wanted) = map.next_key_seed(KeyIs(self.name))? {
            if is_wanted {
                found = map.next_value_seed(ValueKind)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares an object key with the wanted field name without allocating.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Classifies a JSON value: numbers are kept, anything else is named.
struct ValueKind;

impl<'de> DeserializeSeed<'de> for ValueKind {
    type Value = JsonValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsonValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueKind {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<JsonValue, E> {
        // Integers beyond 2^53 round, as they would in any f64 pipeline.
        Ok(JsonValue::Integer(value as f64))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Integer(value as f64))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<JsonValue, E> {
        Ok(JsonValue::Float(value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Other("a boolean"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::Other("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("an object"))
    }
}

/// Reads an Arrow IPC file (it starts with the `ARROW1` magic) or stream
/// (anything else).
///
/// The whole input is buffered because the file format needs to seek to its
/// footer, and gzip or stdin cannot seek; only the selected column is
/// decoded.
fn read_arrow(
    mut reader: Box<dyn Read + '_>,
    input: String,
    column: &str,
) -> Result<Samples, InputError> {
    let mut bytes = Vec::new();
    if let Err(source) = reader.read_to_end(&mut bytes) {
        return Err(InputError::Read {
            input,
            location: None,
            source,
        });
    }
    if bytes.is_empty() {
        return Err(InputError::Empty { input });
    }
    // A file-format input always starts with the magic; anything else can
    // only be a stream, so the choice needs no second attempt and the error
    // reported is the one from the format the data claims to be.
    let is_file = bytes.starts_with(ARROW_FILE_MAGIC);
    let framing = if is_file {
        check_file_framing(&bytes)
    } else {
        check_stream_framing(&bytes)
    };
    if let Err(source) = framing {
        return Err(InputError::Arrow { input, source });
    }
    // arrow-ipc's readers still panic on some malformed data that passes the
    // framing checks (unknown type codes in a schema, buffer counts that
    // disagree with it), and an input file must never crash the judge. The
    // closure only reads `bytes` and owns everything it builds, so no state
    // can be observed half-updated after an unwind. The panic hook still
    // prints arrow-ipc's message to stderr before the error is returned, and
    // this relies on the default `panic = "unwind"`.
    let name = input.clone();
    match std::panic::catch_unwind(|| decode_arrow(&bytes, is_file, input, column)) {
        Ok(result) => result,
        Err(_) => Err(InputError::Arrow {
            input: name,
            source: ArrowError::IpcError(
                "malformed data made the arrow ipc reader fail".to_owned(),
            ),
        }),
    }
}

fn decode_arrow(
    bytes: &[u8],
    is_file: bool,
    input: String,
    column: &str,
) -> Result<Samples, InputError> {
    let arrow_error = |source| InputError::Arrow {
        input: input.clone(),
        source,
    };
    if is_file {
        let probe = FileReader::try_new(Cursor::new(bytes), None).map_err(arrow_error)?;
        let (index, data_type) = select_column(&probe.schema(), &input, column)?;
        let batches =
            FileReader::try_new(Cursor::new(bytes), Some(vec![index])).map_err(arrow_error)?;
        collect_column(batches, input, column, &data_type)
    } else {
        let probe = StreamReader::try_new(Cursor::new(bytes), None).map_err(arrow_error)?;
        let (index, data_type) = select_column(&probe.schema(), &input, column)?;
        let batches =
            StreamReader::try_new(Cursor::new(bytes), Some(vec![index])).map_err(arrow_error)?;
        collect_column(batches, input, column, &data_type)
    }
}

fn ipc_error(message: &str) -> ArrowError {
    ArrowError::IpcError(message.to_owned())
}

/// Checks that the footer and every block it lists lie inside the file, and
/// that every buffer lies inside its block's body.
///
/// arrow-ipc's `FileReader` allocates whatever lengths a block claims and
/// slices buffers without bounds checks, so a flipped bit could otherwise
/// abort the process on allocation or panic on a slice.
fn check_file_framing(bytes: &[u8]) -> Result<(), ArrowError> {
    const TRAILER_LEN: usize = 10;
    let truncated = || ipc_error("arrow file is truncated: its footer is missing or cut short");
    let trailer_start = bytes.len().checked_sub(TRAILER_LEN).ok_or_else(truncated)?;
    let mut trailer = [0_u8; TRAILER_LEN];
    trailer.copy_from_slice(&bytes[trailer_start..]);
    let footer_len = arrow_ipc::reader::read_footer_length(trailer).map_err(|_| truncated())?;
    let footer_start = trailer_start
        .checked_sub(footer_len)
        .ok_or_else(truncated)?;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_start..trailer_start])
        .map_err(|error| ArrowError::IpcError(format!("invalid arrow file footer: {error}")))?;
    if footer.schema().is_none() {
        return Err(ipc_error("arrow file footer has no schema"));
    }
    let blocks = footer.dictionaries().into_iter().flatten();
    for block in blocks.chain(footer.recordBatches().into_iter().flatten()) {
        check_block(bytes, block)?;
    }
    Ok(())
}

fn check_block(bytes: &[u8], block: &arrow_ipc::Block) -> Result<(), ArrowError> {
    let bad_block = || ipc_error("arrow file block lies outside the file");
    let offset = usize::try_from(block.offset()).map_err(|_| bad_block())?;
    let meta_len = usize::try_from(block.metaDataLength()).map_err(|_| bad_block())?;
    let body_len = usize::try_from(block.bodyLength()).map_err(|_| bad_block())?;
    let body_start = offset.checked_add(meta_len).ok_or_else(bad_block)?;
    let body_end = body_start.checked_add(body_len).ok_or_else(bad_block)?;
    let meta = bytes.get(offset..body_start).ok_or_else(bad_block)?;
    if body_end > bytes.len() {
        return Err(bad_block());
    }
    // Mirrors arrow-ipc's parse_message: an optional continuation marker,
    // then a 4-byte length, then the flatbuffer.
    let flatbuffer = match meta.get(..4) {
        Some(prefix) if prefix == IPC_CONTINUATION => meta.get(8..),
        Some(_) => meta.get(4..),
        None => None,
    }
    .ok_or_else(bad_block)?;
    let message = arrow_ipc::root_as_message(flatbuffer)
        .map_err(|error| ArrowError::IpcError(format!("invalid arrow ipc message: {error}")))?;
    check_buffers(&message, body_len)
}

/// Walks the messages of an Arrow IPC stream, checking that each message and
/// its body lie inside the input and every buffer inside its body, for the
/// same reason as [`check_file_framing`].
fn check_stream_framing(bytes: &[u8]) -> Result<(), ArrowError> {
    let truncated = || ipc_error("arrow ipc stream is truncated or corrupt");
    let mut pos = 0_usize;
    while pos < bytes.len() {
        let mut prefix = bytes.get(pos..pos + 4).ok_or_else(truncated)?;
        pos += 4;
        if prefix == IPC_CONTINUATION {
            prefix = bytes.get(pos..pos + 4).ok_or_else(truncated)?;
            pos += 4;
        }
        let mut meta_len = [0_u8; 4];
        meta_len.copy_from_slice(prefix);
        let meta_len = i32::from_le_bytes(meta_len);
        if meta_len == 0 {
            // The end-of-stream marker; the reader ignores anything after it.
            return Ok(());
        }
        let meta_len = usize::try_from(meta_len).map_err(|_| truncated())?;
        let body_start = pos.checked_add(meta_len).ok_or_else(truncated)?;
        let meta = bytes.get(pos..body_start).ok_or_else(truncated)?;
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|error| ArrowError::IpcError(format!("invalid arrow ipc message: {error}")))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| truncated())?;
        let body_end = body_start.checked_add(body_len).ok_or_else(truncated)?;
        if body_end > bytes.len() {
            return Err(truncated());
        }
        check_buffers(&message, body_len)?;
        pos = body_end;
    }
    Ok(())
}

/// Checks that every buffer of a record or dictionary batch lies inside the
/// message body.
fn check_buffers(message: &arrow_ipc::Message<'_>, body_len: usize) -> Result<(), ArrowError> {
    let batch = match message.header_type() {
        arrow_ipc::MessageHeader::RecordBatch => message.header_as_record_batch(),
        arrow_ipc::MessageHeader::DictionaryBatch => message
            .header_as_dictionary_batch()
            .and_then(|dictionary| dictionary.data()),
        _ => None,
    };
    let buffers = batch.and_then(|batch| batch.buffers());
    for buffer in buffers.iter().flatten() {
        let start = usize::try_from(buffer.offset());
        let len = usize::try_from(buffer.length());
        let end = match (start, len) {
            (Ok(start), Ok(len)) => start.checked_add(len),
            _ => None,
        };
        if end.is_none_or(|end| end > body_len) {
            return Err(ipc_error("arrow ipc buffer lies outside its message body"));
        }
    }
    Ok(())
}

/// Finds the column's index and checks its type before any data is decoded.
fn select_column(
    schema: &Schema,
    input: &str,
    column: &str,
) -> Result<(usize, DataType), InputError> {
    let Some((index, field)) = schema
        .fields()
        .iter()
        .enumerate()
        .find(|(_, field)| field.name() == column)
    else {
        return Err(InputError::MissingColumn {
            input: input.to_owned(),
            column: column.to_owned(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        });
    };
    let data_type = field.data_type().clone();
    if !(data_type.is_integer() || data_type.is_floating()) {
        return Err(InputError::UnsupportedType {
            input: input.to_owned(),
            column: column.to_owned(),
            data_type: data_type.to_string(),
        });
    }
    Ok((index, data_type))
}

/// Appends the (single, projected) column of every batch.
fn collect_column(
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    input: String,
    column: &str,
    data_type: &DataType,
) -> Result<Samples, InputError> {
    let mut acc = Accumulator::new(input);
    let mut n_rows: u64 = 0;
    for batch in batches {
        let batch = batch.map_err(|source| InputError::Arrow {
            input: acc.input.clone(),
            source,
        })?;
        let Some(array) = batch.columns().first() else {
            continue;
        };
        let array = array.as_ref();
        // Precision loss above 2^53 is accepted for 64-bit integers: such
        // values are far beyond any latency the histogram could hold anyway.
        macro_rules! push {
            ($arrow_type:ty, $to_f64:expr, $epsilon:expr) => {
                push_column::<$arrow_type>(&mut acc, array, n_rows, column, $to_f64, $epsilon)
            };
        }
        let pushed = match data_type {
            DataType::Int8 => push!(Int8Type, f64::from, None),
            DataType::Int16 => push!(Int16Type, f64::from, None),
            DataType::Int32 => push!(Int32Type, f64::from, None),
            DataType::Int64 => push!(Int64Type, |v| v as f64, None),
            DataType::UInt8 => push!(UInt8Type, f64::from, None),
            DataType::UInt16 => push!(UInt16Type, f64::from, None),
            DataType::UInt32 => push!(UInt32Type, f64::from, None),
            DataType::UInt64 => push!(UInt64Type, |v| v as f64, None),
            DataType::Float16 => push!(Float16Type, |v| v.to_f64(), Some(F16_EPSILON)),
            DataType::Float32 => push!(Float32Type, f64::from, Some(F32_EPSILON)),
            DataType::Float64 => push!(Float64Type, |v| v, Some(f64::EPSILON)),
            other => Err(InputError::UnsupportedType {
                input: acc.input.clone(),
                column: column.to_owned(),
                data_type: other.to_string(),
            }),
        };
        pushed?;
        n_rows += u64::try_from(array.len()).unwrap_or(u64::MAX);
    }
    acc.finish()
}

/// Validates and appends one primitive array; `epsilon` is the native
/// float type's, or `None` for integers, which have no decimals.
fn push_column<T: ArrowPrimitiveType>(
    acc: &mut Accumulator,
    array: &dyn Array,
    first_row: u64,
    column: &str,
    to_f64: impl Fn(T::Native) -> f64,
    epsilon: Option<f64>,
) -> Result<(), InputError> {
    let Some(array) = array.as_primitive_opt::<T>() else {
        return Err(InputError::UnsupportedType {
            input: acc.input.clone(),
            column: column.to_owned(),
            data_type: array.data_type().to_string(),
        });
    };
    for (row, value) in (first_row + 1..).zip(array.iter()) {
        let location = Location::Row(row);
        let Some(value) = value else {
            return Err(InputError::NoValue {
                input: acc.input.clone(),
                location,
                name: column.to_owned(),
                kind: "null",
            });
        };
        let value = to_f64(value);
        acc.push_value(value, location, || value.to_string())?;
        if let Some(epsilon) = epsilon {
            acc.note_float_decimals(value, epsilon);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
