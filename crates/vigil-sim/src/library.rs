//! The built-in scenarios (`vigil simulate --list`), written in the same
//! TOML a user would write, so each is also an example of the format.

use crate::scenario::{Scenario, ScenarioError};

/// The analysis most scenarios use: the issue's default policy
/// (sequential, alpha 0.01, 30 minutes), latency at p50 and p99 with a 5%
/// tolerance, errors with a 0.2-point tolerance, both critical.
const ANALYSIS: &str = r#"
[analysis.policy]
method = "sequential"
alpha = 0.01
max_duration = "30m"

[[analysis.metrics]]
name = "latency"
kind = "latency"
direction = "increase"
tolerance = 0.05
quantiles = [0.5, 0.99]
critical = true

[[analysis.metrics]]
name = "error_rate"
kind = "error_rate"
direction = "increase"
tolerance = 0.0
tolerance_abs = 0.002
critical = true
"#;

/// The usual traffic: 30 minutes at 100 rps, a 10% canary, lognormal
/// latency around 150 ms, 0.1% errors.
const TRAFFIC: &str = r#"
duration_s = 1800
rps = 100.0
canary_fraction = 0.1
"#;

const BASELINE: &str = r#"
[baseline]
latency_median_ms = 150.0
latency_sigma = 0.6
error_rate = 0.001
"#;

/// A named built-in scenario.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its name on the command line.
    pub name: &'static str,
    /// Whether the canary is healthy (should not be rolled back).
    pub healthy: bool,
    /// Everything but the shared blocks.
    body: &'static str,
    /// Whether it brings its own `[analysis]` (else [`ANALYSIS`] is used).
    own_analysis: bool,
    /// Whether it brings its own traffic keys and baseline.
    own_traffic: bool,
}

impl Builtin {
    /// The scenario's TOML text.
    pub fn toml(&self) -> String {
        let mut text = format!("name = \"{}\"\n", self.name);
        if !self.own_traffic {
            text.push_str(TRAFFIC);
        }
        text.push_str(self.body);
        if !self.own_traffic {
            text.push_str(BASELINE);
        }
        if !self.own_analysis {
            text.push_str(ANALYSIS);
        }
        text
    }

    /// The parsed scenario.
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&self.toml())
    }
}

/// Every built-in scenario.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "aa",
        healthy: true,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "A/A: the canary is the baseline (100 rps, 10% canary)"
"#,
    },
    Builtin {
        name: "aa-ramp-drift",
        healthy: true,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "A/A while traffic ramps from 15% over 15 minutes and latency drifts +-35% on both arms"
[ramp]
start_fraction = 0.15
ramp_s = 900
[drift]
amplitude = 0.35
period_s = 700
"#,
    },
    Builtin {
        name: "aa-ties",
        healthy: true,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "A/A with heavy ties: a 10 ms timer, so latencies take a few dozen values"
timer_resolution_ms = 10.0
"#,
    },
    Builtin {
        name: "aa-low-traffic",
        healthy: true,
        own_analysis: false,
        own_traffic: true,
        body: r#"description = "A/A at low traffic: 20 rps with a 1% canary (about 2 canary requests per 10 s)"
duration_s = 1800
rps = 20.0
canary_fraction = 0.01
[baseline]
latency_median_ms = 150.0
latency_sigma = 0.6
error_rate = 0.001
"#,
    },
    Builtin {
        name: "aa-endpoints",
        healthy: true,
        own_analysis: true,
        own_traffic: false,
        body: r#"description = "A/A over three endpoints with their own latency and errors, judged per endpoint too"
[[endpoints]]
name = "/charge"
weight = 0.5
latency_factor = 1.5
error_rate = 0.002
[[endpoints]]
name = "/refund"
weight = 0.1
latency_factor = 2.0
[[endpoints]]
name = "/status"
weight = 0.4
latency_factor = 0.3
error_rate = 0.0005
[analysis]
dimensions = ["endpoint"]
[analysis.policy]
method = "sequential"
alpha = 0.01
max_duration = "30m"
[[analysis.metrics]]
name = "latency"
kind = "latency"
direction = "increase"
tolerance = 0.05
quantiles = [0.5, 0.99]
critical = true
[[analysis.metrics]]
name = "error_rate"
kind = "error_rate"
direction = "increase"
tolerance = 0.0
tolerance_abs = 0.002
critical = true
"#,
    },
    Builtin {
        name: "latency-5",
        healthy: false,
        own_analysis: true,
        own_traffic: false,
        body: r#"description = "latency +5% on every canary request, against a 2% tolerance"
[canary]
latency_multiplier = 1.05
[analysis.policy]
method = "sequential"
alpha = 0.01
max_duration = "30m"
[[analysis.metrics]]
name = "latency"
kind = "latency"
direction = "increase"
tolerance = 0.02
quantiles = [0.5, 0.99]
critical = true
[[analysis.metrics]]
name = "error_rate"
kind = "error_rate"
direction = "increase"
tolerance = 0.0
tolerance_abs = 0.002
critical = true
"#,
    },
    Builtin {
        name: "latency-10",
        healthy: false,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "latency +10% on every canary request (5% tolerance)"
[canary]
latency_multiplier = 1.10
"#,
    },
    Builtin {
        name: "latency-50",
        healthy: false,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "latency +50% on every canary request"
[canary]
latency_multiplier = 1.50
"#,
    },
    Builtin {
        name: "tail",
        healthy: false,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "tail-only regression: 2% of canary requests 3x slower (the median barely moves; p99 does)"
[canary]
tail_fraction = 0.02
tail_multiplier = 3.0
"#,
    },
    Builtin {
        name: "errors-0.5",
        healthy: false,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "errors 0.1% -> 0.5% on the canary (0.2-point tolerance)"
[canary]
error_rate = 0.005
"#,
    },
    Builtin {
        name: "payment-incident",
        healthy: false,
        own_analysis: true,
        own_traffic: false,
        body: r#"description = "the payment incident: canary errors 0.1% -> 15% five minutes in"
[canary]
change_at_s = 300
error_rate = 0.15
[[endpoints]]
name = "/charge"
weight = 0.5
latency_factor = 1.5
[[endpoints]]
name = "/refund"
weight = 0.1
latency_factor = 2.0
[[endpoints]]
name = "/status"
weight = 0.4
latency_factor = 0.3
[analysis]
service = "payment"
baseline_version = "v7"
canary_version = "v8"
dimensions = ["endpoint"]
[analysis.policy]
method = "sequential"
alpha = 0.01
max_duration = "30m"
[[analysis.metrics]]
name = "latency"
kind = "latency"
direction = "increase"
tolerance = 0.10
quantiles = [0.5, 0.99]
critical = true
[[analysis.metrics]]
name = "error_rate"
kind = "error_rate"
direction = "increase"
tolerance = 0.0
tolerance_abs = 0.002
critical = true
"#,
    },
    Builtin {
        name: "bimodal-shift",
        healthy: false,
        own_analysis: false,
        own_traffic: true,
        body: r#"description = "bimodal latency (80% cache hits ~40 ms, 20% misses ~250 ms); the canary's misses are 30% slower"
duration_s = 1800
rps = 100.0
canary_fraction = 0.1
[baseline]
latency_median_ms = 40.0
latency_sigma = 0.3
error_rate = 0.001
slow_fraction = 0.2
slow_median_ms = 250.0
slow_sigma = 0.3
[canary]
slow_multiplier = 1.3
"#,
    },
    Builtin {
        name: "better-canary",
        healthy: true,
        own_analysis: false,
        own_traffic: false,
        body: r#"description = "a better canary: 15% faster, half the errors"
[canary]
latency_multiplier = 0.85
error_rate = 0.0005
"#,
    },
];

/// The built-in scenario called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
