//! The messages of `vigil bench ingest`, shared with
//! `benches/ingest_path.rs` (which includes this file): two services and
//! two versions (4 series; `--services` sets another number of services),
//! 100 samples per message, 2,000 samples per second of stream time.

/// Stream time of the first sample.
pub const T0: f64 = 1_800_000_000.0;
/// Stream seconds between consecutive samples in stream order: 2,000
/// samples a second, so 20,000 messages span 1,000 s, inside the window.
pub const STREAM_STEP: f64 = 0.0005;
/// Samples (request events, spans) per message.
pub const PER_MESSAGE: u64 = 100;

/// Stream time of sample `k` (the `k`-th sample produced overall): in
/// stream order, or cycling over 10 minutes (`out_of_order`).
pub fn sample_ts(k: u64, out_of_order: bool) -> f64 {
    if out_of_order {
        T0 + (k % 600) as f64
    } else {
        T0 + k as f64 * STREAM_STEP
    }
}

/// Services the messages cycle over by default: `checkout` and `payment`,
/// each with versions `v1` and `v2` (4 series).
pub const DEFAULT_SERVICES: u64 = 2;

/// The service and version of message `i` when the messages cycle over
/// `services` services (at least one): `checkout` and `payment` for two,
/// `svc-000`, `svc-001`, ... otherwise; each service's messages alternate
/// between `v1` and `v2`.
pub fn series_of(i: u64, services: u64) -> (String, &'static str) {
    let services = services.max(1);
    let k = i % services;
    let service = if services == DEFAULT_SERVICES {
        ["checkout", "payment"][k as usize].to_owned()
    } else {
        format!("svc-{k:03}")
    };
    (service, ["v1", "v2"][((i / services) % 2) as usize])
}

/// The latency of sample `j` of message `i`, in milliseconds (0 to 500).
pub fn latency_ms(i: u64, j: u64) -> f64 {
    ((i * PER_MESSAGE + j) * 7919 % 50_000) as f64 / 100.0
}

/// Message `i` as a SampleBatch of `PER_MESSAGE` latency values (see
/// [`series_of`] for `services`).
pub fn sample_batch(i: u64, out_of_order: bool, services: u64) -> Vec<u8> {
    use prost::Message as _;
    let (service, version) = series_of(i, services);
    vigil_proto::v1::SampleBatch {
        service,
        version: version.to_owned(),
        metric: "latency".to_owned(),
        timestamps: (0..PER_MESSAGE)
            .map(|j| sample_ts(i * PER_MESSAGE + j, out_of_order))
            .collect(),
        values: (0..PER_MESSAGE).map(|j| latency_ms(i, j)).collect(),
        ..Default::default()
    }
    .encode_to_vec()
}
