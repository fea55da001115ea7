use super::*;

/// Every result of reading `content` through an [`EventReader`].
fn read_all(content: &[u8]) -> Vec<Result<LineResult, ReadError>> {
    EventReader::new(content, "<stdin>").collect()
}

/// The reader's results as `line: samples` / `line: error` strings, for
/// compact assertions.
fn summarize(content: &[u8]) -> Vec<String> {
    read_all(content)
        .into_iter()
        .map(|result| match result {
            Ok(LineResult::Samples {
                line,
                n_events,
                samples,
            }) => format!("{line}: {n_events} events, {} samples", samples.len()),
            Ok(LineResult::Rejected { line, error }) => format!("{line}: {error}"),
            Err(error) => format!("read error: {error}"),
        })
        .collect()
}

fn sample(ts: f64, version: &str, metric: &str, labels: &[(&str, &str)], o: Observation) -> Sample {
    Sample {
        ts,
        service: ServiceName::new("payment").unwrap(),
        version: Version::new(version).unwrap(),
        metric: MetricName::new(metric).unwrap(),
        labels: Labels::from_pairs(labels.iter().copied()),
        observation: o,
    }
}

/// Checks that `line` is rejected with exactly `message`, both by
/// [`parse_event`] and through the reader, which goes on to the next line
/// (keeping the valid events of an array).
fn check_rejected(line: &str, message: &str) {
    match parse_event(line) {
        Err(error) => assert_eq!(error.to_string(), message, "{line}"),
        Ok(samples) => panic!("{line} was accepted: {samples:?}"),
    }
    let content =
        format!("{line}\n{{\"ts\":1,\"service\":\"s\",\"version\":\"v\",\"error\":false}}\n");
    let mut results = summarize(content.as_bytes());
    if line.starts_with('[') && results[0].starts_with("1: 1 events") {
        results.remove(0);
    }
    assert_eq!(
        results,
        [format!("1: {message}"), "2: 1 events, 1 samples".to_owned()],
        "{line}"
    );
}

#[test]
fn request_event_gives_latency_and_error_rate() {
    let samples = parse_event(
        r#"{"ts": 1763900000.25, "service": "payment", "version": "v8", "latency_ms": 84.2, "error": false, "labels": {"endpoint": "/charge"}}"#,
    )
    .unwrap();
    let labels = [("endpoint", "/charge")];
    assert_eq!(
        samples,
        [
            sample(
                1763900000.25,
                "v8",
                "latency",
                &labels,
                Observation::Value(84.2)
            ),
            sample(
                1763900000.25,
                "v8",
                "error_rate",
                &labels,
                Observation::Outcome { error: false }
            ),
        ]
    );
}

#[test]
fn request_fields_are_optional_but_one_is_needed() {
    let outcomes = |line: &str| -> Vec<Observation> {
        parse_event(line)
            .unwrap()
            .into_iter()
            .map(|s| s.observation)
            .collect()
    };
    let base = r#""ts": 1, "service": "payment", "version": "v7""#;
    let error = |error| Observation::Outcome { error };
    assert_eq!(
        outcomes(&format!("{{{base}, \"error\": true}}")),
        [error(true)]
    );
    assert_eq!(
        outcomes(&format!("{{{base}, \"latency_ms\": 3}}")),
        [Observation::Value(3.0), error(false)]
    );
    assert_eq!(
        outcomes(&format!("{{{base}, \"status\": 503}}")),
        [error(true)]
    );
    assert_eq!(
        outcomes(&format!("{{{base}, \"status\": 404}}")),
        [error(false)]
    );
    // `error` wins over `status`; `null` is absent.
    assert_eq!(
        outcomes(&format!("{{{base}, \"status\": 503, \"error\": false}}")),
        [error(false)]
    );
    assert_eq!(
        outcomes(&format!(
            "{{{base}, \"latency_ms\": null, \"error\": null, \"status\": 500}}"
        )),
        [error(true)]
    );
    // Unknown fields are ignored, escaped strings decoded.
    let samples = parse_event(
        r#"{"ts": 1, "service": "pay\u006dent", "version": "v7", "error": true, "trace": {"id": [1, 2]}}"#,
    )
    .unwrap();
    assert_eq!(samples[0].service.as_str(), "payment");
}

#[test]
fn metric_samples_give_one_sample() {
    let samples = parse_event(
        r#"{"ts": 5, "service": "payment", "version": "v7", "metric": "cpu_seconds", "value": 0.12, "labels": {"pod": "a"}}"#,
    )
    .unwrap();
    assert_eq!(
        samples,
        [sample(
            5.0,
            "v7",
            "cpu_seconds",
            &[("pod", "a")],
            Observation::Value(0.12)
        )]
    );
    let samples = parse_event(
        r#"{"ts": 5, "service": "payment", "version": "v7", "metric": "error_rate", "requests": 100, "errors": 3.0}"#,
    )
    .unwrap();
    assert_eq!(
        samples,
        [sample(
            5.0,
            "v7",
            "error_rate",
            &[],
            Observation::Counts {
                requests: 100,
                errors: 3
            }
        )]
    );
}

#[test]
fn timestamps_are_epoch_seconds_or_rfc3339() {
    let ts = |ts: &str| -> Result<f64, String> {
        parse_event(&format!(
            r#"{{"ts": {ts}, "service": "s", "version": "v", "error": true}}"#
        ))
        .map(|samples| samples[0].ts)
        .map_err(|error| error.to_string())
    };
    let t0 = 1_795_514_400.0; // 2026-11-24T10:00:00Z
    assert_eq!(ts("1763900000"), Ok(1_763_900_000.0));
    assert_eq!(ts("1763900000.25"), Ok(1_763_900_000.25));
    assert_eq!(ts("0"), Ok(0.0));
    assert_eq!(ts(r#""2026-11-24T10:00:00Z""#), Ok(t0));
    assert_eq!(ts(r#""2026-11-24T10:00:00.25Z""#), Ok(t0 + 0.25));
    assert_eq!(ts(r#""2026-11-24 10:00:00.25z""#), Ok(t0 + 0.25));
    assert_eq!(ts(r#""2026-11-24T10:00:00+00:00""#), Ok(t0));
    // Offsets are applied, with or without fractional seconds (humantime
    // alone ignores them after a fraction).
    assert_eq!(ts(r#""2026-11-24T12:00:00+02:00""#), Ok(t0));
    assert_eq!(ts(r#""2026-11-24T12:00:00.25+02:00""#), Ok(t0 + 0.25));
    assert_eq!(ts(r#""2026-11-24T04:30:00-05:30""#), Ok(t0));
    assert_eq!(
        ts(r#""2028-02-29T00:00:00.000000001Z""#),
        Ok(1_835_395_200.000_000_001)
    );

    let shape = "expected yyyy-mm-ddThh:mm:ss[.frac] followed by Z or ±hh:mm";
    for (input, reason) in [
        (
            r#""2026-11-24T10:00:00""#,
            "no time zone: expected Z or ±hh:mm at the end",
        ),
        (
            r#""2026-11-24T10:00:00.25+02:0x""#,
            "no time zone: expected Z or ±hh:mm at the end",
        ),
        (
            r#""2026-11-24T10:00:00+24:00""#,
            "the time zone offset is out of range",
        ),
        (
            r#""2026-13-24T10:00:00Z""#,
            "a date or time field is out of range",
        ),
        (
            r#""2026-02-29T10:00:00Z""#,
            "a date or time field is out of range",
        ),
        (
            r#""1969-12-31T23:59:59Z""#,
            "a date or time field is out of range",
        ),
        (r#""2026-11-24T10:00Z""#, shape),
        (r#""2026-11-24T10:00:00.Z""#, shape),
        (r#""2026-11-24T10:00:00.25+00:00+05:00""#, shape),
        (r#""2026-11-24X10:00:00Z""#, shape),
        (r#""Z""#, shape),
        (r#""""#, shape),
        (r#""1763900000""#, shape),
        (r#""2026-11-24t10:00:00Z""#, shape),
        (r#""2026-11-24T10:00:00€Z""#, shape),
        ("true", "expected a number or a string"),
        ("[1]", "expected a number or a string"),
    ] {
        assert_eq!(
            ts(input),
            Err(format!(
                "`ts` is not epoch seconds or rfc 3339: {input_text} ({reason})",
                input_text = Json::display_of(input)
            )),
            "{input}"
        );
    }
    for input in [
        "-1",
        "1763900000250",
        "1e300",
        r#""1970-01-01T00:00:00+01:00""#,
    ] {
        let message = ts(input).unwrap_err();
        assert!(
            message.starts_with(
                "`ts` must be epoch seconds from 1970 to 9999 (0 to 253402300799), got "
            ),
            "{message}"
        );
    }
    // `null` is no more a timestamp than it is a name.
    assert_eq!(
        ts("null"),
        Err(
            "`ts` is not epoch seconds or rfc 3339: null (expected a number or a string)"
                .to_owned()
        )
    );
}

impl Json<'_> {
    /// How an error message quotes the JSON text `input`.
    fn display_of(input: &str) -> String {
        let value: Json<'_> = serde_json::from_str(input).unwrap();
        value.to_string()
    }
}

#[test]
fn labels_take_strings_numbers_and_bools() {
    let samples = parse_event(
        r#"{"ts": 1, "service": "s", "version": "v", "error": true, "labels": {"code": 200, "ratio": 0.5, "ok": true, "neg": -1, "zone": "eu", "zone": "us", "": null}}"#,
    );
    // The empty key is reported before anything else is considered.
    assert_eq!(samples.unwrap_err().to_string(), "a label key is empty");
    let samples = parse_event(
        r#"{"ts": 1, "service": "s", "version": "v", "error": true, "labels": {"code": 200, "ratio": 0.5, "ok": true, "neg": -1, "zone": "eu", "zone": "us"}}"#,
    )
    .unwrap();
    assert_eq!(
        samples[0].labels.to_string(),
        "code=200,neg=-1,ok=true,ratio=0.5,zone=us"
    );
    for labels in ["null", "{}"] {
        let line = format!(
            r#"{{"ts": 1, "service": "s", "version": "v", "error": true, "labels": {labels}}}"#
        );
        assert!(parse_event(&line).unwrap()[0].labels.is_empty(), "{labels}");
    }
}

#[test]
fn each_invalid_event_has_its_message() {
    let ok = r#""ts": 1, "service": "s", "version": "v""#;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "invalid json: expected ident at line 1 column 2"),
        (format!("{{{ok}, \"error\": true}} x"), "invalid json: trailing characters at line 1 column 58"),
        (format!("{{{ok}, \"error\": true"), "invalid json: EOF while parsing an object at line 1 column 55"),
        ("42".into(), "an event must be a json object, got 42"),
        (r#""event""#.into(), r#"an event must be a json object, got "event""#),
        ("null".into(), "an event must be a json object, got null"),
        (r#"{"service": "s", "version": "v", "error": true}"#.into(), "missing field `ts`"),
        (r#"{"ts": 1, "version": "v", "error": true}"#.into(), "missing field `service`"),
        (r#"{"ts": 1, "service": "s", "error": true}"#.into(), "missing field `version`"),
        (format!("{{{ok}, \"ts\": 2, \"error\": true}}"), "duplicate field `ts`"),
        (format!("{{{ok}, \"labels\": {{}}, \"labels\": {{}}, \"error\": true}}"), "duplicate field `labels`"),
        (r#"{"ts": 1, "service": "", "version": "v", "error": true}"#.into(), "invalid service name: is empty"),
        (r#"{"ts": 1, "service": "s", "version": "v\n", "error": true}"#.into(), "invalid version name: contains control characters"),
        (r#"{"ts": 1, "service": 7, "version": "v", "error": true}"#.into(), "`service` must be a string, got 7"),
        (r#"{"ts": 1, "service": "s", "version": null, "error": true}"#.into(), "`version` must be a string, got null"),
        (format!("{{{ok}}}"), "an event needs `latency_ms`, `error` or `status` (a request) or `metric` (a metric sample)"),
        (format!("{{{ok}, \"latency_ms\": -3}}"), "`latency_ms` must be a number >= 0, got -3"),
        (format!("{{{ok}, \"latency_ms\": -0.5}}"), "`latency_ms` must be a number >= 0, got -0.5"),
        (format!("{{{ok}, \"latency_ms\": \"NaN\"}}"), r#"`latency_ms` must be a number >= 0, got "NaN""#),
        (format!("{{{ok}, \"latency_ms\": NaN}}"), "invalid json: expected value at line 1 column 57"),
        (format!("{{{ok}, \"latency_ms\": 1e999}}"), "invalid json: number out of range at line 1 column 61"),
        (format!("{{{ok}, \"error\": \"false\"}}"), r#"`error` must be true or false, got "false""#),
        (format!("{{{ok}, \"error\": 0}}"), "`error` must be true or false, got 0"),
        (format!("{{{ok}, \"status\": 999}}"), "`status` must be an http status code (100 to 599), got 999"),
        (format!("{{{ok}, \"status\": \"503\"}}"), r#"`status` must be an http status code (100 to 599), got "503""#),
        (format!("{{{ok}, \"error\": true, \"labels\": [1]}}"), "`labels` must be an object, got an array"),
        (format!("{{{ok}, \"error\": true, \"labels\": {{\"a\": null}}}}"), "label `a` must be a string, number or bool, got null"),
        (format!("{{{ok}, \"error\": true, \"labels\": {{\"a\": {{}}}}}}"), "label `a` must be a string, number or bool, got an object"),
        (format!("{{{ok}, \"error\": true, \"labels\": {{\"a\\tb\": \"x\"}}}}"), "label `a\tb` contains control characters"),
        (format!("{{{ok}, \"error\": true, \"labels\": {{\"a\": \"x\\u0000\"}}}}"), "label `a` value contains control characters"),
        (format!("{{{ok}, \"metric\": \"cpu\", \"value\": -1}}"), "`value` must be a number >= 0, got -1"),
        (format!("{{{ok}, \"metric\": \"cpu\"}}"), "a metric sample needs `value`, or `requests` and `errors`"),
        (format!("{{{ok}, \"metric\": \"cpu\", \"value\": 1, \"requests\": 1}}"), "a metric sample has either `value` or `requests` and `errors`, not both"),
        (format!("{{{ok}, \"metric\": \"e\", \"requests\": 1}}"), "missing field `errors`"),
        (format!("{{{ok}, \"metric\": \"e\", \"errors\": 1}}"), "missing field `requests`"),
        (format!("{{{ok}, \"metric\": \"e\", \"requests\": 1.5, \"errors\": 0}}"), "`requests` must be an integer >= 0, got 1.5"),
        (format!("{{{ok}, \"metric\": \"e\", \"requests\": 3, \"errors\": -1}}"), "`errors` must be an integer >= 0, got -1"),
        (format!("{{{ok}, \"metric\": \"e\", \"requests\": 3, \"errors\": 5}}"), "errors (5) exceed requests (3)"),
        (format!("{{{ok}, \"metric\": \"\", \"value\": 1}}"), "invalid metric name: is empty"),
        (format!("{{{ok}, \"metric\": 1, \"value\": 1}}"), "`metric` must be a string, got 1"),
        (format!("{{{ok}, \"metric\": \"cpu\", \"value\": 1, \"latency_ms\": 3}}"), "`latency_ms` cannot be combined with `metric`: an event is either a request or a metric sample"),
        (format!("{{{ok}, \"value\": 1}}"), "missing field `metric`"),
        (format!("{{{ok}, \"latency_ms\": 1, \"requests\": 1, \"errors\": 0}}"), "missing field `metric`"),
        (format!(r#"[{{{ok}, "error": true}}, {{"ts": 1}}]"#), "element [1] of the array: missing field `service`"),
        (format!("[{{{ok}, \"error\": true}}, 7]"), "element [1] of the array: an event must be a json object, got 7"),
    ];
    for (line, message) in &cases {
        check_rejected(line, message);
    }

    let long = "x".repeat(300);
    check_rejected(
        &format!(r#"{{"ts": 1, "service": "{long}", "version": "v", "error": true}}"#),
        "invalid service name: is longer than 256 bytes",
    );
    check_rejected(
        &format!(r#"{{"ts": "{long}", "service": "s", "version": "v", "error": true}}"#),
        &format!("`ts` is not epoch seconds or rfc 3339: \"{}...\" (expected yyyy-mm-ddThh:mm:ss[.frac] followed by Z or ±hh:mm)", &long[..40]),
    );
    let labels: Vec<String> = (0..=MAX_LABELS)
        .map(|i| format!("\"k{i}\": \"v\""))
        .collect();
    check_rejected(
        &format!(
            "{{{ok}, \"error\": true, \"labels\": {{{}}}}}",
            labels.join(", ")
        ),
        "more than 64 labels",
    );
}

#[test]
fn arrays_keep_their_valid_events() {
    let ok = r#""service": "s", "version": "v""#;
    let content = format!(
        "[{{\"ts\": 1, {ok}, \"latency_ms\": 2}}, {{\"ts\": -1, {ok}, \"error\": true}}, [], \
         {{\"ts\": 3, {ok}, \"metric\": \"m\", \"value\": 1}}]\n\
         []\n\
         [{{\"ts\": 4}}]\n\
         [{{\"ts\": 5, {ok}, \"error\": true}}, \n\
         {{\"ts\": 6, {ok}, \"error\": true}}\n"
    );
    assert_eq!(
        summarize(content.as_bytes()),
        [
            "1: 2 events, 3 samples",
            "1: element [1] of the array: `ts` must be epoch seconds from 1970 to 9999 (0 to 253402300799), got -1",
            "1: element [2] of the array: an event must be a json object, got an array",
            "3: element [0] of the array: missing field `service`",
            // A syntax error anywhere rejects the whole line.
            "4: invalid json: EOF while parsing a value at line 1 column 58",
            "5: 1 events, 1 samples",
        ]
    );
    let samples = parse_event(&format!(
        "[{{\"ts\": 1, {ok}, \"error\": true}}, {{\"ts\": 2, {ok}, \"status\": 200}}]"
    ))
    .unwrap();
    assert_eq!(samples.iter().map(|s| s.ts).collect::<Vec<_>>(), [1.0, 2.0]);
}

#[test]
fn blank_comment_bom_and_crlf_lines() {
    let event = r#"{"ts": 1, "service": "s", "version": "v", "error": true}"#;
    let content =
        format!("\u{feff}{event}\r\n\r\n   \n# a comment\n  # indented\n\t{event}  \n{event}");
    assert_eq!(
        summarize(content.as_bytes()),
        [
            "1: 1 events, 1 samples",
            "6: 1 events, 1 samples",
            "7: 1 events, 1 samples"
        ]
    );
    assert!(summarize(b"").is_empty());
    assert!(parse_event("  # comment").unwrap().is_empty());
    assert!(parse_event("").unwrap().is_empty());
}

#[test]
fn invalid_utf8_is_rejected_per_line() {
    let mut content =
        b"{\"ts\": 1, \"service\": \"s\xff\", \"version\": \"v\", \"error\": true}\n".to_vec();
    content.extend_from_slice(
        b"{\"ts\": 1, \"service\": \"s\", \"version\": \"v\", \"error\": true}\n",
    );
    assert_eq!(
        summarize(&content),
        [
            "1: invalid utf-8 at byte offset 23",
            "2: 1 events, 1 samples"
        ]
    );
}

#[test]
fn overlong_lines_are_skipped() {
    let event = r#"{"ts": 1, "service": "s", "version": "v", "error": true}"#;
    let mut content = format!("{event}\n[");
    content.push_str(&" ".repeat(MAX_LINE_BYTES));
    content.push_str(&format!("]\n{event}\n"));
    assert_eq!(
        summarize(content.as_bytes()),
        [
            "1: 1 events, 1 samples".to_owned(),
            format!("2: line is longer than {MAX_LINE_BYTES} bytes"),
            "3: 1 events, 1 samples".to_owned(),
        ]
    );
}

#[test]
fn names_stay_correct_past_the_cache_bounds() {
    // New names interleaved with recurring ones, so that the last-hit
    // check, map hits, and both bounds' clearing (entries for services,
    // bytes for the long label sets) are all exercised.
    let service = |i: usize| {
        if i.is_multiple_of(2) {
            format!("s{i}")
        } else {
            "s".to_owned()
        }
    };
    let version = |i: usize| format!("v{}", i % (MAX_INTERNED + 7));
    let label = |i: usize| format!("{}{}", "x".repeat(250), i % 5000);
    let content: String = (0..2 * MAX_INTERNED + 10)
        .map(|i| {
            format!(
                "{{\"ts\": 1, \"service\": \"{}\", \"version\": \"{}\", \"error\": true, \"labels\": {{\"k\": \"{}\"}}}}\n",
                service(i),
                version(i),
                label(i)
            )
        })
        .collect();
    for (i, result) in read_all(content.as_bytes()).into_iter().enumerate() {
        let Ok(LineResult::Samples { samples, .. }) = result else {
            panic!("{result:?}");
        };
        assert_eq!(samples[0].service.as_str(), service(i));
        assert_eq!(samples[0].version.as_str(), version(i));
        assert_eq!(samples[0].labels.get("k"), Some(label(i).as_str()));
    }
}

/// Flips bytes, truncates and splices valid lines: each result must be
/// samples or an error, never a panic, and a reader must never stop early.
#[test]
fn garbage_never_panics() {
    let seeds = [
        r#"{"ts": "2026-11-24T10:00:00.25+02:00", "service": "payment", "version": "v8", "latency_ms": 84.2, "error": false, "labels": {"endpoint": "/charge", "code": 200}}"#,
        r#"[{"ts": 5, "service": "p", "version": "v7", "metric": "error_rate", "requests": 100, "errors": 3}, {"ts": 6, "service": "p", "version": "v7", "status": 503}]"#,
        r#"{"ts": 1e9, "service": "p\u00e9", "version": "v", "metric": "cpu", "value": 0.12}"#,
    ];
    // A small xorshift, so that failures reproduce.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3000 {
        let seed = seeds[(next() % 3) as usize].as_bytes();
        let mut bytes = seed.to_vec();
        match next() % 4 {
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] = next() as u8;
                }
            }
            1 => bytes.truncate((next() % bytes.len() as u64) as usize),
            2 => {
                let other = seeds[(next() % 3) as usize].as_bytes();
                let at = (next() % bytes.len() as u64) as usize;
                let from = (next() % other.len() as u64) as usize;
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = (next() % bytes.len() as u64) as usize;
                let b = [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'-', b'0']
                    [(next() % 10) as usize];
                bytes.insert(at, b);
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse_event(text);
        }
        lines.push(bytes);
    }
    let mut content = lines.join(&b'\n');
    content.push(b'\n');
    let n_lines = content.iter().filter(|&&b| b == b'\n').count() as u64;
    let results = read_all(&content);
    // All lines are read (line numbers ascending, up to the last), none
    // is fatal, and some survive mutation.
    let mut last_line = 0;
    for result in &results {
        let (Ok(LineResult::Samples { line, .. }) | Ok(LineResult::Rejected { line, .. })) = result
        else {
            panic!("{result:?}");
        };
        assert!(*line >= last_line);
        last_line = *line;
    }
    assert!(last_line > n_lines - 10 && last_line <= n_lines);
    assert!(results
        .iter()
        .any(|r| matches!(r, Ok(LineResult::Samples { .. }))));
}

/// `next_into` gives what iterating gives, with every line's samples in
/// one vector, in order.
#[test]
fn next_into_appends_what_next_yields() {
    let content = concat!(
        "{\"ts\": 1, \"service\": \"s\", \"version\": \"v\", \"latency_ms\": 1}\n",
        "not json\n",
        "\n",
        "[{\"ts\": 2, \"service\": \"s\", \"version\": \"v\", \"error\": true}, 5, ",
        "{\"ts\": 3, \"service\": \"s\", \"version\": \"v\", \"metric\": \"m\", \"value\": 2}]\n",
        "{\"ts\": 4, \"service\": \"s\", \"version\": \"v\", \"latency_ms\": -1}\n",
        "{\"ts\": 5, \"service\": \"s\", \"version\": \"v\", \"status\": 503}\n",
    )
    .as_bytes();
    let mut expected_samples = Vec::new();
    let mut expected = Vec::new();
    for result in read_all(content) {
        match result.unwrap() {
            LineResult::Samples {
                line,
                n_events,
                samples,
            } => {
                expected.push(format!("{line}: {n_events} events, {}", samples.len()));
                expected_samples.extend(samples);
            }
            LineResult::Rejected { line, error } => expected.push(format!("{line}: {error}")),
        }
    }
    let mut reader = EventReader::new(content, "<stdin>");
    let mut samples = vec![sample(0.0, "v0", "m", &[], Observation::Value(0.0))];
    let mut got = Vec::new();
    while let Some(result) = reader.next_into(&mut samples) {
        match result.unwrap() {
            LineOutcome::Samples {
                line,
                n_events,
                n_samples,
            } => got.push(format!("{line}: {n_events} events, {n_samples}")),
            LineOutcome::Rejected { line, error } => got.push(format!("{line}: {error}")),
        }
    }
    assert_eq!(got, expected);
    assert_eq!(expected.len(), 6, "{expected:?}");
    // What was in the vector stays; the samples follow it.
    assert_eq!(samples.len(), 1 + expected_samples.len());
    assert_eq!(samples[1..], expected_samples[..]);
}
