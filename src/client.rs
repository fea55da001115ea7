//! `vigil verdict ID` and `vigil watch`: terminal clients of the gRPC API.
//!
//! An `https://` address speaks TLS (rustls): the server's certificate is
//! checked against the system's trusted CAs, or only against `--ca-cert`
//! when given (a private CA), for the address's host name or `--tls-domain`.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use vigil_proto::v1::vigil_service_client::VigilServiceClient;
use vigil_proto::v1::{self, GetVerdictRequest, WatchVerdictsRequest};

/// Where the server is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// gRPC address of `vigil serve`; `https://` for a server with TLS.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "VIGIL_ADDR")]
    addr: String,
    /// Bearer token (when the server requires one on reads).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA(s) that signed the server's certificate, trusted
    /// instead of the system's CAs (for a private CA). Needs an https://
    /// address.
    #[arg(long, env = "VIGIL_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host of
    /// --addr (e.g. connecting by IP address or through a tunnel).
    #[arg(long, env = "VIGIL_TLS_DOMAIN", value_name = "NAME")]
    tls_domain: Option<String>,
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

/// How long a connection may take before the client gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint of `c.addr`, with TLS for `https://`.
fn endpoint(c: &ClientArgs) -> anyhow::Result<Endpoint> {
    let endpoint = Channel::from_shared(c.addr.clone())
        .with_context(|| format!("invalid address {}", c.addr))?
        .connect_timeout(CONNECT_TIMEOUT);
    let https = endpoint.uri().scheme_str() == Some("https");
    if !https {
        if c.ca_cert.is_some() || c.tls_domain.is_some() {
            anyhow::bail!(
                "--ca-cert and --tls-domain need an https:// address, not {}",
                c.addr
            );
        }
        return Ok(endpoint);
    }
    let mut tls = match &c.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("{} holds no PEM certificate", path.display());
            }
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(name) = &c.tls_domain {
        tls = tls.domain_name(name.clone());
    }
    endpoint.tls_config(tls).map_err(|e| {
        let hint = if c.ca_cert.is_none() {
            "\n  hint: give the server's CA with --ca-cert FILE (or VIGIL_CA_CERT)"
        } else {
            ""
        };
        anyhow::anyhow!("setting up TLS for {}: {}{hint}", c.addr, chain(&e))
    })
}

/// `e` and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

async fn connect(c: &ClientArgs) -> anyhow::Result<VigilServiceClient<Channel>> {
    let channel = endpoint(c)?.connect().await.map_err(|e| {
        let why = chain(&e);
        let hint = if !why.contains("certificate") {
            ""
        } else if why.contains("not valid for name") || why.contains("NotValidForName") {
            "\n  hint: the certificate is not issued for this host name: \
             name the one it carries with --tls-domain NAME"
        } else if c.ca_cert.is_none() {
            "\n  hint: the server's certificate is not signed by a CA this \
             system trusts: give its CA with --ca-cert FILE (or VIGIL_CA_CERT)"
        } else {
            "\n  hint: the server's certificate is not signed by the CA of --ca-cert"
        };
        anyhow::anyhow!("connecting to {}: {why}{hint}", c.addr)
    })?;
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
