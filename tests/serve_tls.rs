//! TLS with rustls on both ports, from a certificate and key in PEM files;
//! `vigil verdict` and `vigil watch` against it with a private CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serve_support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use vigil_proto::v1;
use vigil_proto::v1::vigil_service_client::VigilServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_speak_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let dir = std::env::temp_dir().join(format!("vigil-serve-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut config = test_config();
    config.tls.cert = Some(dir.join("cert.pem"));
    config.tls.key = Some(dir.join("key.pem"));
    let server = start(config).await;

    // gRPC over TLS, trusting only our certificate.
    let channel = Channel::from_shared(format!("https://localhost:{}", server.grpc.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let list = VigilServiceClient::new(channel)
        .list_analyses(v1::ListAnalysesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.analyses.is_empty());

    // HTTP over TLS: a plain HTTP/1.1 request through a rustls client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = bounded("TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    bounded("HTTPS response", tls.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    // Plain text is refused on the TLS port.
    let plain = reqwest::get(server.url("/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private CA, as a platform team runs one: its PEM certificate and the
/// means to sign server certificates.
fn private_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// A server certificate for `localhost` signed by `ca`, written to `dir`:
/// (cert, key) paths.
fn server_cert(dir: &Scratch, ca: &rcgen::Issuer<'_, rcgen::KeyPair>) -> (PathBuf, PathBuf) {
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (
        dir.write("server.pem", &cert.pem()),
        dir.write("server-key.pem", &key.serialize_pem()),
    )
}

/// Runs `vigil ARGS` with `env`, bounded by the client's own connect
/// timeout; the system's CA store is replaced by `system_cas` so the
/// outcome does not depend on the machine.
async fn vigil(
    args: Vec<String>,
    env: Vec<(&'static str, PathBuf)>,
    system_cas: &Path,
) -> std::process::Output {
    let system_cas = system_cas.to_owned();
    bounded(
        "vigil client",
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(VIGIL);
            cmd.args(&args)
                .env_remove("VIGIL_CA_CERT")
                .env_remove("VIGIL_TLS_DOMAIN")
                .env_remove("VIGIL_TOKEN")
                .env_remove("SSL_CERT_DIR")
                .env("SSL_CERT_FILE", &system_cas);
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.output().unwrap()
        }),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_clients_trust_a_private_ca() {
    let dir = Scratch::new("client-tls");
    let (ca_pem, ca) = private_ca("Vigil test CA");
    let ca_file = dir.write("ca.pem", &ca_pem);
    // What the machine trusts: some other CA, never ours.
    let (other_pem, _) = private_ca("Someone else's CA");
    let system_cas = dir.write("system.pem", &other_pem);
    let (cert, key) = server_cert(&dir, &ca);
    let mut config = test_config();
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    config.auth.tokens = vec!["s3cret".to_owned()];
    config.auth.require_on_reads = true;
    let server = start(config).await;
    let port = server.grpc.port();

    // An analysis to read, created over TLS by a tonic client.
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut create = tonic::Request::new(v1::CreateAnalysisRequest {
        spec: Some(v1::AnalysisSpec {
            service: "payment".into(),
            baseline_version: Some("v7".into()),
            canary_version: "v8".into(),
            metrics: vec![v1::MetricSpec {
                name: "latency".into(),
                kind: v1::MetricKind::Latency as i32,
                ..Default::default()
            }],
            policy: None,
            dimensions: vec![],
        }),
        id: "pay-tls".into(),
    });
    create
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    VigilServiceClient::new(channel)
        .create_analysis(create)
        .await
        .unwrap();

    // `vigil verdict` with the CA from the flag, by host name.
    let args = |addr: &str, extra: &[&str]| {
        let mut a: Vec<String> = [
            "verdict", "pay-tls", "--json", "--token", "s3cret", "--addr", addr,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let by_name = format!("https://localhost:{port}");
    let ca_arg = ca_file.to_str().unwrap();
    let out = vigil(args(&by_name, &["--ca-cert", ca_arg]), vec![], &system_cas).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["analysis_id"], "pay-tls");
    assert_eq!(v["verdict"], "CONTINUE");

    // By IP address, the certificate's name given with --tls-domain, the CA
    // from VIGIL_CA_CERT.
    let by_ip = format!("https://127.0.0.1:{port}");
    let out = vigil(
        args(&by_ip, &["--tls-domain", "localhost"]),
        vec![("VIGIL_CA_CERT", ca_file.clone())],
        &system_cas,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "CONTINUE");

    // Without the CA: refused, saying why and what to do.
    let out = vigil(args(&by_name, &[]), vec![], &system_cas).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("--ca-cert"), "{stderr}");
    // The right CA but a name the certificate does not carry.
    let out = vigil(args(&by_ip, &["--ca-cert", ca_arg]), vec![], &system_cas).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--tls-domain"), "{stderr}");
    // A CA file is meaningless for plain text.
    let plain = format!("http://localhost:{port}");
    let out = vigil(args(&plain, &["--ca-cert", ca_arg]), vec![], &system_cas).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("need an https:// address"), "{stderr}");

    // `vigil watch` over TLS prints the analysis' current verdict first.
    let mut watch = tokio::task::spawn_blocking({
        let (by_name, ca_file, system_cas) = (by_name.clone(), ca_file.clone(), system_cas.clone());
        move || {
            Command::new(VIGIL)
                .args([
                    "watch",
                    "--analysis",
                    "pay-tls",
                    "--addr",
                    &by_name,
                    "--token",
                    "s3cret",
                ])
                .env("VIGIL_CA_CERT", &ca_file)
                .env("SSL_CERT_FILE", &system_cas)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let first = bounded(
        "the first watch line",
        tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next()),
    )
    .await
    .unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let line = first.expect("watch printed nothing").unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["analysis_id"], "pay-tls");
    assert_eq!(v["verdict"], "CONTINUE");

    server.stop().await;
}
