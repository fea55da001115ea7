//! The CPU side of Kafka ingest, without Kafka: decoding `vigil bench
//! ingest`'s SampleBatch messages and recording them into a fresh store,
//! on one thread, in nanoseconds per sample.
//!
//! `vigil bench ingest` measures the whole path against a raw consumer;
//! this bench isolates the part Vigil's workers spend per message
//! (`vigil_ingest::decode::decode_compact`, then `Store::record_values`
//! once per `OFFSET_BATCH` messages, as a worker with a backlog does), so
//! a change to either can be measured in seconds and without the mock
//! cluster's noise.
//!
//! The messages are the ingest bench's (`src/bench/ingest_fixture.rs`,
//! included below): 20,000 batches of 100 latency values, two services
//! and two versions (4 series), 2,000 samples per second of stream time.
//! Two orders:
//! - `stream`: message order, as one partition (or a topic keyed by
//!   service, as `vigil.samples` is) delivers a series;
//! - `partitions`: the order a consumer of 12 partitions sees when the
//!   messages are spread over them by message key (the ingest bench's
//!   keys): each partition read in fetches of 600 messages (1 MB), the
//!   partitions in turn. A series' samples then arrive up to minutes of
//!   stream time apart: the store's late path.
//! - `two_workers`: the same partitions split between two threads sharing
//!   one store, as the consumer's two default workers do (each reading its
//!   six partitions in fetches, in turn). Every partition holds every
//!   series, so both threads write the same four series at once; on two
//!   idle cores this takes half of `partitions`' time if they do not get
//!   in each other's way.

/// The `vigil` binary's allocator (`src/main.rs`), so that this measures
/// what the binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::decode::{decode_compact, DecodeOptions};
use vigil_ingest::Format;

#[path = "../src/bench/ingest_fixture.rs"]
mod ingest_fixture;
use ingest_fixture::{sample_batch, DEFAULT_SERVICES, PER_MESSAGE};

const MESSAGES: u64 = 20_000;
const PARTITIONS: u64 = 12;
const FETCH_MESSAGES: usize = 600;

/// The partition of message `i`: the ingest bench keys messages by their
/// number, which librdkafka's partitioner hashes, so each partition gets a
/// pseudo-random share of every series (a mix of `i` here, not the
/// partitioner's CRC: only the spread matters).
fn partition_of(i: u64) -> usize {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) % PARTITIONS) as usize
}

/// The messages in the order a consumer of `PARTITIONS` partitions reads
/// them (see the module docs), split between `workers` workers as the
/// consumer splits partitions (round the workers).
fn partition_order(messages: &[Vec<u8>], workers: usize) -> Vec<Vec<Vec<u8>>> {
    let mut partitions: Vec<Vec<&Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
    for (i, m) in messages.iter().enumerate() {
        partitions[partition_of(i as u64)].push(m);
    }
    let mut out = vec![Vec::new(); workers];
    let mut at = 0;
    while partitions.iter().any(|p| at < p.len()) {
        for (k, p) in partitions.iter().enumerate() {
            out[k % workers].extend(p.iter().skip(at).take(FETCH_MESSAGES).map(|m| (*m).clone()));
        }
        at += FETCH_MESSAGES;
    }
    out
}

/// Decodes and records every message into `store`, as a worker does with
/// a backlog: it decodes the messages it takes from its queues and records
/// what `OFFSET_BATCH` of them hold in one call (their samples stay under
/// `FLUSH_SAMPLES`). Returns the samples recorded.
fn ingest_into(store: &Store, messages: &[Vec<u8>]) -> u64 {
    let options = DecodeOptions::default();
    let mut recorded = 0;
    let mut pending = Vec::new();
    for batch in messages.chunks(vigil_ingest::consumer::OFFSET_BATCH) {
        for payload in batch {
            match decode_compact(Format::Samples, payload, &options) {
                Ok(d) => pending.extend(d.values),
                Err(e) => panic!("the bench's messages decode: {e}"),
            }
        }
        let runs = pending.iter().map(|r| (&r.head, &r.points[..]));
        recorded += store.record_values(runs).recorded as u64;
        pending.clear();
    }
    recorded
}

/// Every worker's messages into one fresh store, a thread per worker.
fn ingest(workers: &[Vec<Vec<u8>>]) -> u64 {
    let store = Store::new(StoreConfig::default());
    let recorded: u64 = if let [only] = workers {
        ingest_into(&store, only)
    } else {
        std::thread::scope(|scope| {
            let threads: Vec<_> = workers
                .iter()
                .map(|messages| scope.spawn(|| ingest_into(&store, messages)))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
        })
    };
    assert_eq!(recorded, MESSAGES * PER_MESSAGE, "every sample recorded");
    black_box(store.stats().series);
    recorded
}

fn bench(c: &mut Criterion) {
    let stream: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| sample_batch(i, false, DEFAULT_SERVICES))
        .collect();
    let partitions = partition_order(&stream, 1);
    let two_workers = partition_order(&stream, 2);
    let stream = vec![stream];
    let mut group = c.benchmark_group("ingest_path");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(MESSAGES * PER_MESSAGE));
    for (name, messages) in [
        ("stream", &stream),
        ("partitions", &partitions),
        ("two_workers", &two_workers),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(ingest(messages));
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
