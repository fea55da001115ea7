//! `vigil verdict ID` and `vigil watch`: terminal clients of the gRPC API.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use vigil_proto::v1::vigil_service_client::VigilServiceClient;
use vigil_proto::v1::{self, GetVerdictRequest, WatchVerdictsRequest};

/// Where the server is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// gRPC address of `vigil serve`.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "VIGIL_ADDR")]
    addr: String,
    /// Bearer token (when the server requires one on reads).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `vigil verdict` arguments.
#[derive(Debug, clap::Args)]
pub struct VerdictArgs {
    /// Analysis id.
    id: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `vigil watch` arguments.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only analyses of this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this analysis.
    #[arg(long)]
    analysis: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn connect(c: &ClientArgs) -> anyhow::Result<VigilServiceClient<Channel>> {
    let channel = Channel::from_shared(c.addr.clone())
        .with_context(|| format!("invalid address {}", c.addr))?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", c.addr))?;
    Ok(VigilServiceClient::new(channel))
}

fn request<T>(msg: T, c: &ClientArgs) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = &c.token {
        let v: MetadataValue<_> = format!("Bearer {t}")
            .parse()
            .context("the token is not a valid header value")?;
        req.metadata_mut().insert("authorization", v);
    }
    Ok(req)
}

fn verdict_name(v: i32) -> &'static str {
    v1::Verdict::try_from(v).map_or("UNKNOWN", |v| v.as_str_name())
}

/// Evidence so far: the smallest per-arm sample count over metrics.
fn evidence(r: &v1::VerdictReport) -> String {
    let overall: Vec<_> = r.metrics.iter().filter(|m| m.dimension.is_none()).collect();
    if overall.is_empty() {
        return "no data yet".to_owned();
    }
    overall
        .iter()
        .map(|m| format!("{}: {}/{}", m.name, m.n_canary, m.n_baseline))
        .collect::<Vec<_>>()
        .join(", ")
        + " (canary/baseline samples)"
}

/// One readable block for a report.
pub fn render(r: &v1::VerdictReport) -> String {
    let mut s = format!(
        "{} ({}): {}\n  {}\n  evidence: {}\n",
        r.analysis_id,
        r.service,
        verdict_name(r.verdict),
        r.reason,
        evidence(r)
    );
    for m in &r.metrics {
        let status = v1::MetricStatus::try_from(m.status).map_or("?", |s| s.as_str_name());
        let dim = m
            .dimension
            .as_deref()
            .map(|d| format!(" [{d}]"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  - {}{}: {} {}\n",
            m.name, dim, status, m.summary
        ));
    }
    s
}

fn report_json(r: &v1::VerdictReport) -> serde_json::Value {
    serde_json::json!({
        "analysis_id": r.analysis_id,
        "service": r.service,
        "verdict": verdict_name(r.verdict),
        "reason": r.reason,
        "decided_at": r.decided_at,
        "evaluated_at": r.evaluated_at,
        "worst_dimension": r.worst_dimension,
        "metrics": r.metrics.iter().map(|m| serde_json::json!({
            "name": m.name,
            "dimension": m.dimension,
            "status": v1::MetricStatus::try_from(m.status).map_or("?", |s| s.as_str_name()),
            "critical": m.critical,
            "e_value": m.e_value,
            "p_value": m.p_value,
            "n_canary": m.n_canary,
            "n_baseline": m.n_baseline,
            "summary": m.summary,
        })).collect::<Vec<_>>(),
    })
}

/// `vigil verdict ID`.
pub fn verdict(args: &VerdictArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut client = connect(&args.client).await?;
        let r = client
            .get_verdict(request(
                GetVerdictRequest {
                    analysis_id: args.id.clone(),
                },
                &args.client,
            )?)
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
            .into_inner();
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &report_json(&r))?;
            writeln!(out)?;
        } else {
            write!(out, "{}", render(&r))?;
        }
        Ok(())
    })
}

/// `vigil watch`: redraws every analysis on each change when stdout is a
/// terminal, else prints each change.
pub fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut client = connect(&args.client).await?;
        let mut stream = client
            .watch_verdicts(request(
                WatchVerdictsRequest {
                    analysis_id: args.analysis.clone().unwrap_or_default(),
                    service: args.service.clone().unwrap_or_default(),
                },
                &args.client,
            )?)
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
            .into_inner();
        let live = std::io::stdout().is_terminal();
        let mut latest: std::collections::BTreeMap<String, v1::VerdictReport> = Default::default();
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let Some(r) = next.map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
            else {
                return Ok(());
            };
            let mut out = std::io::stdout().lock();
            if live {
                latest.insert(r.analysis_id.clone(), r);
                write!(out, "\x1b[2J\x1b[H")?;
                writeln!(
                    out,
                    "vigil watch: {} analyses (Ctrl-C to stop)\n",
                    latest.len()
                )?;
                for r in latest.values() {
                    write!(out, "{}", render(r))?;
                }
            } else {
                writeln!(out, "{}", serde_json::to_string(&report_json(&r))?)?;
            }
            out.flush()?;
        }
    })
}
