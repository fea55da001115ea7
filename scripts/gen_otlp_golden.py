#!/usr/bin/env python3
"""Golden OTLP payloads for vigil-ingest, produced by the official
OpenTelemetry Python SDK and its OTLP protobuf encoder.

Writes to crates/vigil-ingest/tests/data/:

- otlp_spans.bin    an ExportTraceServiceRequest (what the Collector's kafka
                    exporter puts on `otlp_spans` with `otlp_proto` encoding)
- otlp_metrics.bin  an ExportMetricsServiceRequest (`otlp_metrics`), delta
                    temporality
- otlp_expected.json the samples Vigil must decode them to, computed here
                    from the inputs this script chose (durations, statuses,
                    recorded values), independently of Vigil's code:
    - server spans -> latency (end - start, ms) and error_rate (status ERROR
      or http.response.status_code >= 500), endpoint = http.route or the
      span name; client and internal spans give nothing;
    - explicit-bucket histogram -> (bucket upper bound, count) per non-empty
      bucket, the overflow bucket at the point's max;
    - exponential histogram -> (base^(index+1), count), base = 2^(2^-scale),
      values of unit `s` converted to ms;
    - delta sum -> the point's value.

Versions used (pip install):
    opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2
    (opentelemetry-proto==1.45.2, protobuf==7.36.2), Python 3.11.

Usage: python3 scripts/gen_otlp_golden.py
"""

import json
import math
import os

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "vigil-ingest", "tests", "data")
T0 = 1_700_000_000_000_000_000  # ns
SERVICE, VERSION = "checkout", "v2"


def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE, "service.version": VERSION})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("golden")
    expected = []
    # (name, kind, route, http status, status code, duration in ns)
    cases = [
        ("GET /cart", SpanKind.SERVER, "/cart", 200, None, 12_500_000),
        ("GET /cart", SpanKind.SERVER, "/cart", 503, None, 250_000_000),
        ("POST /pay", SpanKind.SERVER, "/pay", 200, StatusCode.ERROR, 40_000_000),
        ("health", SpanKind.SERVER, None, None, None, 1_000_000),
        ("SELECT", SpanKind.CLIENT, None, None, None, 3_000_000),
        ("render", SpanKind.INTERNAL, None, None, None, 2_000_000),
    ]
    for i, (name, kind, route, http, code, duration) in enumerate(cases):
        start = T0 + i * 1_000_000_000
        end = start + duration
        attributes = {}
        if route is not None:
            attributes["http.route"] = route
        if http is not None:
            attributes["http.response.status_code"] = http
        span = tracer.start_span(name, kind=kind, attributes=attributes, start_time=start)
        if code is not None:
            span.set_status(Status(code))
        span.end(end_time=end)
        if kind == SpanKind.SERVER:
            labels = {"endpoint": route if route is not None else name}
            error = code == StatusCode.ERROR or (http is not None and http >= 500)
            common = {"ts": end / 1e9, "service": SERVICE, "version": VERSION, "labels": labels}
            expected.append({**common, "metric": "latency", "value": (end - start) / 1e6})
            expected.append({**common, "metric": "error_rate", "error": error})
    request = encode_spans(exporter.get_finished_spans())
    return request.SerializeToString(), expected


def metrics():
    delta = {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA}
    reader = InMemoryMetricReader(preferred_temporality=delta)
    provider = MeterProvider(
        resource=Resource.create({"service.name": SERVICE, "service.version": VERSION}),
        metric_readers=[reader],
        views=[
            View(instrument_name="queue.wait", aggregation=ExponentialBucketHistogramAggregation()),
        ],
    )
    meter = provider.get_meter("golden")
    duration = meter.create_histogram("http.server.duration", unit="ms")
    wait = meter.create_histogram("queue.wait", unit="s")
    requests = meter.create_counter("requests")
    durations = [3.0, 7.5, 7.5, 42.0, 180.0, 12000.0]
    waits = [0.0, 0.0123, 0.0456, 0.3, 1.7]
    for v in durations:
        duration.record(v, {"endpoint": "/cart"})
    for v in waits:
        wait.record(v)
    for v in [1, 2, 4]:
        requests.add(v, {"endpoint": "/pay"})
    data = reader.get_metrics_data()

    expected = []
    points = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = m.data.data_points[0]
    # Explicit buckets: the SDK's default boundaries, (b[i-1], b[i]].
    p = points["http.server.duration"]
    bounds = list(p.explicit_bounds)
    counts = {}
    for v in durations:
        i = next((k for k, b in enumerate(bounds) if v <= b), len(bounds))
        upper = bounds[i] if i < len(bounds) else max(durations)
        counts[upper] = counts.get(upper, 0) + 1
    expected.append(
        {
            "ts": p.time_unix_nano / 1e9,
            "service": SERVICE,
            "version": VERSION,
            "labels": {"endpoint": "/cart"},
            "metric": "http.server.duration",
            "histogram": sorted(counts.items()),
        }
    )
    # Exponential buckets: index = ceil(log_base(v)) - 1 for v > 0.
    p = points["queue.wait"]
    base = 2.0 ** (2.0 ** -p.scale)
    counts = {}
    for v in waits:
        if v == 0.0:
            upper = 0.0
        else:
            index = math.ceil(math.log(v) / math.log(base)) - 1
            upper = base ** (index + 1) * 1000.0
        counts[upper] = counts.get(upper, 0) + 1
    expected.append(
        {
            "ts": p.time_unix_nano / 1e9,
            "service": SERVICE,
            "version": VERSION,
            "labels": {},
            "metric": "queue.wait",
            "histogram": sorted(counts.items()),
        }
    )
    p = points["requests"]
    expected.append(
        {
            "ts": p.time_unix_nano / 1e9,
            "service": SERVICE,
            "version": VERSION,
            "labels": {"endpoint": "/pay"},
            "metric": "requests",
            "value": 7.0,
        }
    )
    return encode_metrics(data).SerializeToString(), expected


def main():
    span_bytes, span_expected = spans()
    metric_bytes, metric_expected = metrics()
    with open(os.path.join(OUT, "otlp_spans.bin"), "wb") as f:
        f.write(span_bytes)
    with open(os.path.join(OUT, "otlp_metrics.bin"), "wb") as f:
        f.write(metric_bytes)
    with open(os.path.join(OUT, "otlp_expected.json"), "w") as f:
        json.dump({"spans": span_expected, "metrics": metric_expected}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
