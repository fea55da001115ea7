//! The HTML report of `vigil simulate --html`: one self-contained page,
//! SVG plots drawn with `plotters` (SVG backend only, no fonts loaded).

use anyhow::anyhow;
use plotters::prelude::*;
use vigil_core::{Method, Verdict};
use vigil_sim::{Arm, Generator, Plan, Replication, Scenario, Summary};

use super::{method_name, pct, secs};

const W: u32 = 820;
const H: u32 = 340;

fn colour(m: Method) -> RGBColor {
    match m {
        Method::Sequential => RGBColor(31, 119, 180),
        Method::FixedHorizon => RGBColor(255, 127, 14),
        Method::Kayenta => RGBColor(44, 160, 44),
    }
}

fn verdict_colour(v: Verdict) -> RGBColor {
    match v {
        Verdict::Rollback => RGBColor(214, 39, 40),
        Verdict::Promote => RGBColor(44, 160, 44),
        Verdict::Inconclusive => RGBColor(148, 103, 189),
        Verdict::Continue => RGBColor(160, 160, 160),
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the report: {e}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Share of runs with `verdict` reached by each time, per method.
fn decision_curves(
    reps: &[Replication],
    methods: &[Method],
    verdict: Verdict,
) -> Vec<(Method, Vec<(f64, f64)>)> {
    let n = reps.len().max(1) as f64;
    methods
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let mut times: Vec<f64> = reps
                .iter()
                .filter_map(|r| r.methods.get(i))
                .filter(|r| r.verdict == verdict)
                .filter_map(|r| r.decision_s)
                .collect();
            times.sort_by(f64::total_cmp);
            let mut points = vec![(times.first().copied().unwrap_or(0.0).min(0.0), 0.0)];
            for (k, t) in times.iter().enumerate() {
                points.push((*t, k as f64 / n));
                points.push((*t, (k + 1) as f64 / n));
            }
            (m, points)
        })
        .collect()
}

fn decision_plot(
    reps: &[Replication],
    methods: &[Method],
    verdict: Verdict,
    span: (f64, f64),
) -> anyhow::Result<String> {
    let curves = decision_curves(reps, methods, verdict);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("share of runs with {} by time", verdict.as_str()),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(span.0..span.1, 0f64..1.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("stream seconds after the change")
            .y_desc("share of runs")
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .draw()
            .map_err(plot_err)?;
        for (m, mut points) in curves {
            if let Some(&(_, last)) = points.last() {
                points.push((span.1, last));
            }
            let c = colour(m);
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(method_name(m))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn shares_plot(sums: &[Summary]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let h = 90 + 50 * sums.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let n = sums.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("final verdicts", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..100.0, 0f64..n)
            .map_err(plot_err)?;
        let names: Vec<&str> = sums.iter().map(|s| method_name(s.method)).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(sums.len() * 2 + 1)
            .y_label_formatter(&|y| {
                let i = (y - 0.5).round();
                if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].to_owned()
                } else {
                    String::new()
                }
            })
            .x_desc("% of runs")
            .draw()
            .map_err(plot_err)?;
        for (i, s) in sums.iter().enumerate() {
            let y0 = i as f64 + 0.15;
            let y1 = i as f64 + 0.85;
            let mut x = 0.0;
            for (v, share) in [
                (Verdict::Rollback, s.rollback_rate),
                (Verdict::Promote, s.promote_rate),
                (Verdict::Inconclusive, s.inconclusive_rate),
                (Verdict::Continue, s.continue_rate),
            ] {
                let w = share * 100.0;
                if w > 0.0 {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x, y0), (x + w, y1)],
                            verdict_colour(v).filled(),
                        )))
                        .map_err(plot_err)?;
                }
                x += w;
            }
        }
        for v in [
            Verdict::Rollback,
            Verdict::Promote,
            Verdict::Inconclusive,
            Verdict::Continue,
        ] {
            let c = verdict_colour(v);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(plot_err)?
                .label(v.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Latency densities of the baseline and of the canary under the change,
/// over log-spaced bins, from the first replication's stream.
fn latency_plot(scenario: &Scenario, seed: u64) -> anyhow::Result<String> {
    let mut g = Generator::new(scenario, seed, 0, 10);
    let (lo, hi, bins) = (0.0f64, 4.0f64, 160usize);
    let mut counts = [vec![0u64; bins], vec![0u64; bins], vec![0u64; bins]];
    while let Some(d) = g.next_slice() {
        for p in &d.parts {
            let arm = match (p.arm, p.changed) {
                (Arm::Baseline, _) => 0,
                (Arm::Canary, false) => 2,
                (Arm::Canary, true) => 1,
            };
            for &(u, c) in &p.latencies {
                let x = g.latency_ms(u).max(1e-3).log10();
                let b = (((x - lo) / (hi - lo)) * bins as f64).floor();
                let b = (b.max(0.0) as usize).min(bins - 1);
                counts[arm][b] += c;
            }
        }
    }
    let density = |c: &[u64]| -> Vec<(f64, f64)> {
        let total = c.iter().sum::<u64>().max(1) as f64;
        let width = (hi - lo) / bins as f64;
        c.iter()
            .enumerate()
            .map(|(i, &k)| (lo + (i as f64 + 0.5) * width, k as f64 / total / width))
            .collect()
    };
    let series = [
        ("baseline", density(&counts[0]), RGBColor(31, 119, 180)),
        (
            "canary (under the change)",
            density(&counts[1]),
            RGBColor(214, 39, 40),
        ),
    ];
    let ymax = series
        .iter()
        .flat_map(|(_, d, _)| d.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        * 1.1;
    let used = counts[0]
        .iter()
        .zip(&counts[1])
        .enumerate()
        .filter(|(_, (a, b))| **a + **b > 0)
        .map(|(i, _)| i);
    let first = used.clone().min().unwrap_or(0);
    let last = used.max().unwrap_or(bins - 1);
    let x0 = lo + (first.saturating_sub(2)) as f64 * (hi - lo) / bins as f64;
    let x1 = lo + ((last + 3).min(bins)) as f64 * (hi - lo) / bins as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency per arm (replication 0)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0f64..ymax.max(1e-9))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log scale)")
            .y_desc("density per decade")
            .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
            .draw()
            .map_err(plot_err)?;
        for (name, points, c) in series {
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The whole page.
pub fn report(
    scenario: &Scenario,
    toml: &str,
    plan: &Plan,
    reps: &[Replication],
    sums: &[Summary],
) -> anyhow::Result<String> {
    let all: Vec<f64> = reps
        .iter()
        .flat_map(|r| r.methods.iter().filter_map(|m| m.decision_s))
        .collect();
    let start = all.iter().copied().fold(0.0f64, f64::min);
    let end = all
        .iter()
        .copied()
        .fold(scenario.duration_s - scenario.canary.change_at_s, f64::max);
    let span = (start, end.max(start + 1.0));
    let rollback = decision_plot(reps, &plan.methods, Verdict::Rollback, span)?;
    let promote = decision_plot(reps, &plan.methods, Verdict::Promote, span)?;
    let shares = shares_plot(sums)?;
    let latency = latency_plot(scenario, plan.seed)?;

    let mut rows = String::new();
    let header: String = sums
        .iter()
        .map(|s| format!("<th>{}</th>", method_name(s.method)))
        .collect();
    type Row = (&'static str, fn(&Summary) -> String);
    let fields: [Row; 8] = [
        ("ROLLBACK", |s| pct(s.rollback_rate)),
        ("PROMOTE", |s| pct(s.promote_rate)),
        ("INCONCLUSIVE", |s| pct(s.inconclusive_rate)),
        ("CONTINUE (no verdict)", |s| pct(s.continue_rate)),
        ("median decision", |s| secs(s.median_decision_s)),
        ("p90 decision", |s| secs(s.p90_decision_s)),
        (
            "ROLLBACK within 10 min",
            |s| pct(s.rollback_within_10m_rate),
        ),
        ("exposure before ROLLBACK (canary requests)", |s| {
            s.exposure_requests
                .map_or_else(|| "-".to_owned(), |e| format!("{e:.0}"))
        }),
    ];
    for (label, f) in fields {
        rows.push_str(&format!("<tr><td>{label}</td>"));
        for s in sums {
            rows.push_str(&format!("<td>{}</td>", f(s)));
        }
        rows.push_str("</tr>\n");
    }
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vigil simulate: {name}</title>
<style>
body {{ font-family: sans-serif; max-width: 880px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
figure {{ margin: 1.5em 0; }}
</style></head><body>
<h1>{name}</h1>
<p>{description}</p>
<p>{runs} seeded replications (seed {seed}) of {duration:.0} s of stream each, at alpha {alpha},
judged by Vigil's own store and judge in stream time. Decision times are stream seconds after
the change at t = {change:.0} s.</p>
<table><tr><th></th>{header}</tr>
{rows}</table>
<figure>{shares}</figure>
<figure>{rollback}</figure>
<figure>{promote}</figure>
<figure>{latency}</figure>
<h2>Scenario</h2>
<pre>{toml}</pre>
</body></html>
"#,
        name = escape(&scenario.name),
        description = escape(&scenario.description),
        runs = plan.runs,
        seed = plan.seed,
        duration = scenario.duration_s,
        alpha = scenario.analysis.policy.alpha,
        change = scenario.canary.change_at_s,
        toml = escape(toml),
    ))
}
