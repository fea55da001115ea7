use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::names::{MetricName, ServiceName, Version};

fn sample(
    ts: f64,
    version: &str,
    metric: &str,
    endpoint: Option<&str>,
    observation: Observation,
) -> Sample {
    Sample {
        ts,
        service: ServiceName::new("payment").unwrap(),
        version: Version::new(version).unwrap(),
        metric: MetricName::new(metric).unwrap(),
        labels: endpoint.map_or_else(Labels::empty, |e| {
            Labels::from_pairs([("endpoint", e), ("pod", "abc-1")])
        }),
        observation,
    }
}

fn key(version: &str, metric: &str, endpoint: Option<&str>) -> SeriesKey {
    SeriesKey {
        service: ServiceName::new("payment").unwrap(),
        version: Version::new(version).unwrap(),
        metric: MetricName::new(metric).unwrap(),
        labels: endpoint.map_or_else(Labels::empty, |e| Labels::from_pairs([("endpoint", e)])),
    }
}

fn small_store() -> Store {
    Store::new(StoreConfig {
        slice_secs: 10,
        window_secs: 60,
        ..StoreConfig::default()
    })
}

#[test]
fn samples_land_in_their_slice_and_the_aggregate() {
    let store = small_store();
    store
        .record(&sample(
            1000.0,
            "v1",
            "latency",
            Some("/a"),
            Observation::Value(12.5),
        ))
        .unwrap();
    store
        .record(&sample(
            1009.9,
            "v1",
            "latency",
            Some("/b"),
            Observation::Value(20.0),
        ))
        .unwrap();
    store
        .record(&sample(
            1010.0,
            "v1",
            "latency",
            Some("/a"),
            Observation::Value(30.0),
        ))
        .unwrap();
    let all = store.slices(&key("v1", "latency", None), i64::MIN, i64::MAX);
    assert_eq!(
        all.iter()
            .map(|s| (s.index, s.data.count()))
            .collect::<Vec<_>>(),
        vec![(100, 2), (101, 1)]
    );
    let a = store.slices(&key("v1", "latency", Some("/a")), i64::MIN, i64::MAX);
    assert_eq!(a.len(), 2);
    // The pod label is not on the allow-list.
    assert_eq!(
        store
            .label_sets(
                &key("v1", "latency", None).service,
                &key("v1", "l", None).version,
                &key("v1", "latency", None).metric
            )
            .len(),
        2
    );
    // 12.5 ms is held as 12500 us.
    match &all[0].data {
        SliceData::Distribution(h) => assert_eq!(h.min(), Some(12_496)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn old_slices_expire_and_too_old_samples_are_rejected() {
    let store = small_store(); // 6 slices of 10 s
    for t in 0..10 {
        store
            .record(&sample(
                f64::from(t) * 10.0,
                "v1",
                "latency",
                None,
                Observation::Value(1.0),
            ))
            .unwrap();
    }
    let slices = store.slices(&key("v1", "latency", None), i64::MIN, i64::MAX);
    assert_eq!(
        slices.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8, 9]
    );
    let err = store
        .record(&sample(5.0, "v1", "latency", None, Observation::Value(1.0)))
        .unwrap_err();
    assert!(matches!(err, CoreError::TooOld { .. }));
    assert_eq!(store.stats().too_old, 1);
    // Advancing stream time hides expired slices from readers too.
    store.advance(200.0);
    assert!(store
        .slices(&key("v1", "latency", None), i64::MIN, i64::MAX)
        .is_empty());
}

#[test]
fn bad_observations_are_counted_not_stored() {
    let store = small_store();
    for obs in [
        Observation::Value(f64::NAN),
        Observation::Value(-1.0),
        Observation::Value(f64::INFINITY),
        Observation::Counts {
            requests: 1,
            errors: 2,
        },
    ] {
        assert!(store.record(&sample(0.0, "v1", "m", None, obs)).is_err());
    }
    assert_eq!(store.stats().invalid, 4);
    assert_eq!(store.series_count(), 0);
    store
        .record(&sample(
            0.0,
            "v1",
            "errors",
            None,
            Observation::Outcome { error: true },
        ))
        .unwrap();
    let err = store
        .record(&sample(0.0, "v1", "errors", None, Observation::Value(3.0)))
        .unwrap_err();
    assert!(matches!(err, CoreError::KindMismatch { .. }), "{err}");
    assert_eq!(store.stats().kind_mismatch, 1);
    assert!(store
        .record(&sample(
            f64::NAN,
            "v1",
            "errors",
            None,
            Observation::Outcome { error: true }
        ))
        .is_err());
}

#[test]
fn histogram_observations_equal_their_samples() {
    let pairs = vec![(12.5, 3), (0.0, 1), (250.0, 0), (1e6, 2)];
    let one_by_one = small_store();
    for &(v, n) in &pairs {
        for _ in 0..n {
            one_by_one
                .record(&sample(
                    1000.0,
                    "v1",
                    "latency",
                    Some("/a"),
                    Observation::Value(v),
                ))
                .unwrap();
        }
    }
    let batched = small_store();
    batched
        .record(&sample(
            1000.0,
            "v1",
            "latency",
            Some("/a"),
            Observation::Histogram(pairs),
        ))
        .unwrap();
    for k in [key("v1", "latency", Some("/a")), key("v1", "latency", None)] {
        let a = one_by_one.merged(&k, 0, i64::MAX).unwrap();
        let b = batched.merged(&k, 0, i64::MAX).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.count(), 6);
    }

    // One bad pair rejects the whole histogram; so does an empty one, and
    // a histogram for a counter series.
    for (observation, message) in [
        (
            Observation::Histogram(vec![(1.0, 5), (-2.0, 1)]),
            "value must be >= 0, got -2",
        ),
        (
            Observation::Histogram(vec![(1.0, 5), (f64::NAN, 1)]),
            "value must be a finite number, got NaN",
        ),
        (
            Observation::Histogram(vec![(1.0, 0)]),
            "a histogram observation holds no samples",
        ),
    ] {
        let error = batched
            .record(&sample(1000.0, "v1", "latency", Some("/a"), observation))
            .unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    batched
        .record(&sample(
            1000.0,
            "v1",
            "errors",
            None,
            Observation::Outcome { error: true },
        ))
        .unwrap();
    let error = batched
        .record(&sample(
            1000.0,
            "v1",
            "errors",
            None,
            Observation::Histogram(vec![(1.0, 1)]),
        ))
        .unwrap_err();
    assert!(matches!(error, CoreError::KindMismatch { .. }), "{error}");
    assert_eq!(
        batched
            .merged(&key("v1", "latency", None), 0, i64::MAX)
            .unwrap()
            .count(),
        6
    );
    assert_eq!(batched.stats().invalid, 3);
    assert_eq!(batched.stats().kind_mismatch, 1);
}

#[test]
fn cardinality_limit_folds_into_other() {
    let store = Store::new(StoreConfig {
        max_label_sets_per_service: 3,
        ..StoreConfig::default()
    });
    for i in 0..10 {
        let e = format!("/user/{i}");
        store
            .record(&sample(
                0.0,
                "v1",
                "latency",
                Some(&e),
                Observation::Value(1.0),
            ))
            .unwrap();
    }
    let sets = store.label_sets(
        &ServiceName::new("payment").unwrap(),
        &Version::new("v1").unwrap(),
        &MetricName::new("latency").unwrap(),
    );
    assert_eq!(sets.len(), 4, "{sets:?}");
    assert!(sets.iter().any(|l| l.get("endpoint") == Some(OTHER)));
    assert_eq!(store.stats().folded_into_other, 7);
    let other = store.slices(&key("v1", "latency", Some(OTHER)), i64::MIN, i64::MAX);
    assert_eq!(other[0].data.count(), 7);
    // Nothing lost: the aggregate has all ten.
    assert_eq!(
        store
            .merged(&key("v1", "latency", None), i64::MIN, i64::MAX)
            .unwrap()
            .count(),
        10
    );
}

#[test]
fn memory_budget_evicts_least_recently_updated_series() {
    let store = Store::new(StoreConfig {
        memory_budget_bytes: 20_000,
        ..StoreConfig::default()
    });
    for v in 0..200 {
        let version = format!("v{v}");
        store
            .record(&sample(
                0.0,
                &version,
                "latency",
                None,
                Observation::Value(f64::from(v)),
            ))
            .unwrap();
    }
    assert!(store.bytes() <= 20_000, "{}", store.bytes());
    assert!(store.stats().evicted_series > 0);
    // The newest series survived.
    assert!(!store
        .slices(&key("v199", "latency", None), i64::MIN, i64::MAX)
        .is_empty());
    assert!(store
        .slices(&key("v0", "latency", None), i64::MIN, i64::MAX)
        .is_empty());
}

#[test]
fn a_reader_reads_its_series_through_eviction_and_across_stores() {
    let store = Store::new(StoreConfig {
        memory_budget_bytes: 20_000,
        ..StoreConfig::default()
    });
    let value = |v: f64| Observation::Value(v);
    let record = |store: &Store, ts: f64, version: &str, v: f64| {
        store
            .record(&sample(ts, version, "latency", None, value(v)))
            .unwrap();
    };
    let all =
        |store: &Store, reader: &mut SeriesReader| store.read_slices(reader, i64::MIN, i64::MAX);
    let mut reader = SeriesReader::new(key("v0", "latency", None));
    assert_eq!(reader.key(), &key("v0", "latency", None));
    // Nothing yet: empty, and found once the series exists.
    assert!(all(&store, &mut reader).is_empty());
    record(&store, 0.0, "v0", 5.0);
    record(&store, 10.0, "v0", 7.0);
    let read = all(&store, &mut reader);
    assert_eq!(read.len(), 2);
    assert_eq!(read, store.slices(reader.key(), i64::MIN, i64::MAX));
    assert_ne!(reader.touch(), 0);
    // The reader follows new data, and ranges, as `slices` does.
    record(&store, 10.0, "v0", 9.0);
    assert_eq!(
        store.read_slices(&mut reader, 1, 1),
        store.slices(reader.key(), 1, 1)
    );
    assert_eq!(store.read_slices(&mut reader, 1, 1)[0].data.count(), 2);
    // Evicted: the reader reads nothing, not the evicted data.
    for v in 1..200 {
        record(&store, 10.0, &format!("v{v}"), f64::from(v));
    }
    assert!(store.slices(reader.key(), i64::MIN, i64::MAX).is_empty());
    assert!(all(&store, &mut reader).is_empty());
    // Recreated under the same key: the reader finds the new series.
    record(&store, 20.0, "v0", 11.0);
    let read = all(&store, &mut reader);
    assert_eq!(read.len(), 1);
    assert_eq!(read, store.slices(reader.key(), i64::MIN, i64::MAX));
    // Given another store, it reads that store's series.
    let other = small_store();
    record(&other, 0.0, "v0", 1.0);
    record(&other, 0.0, "v0", 2.0);
    record(&other, 0.0, "v0", 3.0);
    let read = all(&other, &mut reader);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].data.count(), 3);
    assert_eq!(all(&store, &mut reader)[0].data.count(), 1);
}

#[test]
fn readers_see_whole_batches_while_writers_write() {
    // Two threads record batches of 100 samples into one series while a
    // reader reads it: every read sees whole batches (a batch's group is
    // added under the series' lock), never fewer than the read before,
    // and the last sees everything.
    let store = Arc::new(Store::new(StoreConfig::default()));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let batch: Vec<Sample> = (0..100)
                        .map(|j| {
                            sample(
                                5.0,
                                "v1",
                                "latency",
                                None,
                                Observation::Value(f64::from(t * 1000 + i + j)),
                            )
                        })
                        .collect();
                    assert!(store.record_batch(&batch).rejected.is_empty());
                }
            })
        })
        .collect();
    let mut reader = SeriesReader::new(key("v1", "latency", None));
    let count = |store: &Store, reader: &mut SeriesReader| -> u64 {
        store
            .read_slices(reader, i64::MIN, i64::MAX)
            .iter()
            .map(|s| s.data.count())
            .sum()
    };
    let mut last = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let seen = count(&store, &mut reader);
        assert_eq!(seen % 100, 0, "{seen}");
        assert!(seen >= last, "{seen} < {last}");
        last = seen;
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(count(&store, &mut reader), 40_000);
}

#[test]
fn a_batch_applies_other_series_while_one_is_written() {
    let store = Store::new(StoreConfig::default());
    let value = |version: &str| sample(1000.0, version, "latency", None, Observation::Value(5.0));
    store.record(&value("v1")).unwrap();
    let x = key("v1", "latency", None);
    let count = |k: &SeriesKey| store.merged(k, i64::MIN, i64::MAX).map_or(0, |d| d.count());
    // A series in another shard than x's.
    let other = {
        let writing = store.series.get_mut(&x).unwrap();
        let other = (2..200)
            .map(|n| format!("v{n}"))
            .find(|v| {
                !matches!(
                    store.series.try_get(&key(v, "latency", None)),
                    TryResult::Locked
                )
            })
            .unwrap();
        drop(writing);
        other
    };
    let y = key(&other, "latency", None);
    // A batch of a sample of x, one of y, and one of x's next slice
    // (which waits behind x's first, keeping x's slices in order),
    // checked and grouped.
    let next = sample(1010.0, "v1", "latency", None, Observation::Value(6.0));
    let samples = [value("v1"), value(&other), next];
    let mut batch = Batch::default();
    let mut high = store.high_water.load(Ordering::Acquire);
    for s in &samples {
        store
            .batch_one(s, s.ts, &s.observation, &mut high, &mut batch)
            .unwrap();
    }
    // Another thread writing series x (holding its shard's lock) while
    // the batch is applied: y's sample goes in without waiting for x.
    let writing = store.series.get_mut(&x).unwrap();
    std::thread::scope(|scope| {
        let applying = scope.spawn(|| store.apply_batch(batch, BatchOutcome::default(), high, 3));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while count(&y) == 0 {
            assert!(std::time::Instant::now() < deadline, "y waited for x");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!applying.is_finished(), "x's group waits for its series");
        drop(writing);
        let outcome = applying.join().unwrap();
        assert_eq!((outcome.recorded, outcome.rejected.len()), (3, 0));
    });
    assert_eq!((count(&x), count(&y)), (3, 1));
    let slices = store.slices(&x, i64::MIN, i64::MAX);
    let counts: Vec<u64> = slices.iter().map(|s| s.data.count()).collect();
    assert_eq!(counts, [2, 1]);
}

#[test]
fn concurrent_batches_of_shared_series_lose_nothing() {
    // Batches in groups of many series and slices, as Kafka workers
    // whose partitions all carry every series record them: every sample
    // counted once, in the labelled series and the aggregate.
    let store = Store::new(StoreConfig::default());
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let store = &store;
            scope.spawn(move || {
                for b in 0..50u32 {
                    let batch: Vec<Sample> = (0..400u32)
                        .map(|i| {
                            let n = b * 400 + i;
                            sample(
                                1000.0 + f64::from(n % 97),
                                ["v1", "v2", "v3"][(n % 3) as usize],
                                "latency",
                                Some(["/a", "/b"][((n / 3) % 2) as usize]),
                                Observation::Value(f64::from(1 + (n * 7 + t) % 900)),
                            )
                        })
                        .collect();
                    let outcome = store.record_batch(&batch);
                    assert_eq!(outcome.rejected.len(), 0);
                }
            });
        }
    });
    let count = |k: &SeriesKey| store.merged(k, i64::MIN, i64::MAX).map_or(0, |d| d.count());
    let mut labelled = 0;
    let mut aggregates = 0;
    for v in ["v1", "v2", "v3"] {
        aggregates += count(&key(v, "latency", None));
        for e in ["/a", "/b"] {
            labelled += count(&key(v, "latency", Some(e)));
        }
    }
    assert_eq!((labelled, aggregates), (80_000, 80_000));
    assert_eq!(store.stats().recorded, 80_000);
}

#[test]
fn concurrent_writers_lose_nothing() {
    let store = Arc::new(Store::new(StoreConfig::default()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    let endpoint = format!("/e{}", i % 7);
                    store
                        .record(&sample(
                            f64::from(i % 100),
                            "v1",
                            "latency",
                            Some(&endpoint),
                            Observation::Value(f64::from(t + 1)),
                        ))
                        .unwrap();
                    store
                        .record(&sample(
                            f64::from(i % 100),
                            "v1",
                            "errors",
                            None,
                            Observation::Outcome { error: i % 10 == 0 },
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store
            .merged(&key("v1", "latency", None), i64::MIN, i64::MAX)
            .unwrap()
            .count(),
        20_000
    );
    match store
        .merged(&key("v1", "errors", None), i64::MIN, i64::MAX)
        .unwrap()
    {
        SliceData::Counts { requests, errors } => assert_eq!((requests, errors), (20_000, 2_000)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn snapshot_round_trips_and_detects_corruption() {
    let store = small_store();
    for i in 0..300 {
        let e = ["/a", "/b", "/c"][i % 3];
        store
            .record(&sample(
                i as f64 * 0.2,
                "v1",
                "latency",
                Some(e),
                Observation::Value(i as f64),
            ))
            .unwrap();
        store
            .record(&sample(
                i as f64 * 0.2,
                "v2",
                "errors",
                Some(e),
                Observation::Outcome { error: i % 7 == 0 },
            ))
            .unwrap();
    }
    let bytes = store.snapshot().unwrap();
    let restored = Store::restore(&bytes).unwrap();
    assert!(store.same_data(&restored));
    assert_eq!(
        restored.snapshot().unwrap(),
        bytes,
        "snapshots are deterministic"
    );
    assert_eq!(
        restored
            .label_sets(
                &key("v1", "latency", None).service,
                &key("v1", "x", None).version,
                &key("v1", "latency", None).metric
            )
            .len(),
        3
    );
    // Any flipped byte, truncation or wrong magic is refused.
    for at in [0, 9, 15, 30, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x55;
        assert!(Store::restore(&bad).is_err(), "flip at {at}");
    }
    assert!(Store::restore(&bytes[..bytes.len() - 3]).is_err());
    assert!(Store::restore(b"").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The window view is the sum of its slices: merging every slice gives
    /// exactly what was recorded in the window.
    #[test]
    fn merged_window_is_the_sum_of_slices(values in prop::collection::vec((0u32..600, 0.0f64..5_000.0), 1..300)) {
        let store = Store::new(StoreConfig { slice_secs: 10, window_secs: 10_000, ..StoreConfig::default() });
        let mut expected = SparseHistogram::new();
        for &(t, v) in &values {
            store.record(&sample(f64::from(t), "v1", "latency", None, Observation::Value(v))).unwrap();
            expected.record((v * 1000.0).round() as u64);
        }
        let merged = store.merged(&key("v1", "latency", None), i64::MIN, i64::MAX).unwrap();
        prop_assert_eq!(merged, SliceData::Distribution(expected));
        let slices = store.slices(&key("v1", "latency", None), i64::MIN, i64::MAX);
        prop_assert!(slices.windows(2).all(|w| w[0].index < w[1].index));
    }
}

/// A sample for the batch tests, drawn from a small space so that series,
/// slices, kinds and label sets collide often.
fn arbitrary_sample() -> impl Strategy<Value = Sample> {
    let observation = prop_oneof![
        4 => (0.0f64..5_000.0).prop_map(Observation::Value),
        3 => any::<bool>().prop_map(|error| Observation::Outcome { error }),
        1 => (0u64..5, 0u64..7).prop_map(|(errors, requests)| Observation::Counts { requests, errors }),
        1 => prop::collection::vec((0.0f64..100.0, 0u64..3), 0..4).prop_map(Observation::Histogram),
        1 => Just(Observation::Value(-1.0)),
    ];
    (
        0u32..400,
        prop::sample::select(vec!["v1", "v2"]),
        prop::sample::select(vec!["latency", "errors"]),
        prop::sample::select(vec![None, Some("/a"), Some("/b"), Some("/c")]),
        observation,
    )
        .prop_map(|(t, version, metric, endpoint, observation)| {
            sample(f64::from(t) * 0.5, version, metric, endpoint, observation)
        })
}

/// Slices per series, label sets per metric, versions.
type Visible = (Vec<(String, Vec<Slice>)>, Vec<Vec<Labels>>, Vec<Version>);

/// Everything a reader can see of a store, for the keys the batch tests use.
fn visible(store: &Store) -> Visible {
    let mut slices = Vec::new();
    let mut sets = Vec::new();
    for version in ["v1", "v2"] {
        for metric in ["latency", "errors"] {
            for endpoint in [None, Some("/a"), Some("/b"), Some("/c"), Some(OTHER)] {
                let k = key(version, metric, endpoint);
                slices.push((
                    format!("{version} {metric} {endpoint:?}"),
                    store.slices(&k, i64::MIN, i64::MAX),
                ));
            }
            let k = key(version, metric, None);
            sets.push(store.label_sets(&k.service, &k.version, &k.metric));
        }
    }
    let versions = store.versions(&ServiceName::new("payment").unwrap());
    (slices, sets, versions)
}

fn counters(store: &Store) -> StatsSnapshot {
    StatsSnapshot {
        bytes: 0,
        ..store.stats()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// A batch records exactly what the same samples recorded one by one
    /// do: the same refusals with the same errors, the same counters, the
    /// same slices, label sets and versions; in batches of any size.
    #[test]
    fn a_batch_equals_its_samples_one_by_one(
        samples in prop::collection::vec(arbitrary_sample(), 1..200),
        batch_len in 1usize..80,
        judged_before in 0i64..25,
    ) {
        let config = StoreConfig {
            slice_secs: 10,
            window_secs: 60,
            max_label_sets_per_service: 2,
            ..StoreConfig::default()
        };
        let one_by_one = Store::new(config.clone());
        one_by_one.set_judged_before(judged_before);
        let expected: Vec<Option<String>> = samples
            .iter()
            .map(|s| one_by_one.record(s).err().map(|e| e.to_string()))
            .collect();
        // Every sample recorded into a slice the judge had read, once.
        let late = samples
            .iter()
            .zip(&expected)
            .filter(|(s, e)| e.is_none() && one_by_one.slice_of(s.ts) < judged_before)
            .count();
        prop_assert_eq!(one_by_one.stats().after_judged, late as u64);
        let batched = Store::new(config);
        batched.set_judged_before(judged_before);
        let mut got = vec![None; samples.len()];
        for (n, chunk) in samples.chunks(batch_len).enumerate() {
            let outcome = batched.record_batch(chunk);
            prop_assert_eq!(outcome.recorded + outcome.rejected.len(), chunk.len());
            for (i, error) in outcome.rejected {
                got[n * batch_len + i] = Some(error.to_string());
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(counters(&batched), counters(&one_by_one));
        prop_assert_eq!(visible(&batched), visible(&one_by_one));
    }
}

#[test]
fn late_samples_reach_completed_and_older_slices() {
    let store = Store::new(StoreConfig {
        slice_secs: 10,
        window_secs: 100,
        ..StoreConfig::default()
    });
    let k = key("v1", "latency", None);
    // Newest first: every sample after the first is late.
    for t in [55.0, 31.0, 54.0, 12.0, 33.0, 12.5, 99.0, 0.0] {
        store
            .record(&sample(t, "v1", "latency", None, Observation::Value(t)))
            .unwrap();
    }
    let slices = store.slices(&k, i64::MIN, i64::MAX);
    assert_eq!(
        slices
            .iter()
            .map(|s| (s.index, s.data.count()))
            .collect::<Vec<_>>(),
        vec![(0, 1), (1, 2), (3, 2), (5, 2), (9, 1)]
    );
    // Expiry drops the oldest; a later sample into a gap still lands.
    store
        .record(&sample(
            125.0,
            "v1",
            "latency",
            None,
            Observation::Value(1.0),
        ))
        .unwrap();
    store
        .record(&sample(
            71.0,
            "v1",
            "latency",
            None,
            Observation::Value(1.0),
        ))
        .unwrap();
    let slices = store.slices(&k, i64::MIN, i64::MAX);
    assert_eq!(
        slices.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![3, 5, 7, 9, 12]
    );
    let bytes = store.snapshot().unwrap();
    assert!(Store::restore(&bytes).unwrap().same_data(&store));
}

/// Runs of samples of one series and slice (the batch's fast path),
/// including labels folded into `other` and a kind switch inside a run,
/// count and land as one by one.
#[test]
fn batch_runs_of_one_series_equal_one_by_one() {
    let config = StoreConfig {
        slice_secs: 10,
        window_secs: 600,
        max_label_sets_per_service: 1,
        ..StoreConfig::default()
    };
    let mut samples = Vec::new();
    for (endpoint, metric) in [
        (Some("/a"), "latency"),
        (Some("/b"), "latency"),
        (None, "errors"),
    ] {
        let first = sample(1.0, "v1", metric, endpoint, Observation::Value(1.0));
        for k in 0..30 {
            let mut s = first.clone();
            s.ts = 1.0 + f64::from(k % 15);
            s.observation = if k == 20 {
                Observation::Outcome { error: true }
            } else {
                Observation::Value(f64::from(k))
            };
            samples.push(s);
        }
    }
    let one_by_one = Store::new(config.clone());
    let errors: Vec<Option<String>> = samples
        .iter()
        .map(|s| one_by_one.record(s).err().map(|e| e.to_string()))
        .collect();
    let batched = Store::new(config);
    let outcome = batched.record_batch(&samples);
    let mut got = vec![None; samples.len()];
    for (i, e) in outcome.rejected {
        got[i] = Some(e.to_string());
    }
    assert_eq!(got, errors);
    assert!(one_by_one.stats().folded_into_other >= 30);
    assert_eq!(counters(&batched), counters(&one_by_one));
    assert_eq!(visible(&batched), visible(&one_by_one));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Values of one series recorded as pairs equal the same samples
    /// recorded as a batch: refusals (NaN, negative, too old, a kind
    /// mismatch with an existing series), counters and slices.
    #[test]
    fn values_equal_their_samples(
        points in prop::collection::vec(
            (prop_oneof![8 => 0.0f64..900.0, 1 => Just(f64::NAN)], prop_oneof![8 => 0.0f64..5_000.0, 1 => Just(-1.0), 1 => Just(f64::INFINITY)]),
            1..200,
        ),
        metric in prop::sample::select(vec!["latency", "errors"]),
        endpoint in prop::sample::select(vec![None, Some("/a")]),
        judged_before in 0i64..100,
    ) {
        let config = StoreConfig { slice_secs: 10, window_secs: 300, ..StoreConfig::default() };
        let head = sample(0.0, "v1", metric, endpoint, Observation::Value(0.0));
        let stores = [Store::new(config.clone()), Store::new(config)];
        for store in &stores {
            store.set_judged_before(judged_before);
            // An existing counter series: values for it are refused.
            store.record(&sample(0.0, "v1", "errors", None, Observation::Outcome { error: false })).unwrap();
        }
        let samples: Vec<Sample> = points
            .iter()
            .map(|&(ts, v)| Sample { ts, observation: Observation::Value(v), ..head.clone() })
            .collect();
        let as_samples = stores[0].record_batch(&samples);
        let other = sample(0.0, "v2", metric, endpoint, Observation::Value(0.0));
        let (a, b) = points.split_at(points.len() / 2);
        let as_values = stores[1].record_values([(&head, a), (&other, &[][..]), (&head, b)]);
        let errors = |o: &BatchOutcome| o.rejected.iter().map(|(i, e)| (*i, e.to_string())).collect::<Vec<_>>();
        prop_assert_eq!(as_values.recorded, as_samples.recorded);
        prop_assert_eq!(errors(&as_values), errors(&as_samples));
        prop_assert_eq!(counters(&stores[1]), counters(&stores[0]));
        prop_assert_eq!(visible(&stores[1]), visible(&stores[0]));
    }
}

#[test]
fn the_store_tells_when_stream_time_reached_its_slice() {
    let store = Store::new(StoreConfig::default());
    assert_eq!(store.high_water_since(), None);
    let before = std::time::Instant::now();
    store.advance(105.0);
    let (h, at) = store.high_water_since().unwrap();
    assert_eq!(h, store.slice_of(105.0));
    assert!(at >= before && at <= std::time::Instant::now());
    // Samples within the slice, or older, leave the moment alone.
    store.advance(109.0);
    store.advance(50.0);
    store
        .record(&sample(
            108.0,
            "v7",
            "error_rate",
            None,
            Observation::Outcome { error: false },
        ))
        .unwrap();
    assert_eq!(store.high_water_since(), Some((h, at)));
    // A sample of the next slice moves it.
    store
        .record(&sample(
            111.0,
            "v7",
            "error_rate",
            None,
            Observation::Outcome { error: false },
        ))
        .unwrap();
    let (h2, at2) = store.high_water_since().unwrap();
    assert_eq!(h2, h + 1);
    assert!(at2 >= at);
}

/// The inline floor and round agree with the standard library's on the
/// edges (halves, the float just below a half, integers past 2^52,
/// negatives, saturation) and on random values.
#[test]
fn inline_floor_and_round_match_std() {
    let below_half = 0.5f64.next_down();
    for x in [
        0.0,
        -0.0,
        0.5,
        1.5,
        2.5,
        below_half,
        1.0 + below_half,
        4_503_599_627_370_495.5,
        4_503_599_627_370_496.0,
        9_007_199_254_740_993.0,
        3.9e18,
        1e-300,
    ] {
        assert_eq!(super::round_u64(x), x.round() as u64, "round {x}");
    }
    for x in [
        0.0,
        -0.0,
        -0.5,
        -1.0,
        -1.0f64.next_down(),
        -1.0f64.next_up(),
        0.999_999_999_999_999_9,
        180_000_000.0,
        180_000_000.0f64.next_down(),
        -4.5e18,
        1e300,
        -1e300,
        f64::MAX,
        f64::MIN,
    ] {
        assert_eq!(super::floor_i64(x), x.floor() as i64, "floor {x}");
    }
    proptest!(|(x in 0.0f64..3.9e18, y in -1e19f64..1e19)| {
        prop_assert_eq!(super::round_u64(x), x.round() as u64);
        prop_assert_eq!(super::round_u64(x / 1e9), (x / 1e9).round() as u64);
        prop_assert_eq!(super::floor_i64(y), y.floor() as i64);
        prop_assert_eq!(super::floor_i64(y / 1e12), (y / 1e12).floor() as i64);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Reading one slice, as a judge tick reads the newest completed one
    /// (which starts at the ring's newest slice rather than walking it
    /// from the oldest), gives that slice as a read of the whole window
    /// does, after every step: in order, late (into recent slices, and
    /// beyond the most lateness a series allows, into pending additions
    /// merged into its ring), in gaps.
    #[test]
    fn one_slice_reads_as_the_whole_window_does(
        steps in prop::collection::vec(
            (prop_oneof![4 => -3i64..4, 1 => -12i64..-3, 1 => -100i64..-60], 0.0f64..5_000.0, 1usize..60),
            1..150,
        ),
        counters in any::<bool>(),
    ) {
        let store = Store::new(StoreConfig {
            slice_secs: 10,
            window_secs: 1500,
            ..StoreConfig::default()
        });
        let metric = if counters { "errors" } else { "latency" };
        let k = key("v1", metric, None);
        let mut newest = 0i64;
        for (offset, value, repeat) in steps {
            let slice = (newest + offset).max(0);
            newest = newest.max(slice);
            for r in 0..repeat {
                let observation = if counters {
                    Observation::Outcome { error: value < 100.0 }
                } else {
                    Observation::Value(value + 37.0 * r as f64)
                };
                let ts = slice as f64 * 10.0 + r as f64;
                // Samples older than the window are refused; that is fine.
                let _ = store.record(&sample(ts, "v1", metric, None, observation));
            }
            let all = store.slices(&k, i64::MIN, i64::MAX);
            for index in (newest - 3).max(0)..=newest {
                let expected: Vec<_> = all.iter().filter(|s| s.index == index).cloned().collect();
                prop_assert_eq!(store.slices(&k, index, index), expected.clone());
                let from_here: Vec<_> = all.iter().filter(|s| s.index >= index).cloned().collect();
                prop_assert_eq!(store.slices(&k, index, i64::MAX), from_here);
            }
        }
    }
}

/// Samples later than any series allows go to pending additions, merged
/// into the ring once they outgrow it; the newest slice then still reads
/// as before (its place in the rewritten ring is found again).
#[test]
fn the_newest_slice_reads_the_same_after_late_additions_merge() {
    let store = Store::new(StoreConfig {
        slice_secs: 10,
        window_secs: 1500,
        ..StoreConfig::default()
    });
    let k = key("v1", "latency", None);
    let record = |ts: f64, v: f64| {
        store
            .record(&sample(ts, "v1", "latency", None, Observation::Value(v)))
            .unwrap();
    };
    for slice in 0..=100 {
        record(slice as f64 * 10.0, 1.0 + slice as f64);
    }
    let before = store.slices(&k, 99, 99);
    assert_eq!(before.len(), 1);
    // 90 slices late, past the most lateness allowed (64 slices): pending
    // additions, far more bytes than the ring holds.
    for i in 0..2_000 {
        record(105.0, 1_000.0 + 7.0 * f64::from(i));
    }
    assert_eq!(store.slices(&k, 99, 99), before);
    assert_eq!(store.slices(&k, 10, 10)[0].data.count(), 2_001);
    let all = store.slices(&k, i64::MIN, i64::MAX);
    assert_eq!(all.len(), 101);
    assert_eq!(all.iter().map(|s| s.data.count()).sum::<u64>(), 2_101);
}
