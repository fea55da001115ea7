//! TLS with rustls on both ports, from a certificate and key in PEM files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

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
