use super::*;
use crate::test_support::{gzip, TempDir};
use std::io;
use vigil_core::events::LineResult;

/// Every result of reading `content` (plain or gzipped) through
/// [`open_input`] on stdin.
fn read_all(content: &[u8]) -> Vec<Result<LineResult, ReadError>> {
    open_input(Path::new("-"), content)
        .unwrap()
        .events()
        .collect()
}

/// Opens a file as the replay does: directly, or read and unpacked ahead
/// on a thread of its own. Both must read the same.
type Opener = fn(&Path) -> Result<Input<'static>, ReadError>;

const OPENERS: [(&str, Opener); 2] = [
    ("direct", |path| open_input(path, io::empty())),
    ("prefetched", |path| {
        open_input_prefetched(path, io::empty())
    }),
];

#[test]
fn gzip_is_unpacked_from_files_and_stdin() {
    let event = |ts: u32| {
        format!("{{\"ts\": {ts}, \"service\": \"s\", \"version\": \"v\", \"latency_ms\": 1}}\n")
    };
    let plain: String = (0..1000).map(event).collect();
    // Two members, as `cat a.gz b.gz` makes.
    let mut packed = gzip(plain.as_bytes());
    packed.extend(gzip(event(1000).as_bytes()));

    let dir = TempDir::new();
    for ((name, content), (how, open)) in [
        ("a.jsonl", plain.as_bytes()),
        ("a.jsonl.gz", &packed),
        ("gz-without-suffix", &packed),
    ]
    .into_iter()
    .flat_map(|file| OPENERS.map(|opener| (file, opener)))
    {
        let path = dir.write(name, content);
        let input = open(&path).unwrap();
        assert_eq!(input.name(), path.display().to_string());
        let results: Vec<_> = input.events().collect::<Result<_, _>>().unwrap();
        let n_samples: usize = results
            .iter()
            .map(|r| match r {
                LineResult::Samples { samples, .. } => samples.len(),
                LineResult::Rejected { error, .. } => panic!("{error}"),
            })
            .sum();
        let expected = if name == "a.jsonl" { 2000 } else { 2002 };
        assert_eq!(n_samples, expected, "{name} {how}");
    }
    assert_eq!(read_all(&packed).len(), 1001);
    assert_eq!(
        open_input(Path::new("-"), &packed[..]).unwrap().name(),
        "<stdin>"
    );
}

#[test]
fn truncated_gzip_is_a_read_error_naming_the_file() {
    let content: String = (0..50_000)
        .map(|i| {
            format!(
                "{{\"ts\": {i}, \"service\": \"s\", \"version\": \"v\", \"latency_ms\": {i}.5}}\n"
            )
        })
        .collect();
    let packed = gzip(content.as_bytes());
    let dir = TempDir::new();
    for ((name, bytes), (how, open)) in [
        ("truncated.jsonl.gz", &packed[..packed.len() / 2]),
        ("corrupt-header.jsonl.gz", &b"\x1f\x8b\x08garbage"[..]),
        ("no-trailer.jsonl.gz", &packed[..packed.len() - 4]),
    ]
    .into_iter()
    .flat_map(|file| OPENERS.map(|opener| (file, opener)))
    {
        let name = format!("{how}-{name}");
        let path = dir.write(&name, bytes);
        let results: Vec<_> = open(&path).unwrap().events().collect();
        let (last, before) = results.split_last().unwrap();
        assert!(
            before
                .iter()
                .all(|r| matches!(r, Ok(LineResult::Samples { .. }))),
            "{name}"
        );
        let Err(error) = last else {
            panic!("{name}: no read error, last result {last:?}");
        };
        assert!(matches!(error, ReadError::Read { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot read {} at line ", path.display())),
            "{message}"
        );
        assert!(std::error::Error::source(error).is_some());
    }
}

#[test]
fn missing_file_is_an_open_error() {
    let dir = TempDir::new();
    let path = dir.path.join("nope.jsonl");
    for (_, open) in OPENERS {
        let error = open(&path).unwrap_err();
        assert_eq!(error.to_string(), format!("cannot open {}", path.display()));
        assert!(std::error::Error::source(&error).is_some());
    }
}

/// A gzipped stream cut anywhere ends in samples, rejections or one read
/// error, never a panic.
#[test]
fn cut_gzip_never_panics() {
    let content: String = (0..5000)
        .map(|i| {
            format!("{{\"ts\": {i}, \"service\": \"s\", \"version\": \"v\", \"latency_ms\": 1}}\n")
        })
        .collect();
    let content = content.into_bytes();
    let packed = gzip(&content);
    for cut in (0..packed.len()).step_by(packed.len() / 60 + 1) {
        let results: Vec<_> = open_input(Path::new("-"), &packed[..cut])
            .unwrap()
            .events()
            .collect();
        assert!(results.iter().rev().skip(1).all(Result::is_ok));
    }
}
