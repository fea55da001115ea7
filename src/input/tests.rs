use std::sync::Arc;

use arrow_array::types::Float16Type;
use arrow_array::{
    ArrayRef, Float16Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    Int8Array, StringArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_ipc::writer::{FileWriter, StreamWriter};

use super::*;
use crate::test_support::{gzip, TempDir};

fn csv(column: &str) -> Format {
    Format::Csv {
        column: column.to_owned(),
    }
}

fn json(field: &str) -> Format {
    Format::JsonLines {
        field: field.to_owned(),
    }
}

fn arrow(column: &str) -> Format {
    Format::Arrow {
        column: column.to_owned(),
    }
}

/// Writes `content` to a fresh file called `name` and reads it; the
/// returned path is only for building expected messages.
fn read_file(name: &str, content: &[u8], format: Format) -> (String, Result<Samples, InputError>) {
    let dir = TempDir::new();
    let path = dir.write(name, content);
    let spec = InputSpec { path, format };
    let result = read_samples(&spec, &mut io::empty());
    (spec.path.display().to_string(), result)
}

fn read_ok(name: &str, content: &[u8], format: Format) -> Samples {
    match read_file(name, content, format) {
        (_, Ok(samples)) => samples,
        (_, Err(error)) => panic!("unexpected error: {error}"),
    }
}

/// Reads `content` as a file and returns the error message with the
/// file's path replaced by `{path}`.
fn read_err(name: &str, content: &[u8], format: Format) -> String {
    match read_file(name, content, format) {
        (_, Ok(samples)) => panic!("unexpected success: {samples:?}"),
        (path, Err(error)) => error.to_string().replace(&path, "{path}"),
    }
}

fn read_stdin(content: &[u8], format: Format) -> Result<Samples, InputError> {
    let spec = InputSpec {
        path: PathBuf::from("-"),
        format,
    };
    read_samples(&spec, &mut Cursor::new(content))
}

/// The full error chain, as `anyhow`'s `{:#}` would print it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

// ---- plain lines ----

#[test]
fn lines_skip_blanks_and_comments_and_trim() {
    let samples = read_ok(
        "b.txt",
        b"# latencies\n 12.5 \n\n120\r\n  # indented comment\n\t3e-2\n7",
        Format::Lines,
    );
    assert_eq!(samples.values, vec![12.5, 120.0, 0.03, 7.0]);
    assert_eq!(samples.max_decimals, 2);
    assert!(samples.source.ends_with("b.txt"));
}

#[test]
fn lines_decimals_follow_the_text() {
    let check = |content: &[u8], expected: u32| {
        assert_eq!(
            read_ok("d.txt", content, Format::Lines).max_decimals,
            expected
        );
    };
    check(b"120\n", 0);
    check(b"12.50\n", 2);
    check(b"3e-2\n", 2);
    check(b"1.5e3\n120.1\n", 1);
    check(b"0.000000001\n", MAX_DECIMALS);
}

#[test]
fn text_decimals_table() {
    for (text, expected) in [
        ("120", 0),
        ("12.50", 2),
        ("12.", 0),
        (".5", 1),
        ("3e-2", 2),
        ("3E-2", 2),
        ("1.25e1", 1),
        ("1.5e3", 0),
        ("1.5e+3", 0),
        ("+2.25", 2),
        ("1e-7", MAX_DECIMALS),
        ("0e-99999999999999999999999", MAX_DECIMALS),
        ("0e99999999999999999999999", 0),
    ] {
        assert_eq!(text_decimals(text), expected, "{text}");
    }
}

#[test]
fn value_decimals_table() {
    let f32_value = |v: f32| f64::from(v);
    for (value, epsilon, expected) in [
        (120.0, f64::EPSILON, 0),
        (120.3, f64::EPSILON, 1),
        (0.125, f64::EPSILON, 3),
        (1e-7, f64::EPSILON, MAX_DECIMALS),
        (1.0 / 3.0, f64::EPSILON, MAX_DECIMALS),
        (1e12 + 0.5, f64::EPSILON, 1),
        (f32_value(0.1), F32_EPSILON, 1),
        (f32_value(0.1), f64::EPSILON, MAX_DECIMALS),
    ] {
        assert_eq!(value_decimals(value, epsilon), expected, "{value}");
    }
}

#[test]
fn lines_strip_a_utf8_bom_and_normalise_negative_zero() {
    let samples = read_ok("bom.txt", b"\xEF\xBB\xBF5\n-0\n", Format::Lines);
    assert_eq!(samples.values, vec![5.0, 0.0]);
    assert!(samples.values[1].is_sign_positive());
}

#[test]
fn lines_from_gzip_file_including_multiple_members() {
    let mut content = gzip(b"1.5\n2.5\n");
    content.extend(gzip(b"3.5\n"));
    let samples = read_ok("b.txt.gz", &content, Format::Lines);
    assert_eq!(samples.values, vec![1.5, 2.5, 3.5]);
    assert_eq!(samples.max_decimals, 1);
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let samples = read_ok("b.txt", &gzip(b"4\n"), Format::Lines);
    assert_eq!(samples.values, vec![4.0]);
    let samples = read_ok("plain.txt.gz", b"4\n", Format::Lines);
    assert_eq!(samples.values, vec![4.0]);
}

#[test]
fn stdin_plain_gzip_and_tiny() {
    let samples = read_stdin(b"1\n2\n", Format::Lines).unwrap();
    assert_eq!(samples.source, "<stdin>");
    assert_eq!(samples.values, vec![1.0, 2.0]);

    let samples = read_stdin(&gzip(b"1.25\n"), Format::Lines).unwrap();
    assert_eq!(samples.values, vec![1.25]);
    assert_eq!(samples.max_decimals, 2);

    // A one-byte input is shorter than the gzip magic.
    assert_eq!(read_stdin(b"7", Format::Lines).unwrap().values, vec![7.0]);
    // A lone 0x1f byte is not gzip, and not a number either.
    let error = read_stdin(b"\x1f", Format::Lines).unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"\\u{1f}\" is not a number at line 1 of <stdin>"
    );
}

#[test]
fn stdin_reads_one_byte_at_a_time_sources() {
    /// A reader that hands out one byte per call, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
    let compressed = gzip(b"8\n9\n");
    let spec = InputSpec {
        path: PathBuf::from("-"),
        format: Format::Lines,
    };
    let samples = read_samples(&spec, &mut Trickle(&compressed)).unwrap();
    assert_eq!(samples.values, vec![8.0, 9.0]);
}

#[test]
fn stdin_is_only_read_for_dash() {
    let dir = TempDir::new();
    let path = dir.write("b.txt", b"1\n");
    let spec = InputSpec {
        path,
        format: Format::Lines,
    };
    let mut stdin = Cursor::new(b"2\n".to_vec());
    assert_eq!(read_samples(&spec, &mut stdin).unwrap().values, vec![1.0]);
    assert_eq!(stdin.position(), 0);
}

// ---- validation errors ----

#[test]
fn lines_errors_name_the_file_and_line() {
    for (content, expected) in [
        (&b"1\n2\nabc\n"[..], "\"abc\" is not a number at line 3 of {path}"),
        (b"1\n2 3\n", "\"2 3\" is not a number at line 2 of {path}"),
        (b"1\nNaN\n", "NaN is not a finite number at line 2 of {path}"),
        (b"inf\n", "inf is not a finite number at line 1 of {path}"),
        (b"-infinity\n", "-infinity is not a finite number at line 1 of {path}"),
        (b"1e999\n", "1e999 is not a finite number at line 1 of {path}"),
        (
            b"1\n2\n# c\n\n-3\n",
            "negative value -3 at line 5 of {path}: latencies and other compared metrics must be >= 0",
        ),
        (b"", "no samples in {path}"),
        (b"# only\n\n  \n", "no samples in {path}"),
        (b"1\n\xff\xfe\n", "invalid utf-8 at line 2 of {path}"),
    ] {
        assert_eq!(read_err("b.txt", content, Format::Lines), expected);
    }
}

#[test]
fn long_garbage_is_quoted_briefly() {
    let line = "x".repeat(10_000);
    let message = read_err("b.txt", line.as_bytes(), Format::Lines);
    assert_eq!(
        message,
        format!(
            "\"{}...\" is not a number at line 1 of {{path}}",
            "x".repeat(40)
        )
    );
}

#[test]
fn truncated_gzip_is_a_read_error_naming_the_file() {
    let content: String = (0..50_000).map(|i| format!("{i}.5\n")).collect();
    let compressed = gzip(content.as_bytes());
    let truncated = &compressed[..compressed.len() / 2];
    let (path, result) = read_file("b.txt.gz", truncated, Format::Lines);
    let error = result.unwrap_err();
    assert!(matches!(error, InputError::Read { .. }), "{error:?}");
    let message = chain(&error);
    assert!(
        message.starts_with(&format!("cannot read {path} at line ")),
        "{message}"
    );

    // A corrupt header is caught the same way.
    let (_, result) = read_file("c.txt.gz", b"\x1f\x8b\x08garbage", Format::Lines);
    assert!(matches!(result, Err(InputError::Read { .. })), "{result:?}");
}

#[test]
fn missing_file_is_an_open_error() {
    let dir = TempDir::new();
    let path = dir.path.join("nope.txt");
    let spec = InputSpec {
        path: path.clone(),
        format: Format::Lines,
    };
    let error = read_samples(&spec, &mut io::empty()).unwrap_err();
    assert_eq!(error.to_string(), format!("cannot open {}", path.display()));
    assert!(std::error::Error::source(&error).is_some());
}

// ---- csv ----

const REQUESTS: &[u8] = b"ts,version,latency_ms\n\
2024-05-01T10:00:00Z,v2,120.5\n\
2024-05-01T10:00:01Z, v2 , 98.25 \n\
\"2024-05-01T10:00:02Z\",\"v2\",\"101\"\n";

#[test]
fn csv_reads_the_named_column() {
    let samples = read_ok("r.csv", REQUESTS, csv("latency_ms"));
    assert_eq!(samples.values, vec![120.5, 98.25, 101.0]);
    assert_eq!(samples.max_decimals, 2);

    let samples = read_ok("r.csv.gz", &gzip(REQUESTS), csv("latency_ms"));
    assert_eq!(samples.values.len(), 3);

    let samples = read_stdin(REQUESTS, csv("latency_ms")).unwrap();
    assert_eq!(samples.source, "<stdin>");
    assert_eq!(samples.values.len(), 3);
}

#[test]
fn csv_errors_name_the_record_and_line() {
    for (content, expected) in [
        (
            &b"a,b\n1,2\n"[..],
            "no column \"latency_ms\" in {path} (available columns: \"a\", \"b\")",
        ),
        (b"", "no samples in {path}"),
        (b"latency_ms\n", "no samples in {path}"),
        (
            b"v,latency_ms\nx,1\ny,fast\n",
            "\"fast\" is not a number at record 2 (line 3) of {path}",
        ),
        (
            b"v,latency_ms\n\"multi\nline\",1\ny,-2.5\n",
            "negative value -2.5 at record 2 (line 4) of {path}: latencies and other compared metrics must be >= 0",
        ),
        (b"v,latency_ms\nx,\n", "empty \"latency_ms\" value at record 1 (line 2) of {path}"),
        (b"v,latency_ms\nx\n", "record 1 (line 2) of {path} has no \"latency_ms\" field"),
        (b"v,latency_ms\nx,NaN\n", "NaN is not a finite number at record 1 (line 2) of {path}"),
        (b"v,latency_ms\nx,1\ny,\xff\n", "invalid utf-8 at record 2 (line 3) of {path}"),
    ] {
        assert_eq!(read_err("r.csv", content, csv("latency_ms")), expected);
    }
}

#[test]
fn csv_ignores_invalid_utf8_outside_the_column() {
    let samples = read_ok("r.csv", b"v,latency_ms\n\xff\xfe,3\n", csv("latency_ms"));
    assert_eq!(samples.values, vec![3.0]);
}

#[test]
fn csv_truncated_gzip_is_a_read_error() {
    let content: String = std::iter::once("v,latency_ms\n".to_owned())
        .chain((0..50_000).map(|i| format!("v2,{i}\n")))
        .collect();
    let compressed = gzip(content.as_bytes());
    let (path, result) = read_file(
        "r.csv.gz",
        &compressed[..compressed.len() / 2],
        csv("latency_ms"),
    );
    let error = result.unwrap_err();
    assert!(matches!(error, InputError::Read { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&format!("cannot read {path} at record ")));
}

// ---- json lines ----

#[test]
fn json_lines_read_the_named_field() {
    let content = b"{\"latency_ms\": 120.5, \"route\": \"/a\"}\n\
\n\
{\"meta\": {\"latency_ms\": \"nested\"}, \"latency_ms\": 98}\n\
{\"lat\\u0065ncy_ms\": 3.25, \"tags\": [1, {\"x\": null}]}\n";
    let samples = read_ok("c.jsonl", content, json("latency_ms"));
    assert_eq!(samples.values, vec![120.5, 98.0, 3.25]);
    assert_eq!(samples.max_decimals, 2);

    let samples = read_ok("c.jsonl.gz", &gzip(content), json("latency_ms"));
    assert_eq!(samples.values.len(), 3);

    let samples = read_stdin(content, json("latency_ms")).unwrap();
    assert_eq!(samples.values.len(), 3);
}

#[test]
fn json_lines_errors_name_the_line() {
    for (content, expected) in [
        (
            &b"{\"latency_ms\": 1}\n{\"p99\": 2}\n"[..],
            "line 2 of {path} has no \"latency_ms\" field",
        ),
        (
            b"{\"latency_ms\": \"12\"}\n",
            "\"latency_ms\" is a string, not a number, at line 1 of {path}",
        ),
        (b"{\"latency_ms\": true}\n", "\"latency_ms\" is a boolean, not a number, at line 1 of {path}"),
        (b"{\"latency_ms\": [1]}\n", "\"latency_ms\" is an array, not a number, at line 1 of {path}"),
        (b"{\"latency_ms\": {}}\n", "\"latency_ms\" is an object, not a number, at line 1 of {path}"),
        (b"\n{\"latency_ms\": null}\n", "null \"latency_ms\" value at line 2 of {path}"),
        (
            b"{\"latency_ms\": -3}\n",
            "negative value -3 at line 1 of {path}: latencies and other compared metrics must be >= 0",
        ),
        (
            b"{\"latency_ms\": -0.5}\n",
            "negative value -0.5 at line 1 of {path}: latencies and other compared metrics must be >= 0",
        ),
        (b"{\"latency_ms\": 1}\n{\"latency_ms\": 2\n", "cannot parse line 2 of {path} as a json object"),
        (b"[1, 2]\n", "cannot parse line 1 of {path} as a json object"),
        (b"5\n", "cannot parse line 1 of {path} as a json object"),
        (b"{\"latency_ms\": 1} {}\n", "cannot parse line 1 of {path} as a json object"),
        (b"{\"latency_ms\": 1e400}\n", "cannot parse line 1 of {path} as a json object"),
        (b"{\"latency_ms\": 1}\n\xff\n", "invalid utf-8 at line 2 of {path}"),
        (b"\n\n", "no samples in {path}"),
    ] {
        assert_eq!(read_err("c.jsonl", content, json("latency_ms")), expected);
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let mut line = "{\"x\": ".to_owned() + &"[".repeat(100_000);
    line.push('\n');
    let message = read_err("c.jsonl", line.as_bytes(), json("latency_ms"));
    assert_eq!(message, "cannot parse line 1 of {path} as a json object");
}

#[test]
fn json_parse_errors_keep_serde_json_as_the_source() {
    let (_, result) = read_file("c.jsonl", b"{\"latency_ms\": }\n", json("latency_ms"));
    let error = result.unwrap_err();
    let source = std::error::Error::source(&error).unwrap();
    assert!(source.is::<serde_json::Error>(), "{error:?}");
}

// ---- arrow ----

/// A batch whose columns are all nullable, so batches with and without
/// nulls share one schema.
fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter_with_nullable(
        columns.into_iter().map(|(name, array)| (name, array, true)),
    )
    .unwrap()
}

fn arrow_file(batches: &[RecordBatch]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, &batches[0].schema()).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    drop(writer);
    bytes
}

fn arrow_stream(batches: &[RecordBatch]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batches[0].schema()).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    drop(writer);
    bytes
}

type F16 = <Float16Type as ArrowPrimitiveType>::Native;

fn every_numeric_type() -> RecordBatch {
    batch(vec![
        ("i8", Arc::new(Int8Array::from(vec![1, 2])) as ArrayRef),
        ("i16", Arc::new(Int16Array::from(vec![1, 2]))),
        ("i32", Arc::new(Int32Array::from(vec![1, 2]))),
        ("i64", Arc::new(Int64Array::from(vec![1, 2]))),
        ("u8", Arc::new(UInt8Array::from(vec![1, 2]))),
        ("u16", Arc::new(UInt16Array::from(vec![1, 2]))),
        ("u32", Arc::new(UInt32Array::from(vec![1, 2]))),
        ("u64", Arc::new(UInt64Array::from(vec![1, 2]))),
        (
            "f16",
            Arc::new(Float16Array::from(vec![
                F16::from_f32(1.0),
                F16::from_f32(2.5),
            ])),
        ),
        ("f32", Arc::new(Float32Array::from(vec![0.1, 2.0]))),
        ("f64", Arc::new(Float64Array::from(vec![120.25, 2.0]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
    ])
}

#[test]
fn arrow_reads_every_integer_and_float_type() {
    let content = arrow_file(&[every_numeric_type()]);
    for column in ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"] {
        let samples = read_ok("a.arrow", &content, arrow(column));
        assert_eq!(samples.values, vec![1.0, 2.0], "{column}");
        assert_eq!(samples.max_decimals, 0, "{column}");
    }
    for (column, first, decimals) in [
        ("f16", 1.0, 1),
        ("f32", f64::from(0.1_f32), 1),
        ("f64", 120.25, 2),
    ] {
        let samples = read_ok("a.arrow", &content, arrow(column));
        assert_eq!(samples.values[0], first, "{column}");
        assert_eq!(samples.max_decimals, decimals, "{column}");
    }
}

#[test]
fn arrow_stream_gzip_and_stdin() {
    let batches = [
        batch(vec![(
            "v",
            Arc::new(Float64Array::from(vec![1.5, 2.0])) as ArrayRef,
        )]),
        batch(vec![(
            "v",
            Arc::new(Float64Array::from(vec![3.0])) as ArrayRef,
        )]),
    ];
    let expected = vec![1.5, 2.0, 3.0];
    let stream = arrow_stream(&batches);
    let file = arrow_file(&batches);
    assert_eq!(read_ok("s.arrow", &stream, arrow("v")).values, expected);
    assert_eq!(
        read_ok("a.ipc.gz", &gzip(&file), arrow("v")).values,
        expected
    );
    assert_eq!(read_stdin(&file, arrow("v")).unwrap().values, expected);
    assert_eq!(
        read_stdin(&gzip(&stream), arrow("v")).unwrap().values,
        expected
    );
}

#[test]
fn arrow_errors_name_the_row_across_batches() {
    let with_null = [
        batch(vec![(
            "v",
            Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef,
        )]),
        batch(vec![(
            "v",
            Arc::new(Int32Array::from(vec![Some(4), None])) as ArrayRef,
        )]),
    ];
    assert_eq!(
        read_err("a.arrow", &arrow_file(&with_null), arrow("v")),
        "null \"v\" value at row 5 of {path}"
    );
    assert_eq!(
        read_err("a.arrow", &arrow_stream(&with_null), arrow("v")),
        "null \"v\" value at row 5 of {path}"
    );

    let negative = [batch(vec![(
        "v",
        Arc::new(Int64Array::from(vec![1, -3])) as ArrayRef,
    )])];
    assert_eq!(
        read_err("a.arrow", &arrow_file(&negative), arrow("v")),
        "negative value -3 at row 2 of {path}: latencies and other compared metrics must be >= 0"
    );

    let nan = [batch(vec![(
        "v",
        Arc::new(Float32Array::from(vec![f32::NAN])) as ArrayRef,
    )])];
    assert_eq!(
        read_err("a.arrow", &arrow_file(&nan), arrow("v")),
        "NaN is not a finite number at row 1 of {path}"
    );

    let content = arrow_file(&[every_numeric_type()]);
    assert_eq!(
        read_err("a.arrow", &content, arrow("latency")),
        "no column \"latency\" in {path} (available columns: \"i8\", \"i16\", \"i32\", \"i64\", \
         \"u8\", \"u16\", \"u32\", \"u64\", \"f16\", \"f32\", \"f64\", \"name\")"
    );
    assert_eq!(
        read_err("a.arrow", &content, arrow("name")),
        "column \"name\" of {path} has type Utf8: expected an integer or floating-point column"
    );

    let empty = [batch(vec![(
        "v",
        Arc::new(Int32Array::from(Vec::<i32>::new())) as ArrayRef,
    )])];
    assert_eq!(
        read_err("a.arrow", &arrow_file(&empty), arrow("v")),
        "no samples in {path}"
    );
    assert_eq!(read_err("a.arrow", b"", arrow("v")), "no samples in {path}");
}

#[test]
fn corrupt_arrow_is_an_error() {
    let message = read_err("a.arrow", b"definitely not arrow", arrow("v"));
    assert_eq!(message, "cannot read arrow ipc data from {path}");

    let content = arrow_file(&[every_numeric_type()]);
    let (_, result) = read_file("a.arrow", &content[..content.len() / 2], arrow("f64"));
    assert!(
        matches!(result, Err(InputError::Arrow { .. })),
        "{result:?}"
    );

    let stream = arrow_stream(&[every_numeric_type()]);
    let (_, result) = read_file("s.arrow", &stream[..stream.len() - 20], arrow("f64"));
    assert!(result.is_err(), "{result:?}");
}

// ---- robustness ----

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Flips bytes, truncates and splices valid inputs of every format; the
/// readers must answer each with samples or an error, never a panic.
#[test]
fn mangled_inputs_never_panic() {
    let valid: Vec<(Vec<u8>, Format)> = vec![
        (b"1.5\n2\n# c\n3e-2\n".to_vec(), Format::Lines),
        (REQUESTS.to_vec(), csv("latency_ms")),
        (
            b"{\"latency_ms\": 1.5, \"x\": [1, {}]}\n".to_vec(),
            json("latency_ms"),
        ),
        (arrow_file(&[every_numeric_type()]), arrow("f64")),
        (arrow_stream(&[every_numeric_type()]), arrow("i32")),
    ];
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for (content, format) in &valid {
        for compress in [false, true] {
            let content = if compress {
                gzip(content)
            } else {
                content.clone()
            };
            for _ in 0..300 {
                let mut mangled = content.clone();
                match noise.below(3) {
                    0 => mangled.truncate(noise.below(content.len() + 1)),
                    1 => {
                        for _ in 0..=noise.below(4) {
                            let at = noise.below(mangled.len());
                            mangled[at] = noise.next() as u8;
                        }
                    }
                    _ => {
                        let at = noise.below(mangled.len());
                        let n_junk = noise.below(16);
                        let junk: Vec<u8> = (0..n_junk).map(|_| noise.next() as u8).collect();
                        mangled.splice(at..at, junk);
                    }
                }
                let _ = read_stdin(&mangled, format.clone());
            }
        }
    }
}

// ---- format choice ----

#[test]
fn format_choice_by_flags_and_extension() {
    let choose = |path: &str, column, field| format_for(Path::new(path), column, field);
    assert_eq!(choose("b.txt", None, None).unwrap(), Format::Lines);
    assert_eq!(choose("b.txt.gz", None, None).unwrap(), Format::Lines);
    assert_eq!(choose("-", None, None).unwrap(), Format::Lines);
    assert_eq!(choose("latencies", None, None).unwrap(), Format::Lines);
    assert_eq!(choose("a.arrow", Some("v"), None).unwrap(), arrow("v"));
    assert_eq!(choose("dir/A.IPC.GZ", Some("v"), None).unwrap(), arrow("v"));
    assert_eq!(choose("a.feather", Some("v"), None).unwrap(), arrow("v"));
    assert_eq!(choose("r.csv", Some("v"), None).unwrap(), csv("v"));
    assert_eq!(choose("r.tsv.gz", Some("v"), None).unwrap(), csv("v"));
    assert_eq!(choose("-", Some("v"), None).unwrap(), csv("v"));
    assert_eq!(choose("c.jsonl", None, Some("f")).unwrap(), json("f"));
    assert_eq!(choose("-", None, Some("f")).unwrap(), json("f"));
    assert_eq!(choose("c.log", None, Some("f")).unwrap(), json("f"));

    let message = |path: &str, column, field| choose(path, column, field).unwrap_err().to_string();
    assert_eq!(
        message("a.arrow", None, None),
        "a.arrow looks like arrow ipc input: pass --column NAME to select the values to compare"
    );
    assert_eq!(
        message("r.csv.gz", None, None),
        "r.csv.gz looks like csv input: pass --column NAME to select the values to compare"
    );
    assert_eq!(
        message("c.ndjson", None, None),
        "c.ndjson looks like json lines input: pass --field NAME to select the values to compare"
    );
    assert_eq!(
        message("a.arrow", None, Some("f")),
        "a.arrow is an arrow ipc file: select the column with --column, not --field"
    );
    assert!(matches!(
        choose("r.csv", Some("v"), Some("f")),
        Err(InputError::ConflictingFlags)
    ));
}
