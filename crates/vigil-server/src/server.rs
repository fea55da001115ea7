//! Binding, serving both ports (optionally with TLS), graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, ServerTlsConfig};
use vigil_proto::v1::vigil_service_server::VigilServiceServer;

use crate::config::Config;
use crate::core::Vigil;
use crate::grpc::Service;
use crate::verdict_route::VerdictRoute;

/// Longest wait for in-flight HTTP requests once shutdown starts.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A port cannot be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The tokens file cannot be read.
    #[error("reading auth.tokens_file: {0}")]
    Tokens(std::io::Error),
    /// The TLS files cannot be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reflection could not be built.
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// gRPC serving failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// HTTP serving failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// A task panicked.
    #[error("server task failed: {0}")]
    Task(String),
}

/// A handle on a running (or bound) server: what plug-ins (the Kafka
/// consumer) and tests need.
#[derive(Debug, Clone)]
pub struct Handle {
    vigil: Arc<Vigil>,
}

impl Handle {
    /// The shared state: store, ingest path, analyses, metrics, readiness.
    pub fn vigil(&self) -> &Arc<Vigil> {
        &self.vigil
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<vigil_core::store::Store> {
        &self.vigil.store
    }

    /// The process's metrics registry.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.vigil.metrics
    }

    /// A readiness gate named `name`, closed until its owner opens it;
    /// `/readyz` answers 200 when every gate is open.
    pub fn readiness_gate(&self, name: &str) -> Arc<std::sync::atomic::AtomicBool> {
        self.vigil.readiness.gate(name)
    }

    /// Starts a graceful shutdown (as SIGINT/SIGTERM do).
    pub fn shutdown(&self) {
        self.vigil.shutdown.cancel();
    }
}

/// A bound server.
#[derive(Debug)]
pub struct Server {
    vigil: Arc<Vigil>,
    grpc: std::net::TcpListener,
    http: std::net::TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
}

fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), ServeError> {
    let err = |source| ServeError::Bind { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    let bound = l.local_addr().map_err(err)?;
    Ok((l, bound))
}

impl Server {
    /// Binds both ports (port 0 picks a free one; see [`Server::grpc_addr`]).
    pub fn bind(config: Config) -> Result<Self, ServeError> {
        let tokens = crate::auth::load_tokens(&config.auth).map_err(ServeError::Tokens)?;
        let (grpc, grpc_addr) = bind(config.grpc_addr)?;
        let (http, http_addr) = bind(config.http_addr)?;
        Ok(Self {
            vigil: Vigil::new(config, tokens),
            grpc,
            http,
            grpc_addr,
            http_addr,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// A handle for plug-ins and shutdown.
    pub fn handle(&self) -> Handle {
        Handle {
            vigil: self.vigil.clone(),
        }
    }

    /// Serves until `signal` completes or [`Handle::shutdown`] is called:
    /// then stops accepting, ends `WatchVerdicts` streams, finishes
    /// in-flight requests and returns.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let vigil = self.vigil.clone();
        let token = vigil.shutdown.clone();
        {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = signal => token.cancel(),
                    () = token.cancelled() => {}
                }
            });
        }
        let ticker = tokio::spawn(vigil.clone().run_ticker());

        let tls = match (&vigil.config.tls.cert, &vigil.config.tls.key) {
            (Some(c), Some(k)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p)
                        .map_err(|e| ServeError::Tls(format!("reading {}: {e}", p.display())))
                };
                Some((read(c)?, read(k)?))
            }
            _ => None,
        };

        // gRPC: the service, health, reflection.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<VigilServiceServer<Service>>().await;
        // Both reflection versions: v1, and v1alpha that many deployed
        // clients (grpcurl before 1.9) still speak.
        let reflection_builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(vigil_proto::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection = reflection_builder()
            .build_v1()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let reflection_alpha = reflection_builder()
            .build_v1alpha()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let limit = vigil.config.max_grpc_message_bytes;
        let service = VerdictRoute::new(Service::new(vigil.clone()), limit);
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = &tls {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .map_err(|e| ServeError::Tls(e.to_string()))?;
        }
        let grpc_listener =
            tokio::net::TcpListener::from_std(self.grpc).map_err(|source| ServeError::Bind {
                addr: self.grpc_addr,
                source,
            })?;
        let grpc = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(service)
            .serve_with_incoming_shutdown(
                one_write(nodelay(TcpListenerStream::new(grpc_listener))),
                {
                    let token = token.clone();
                    async move { token.cancelled().await }
                },
            );
        let grpc = tokio::spawn(grpc);

        // HTTP.
        let app = crate::http::router(vigil.clone()).into_make_service();
        let handle = axum_server::Handle::new();
        {
            let handle = handle.clone();
            let token = token.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                handle.graceful_shutdown(Some(HTTP_DRAIN));
            });
        }
        let http = match tls {
            Some((cert, key)) => {
                // One process-wide crypto provider; an error only means
                // one is installed already.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                    .await
                    .map_err(|e| ServeError::Tls(e.to_string()))?;
                let server = axum_server::tls_rustls::from_tcp_rustls(self.http, config)
                    .map_err(ServeError::Http)?
                    .handle(handle);
                tokio::spawn(async move { server.serve(app).await })
            }
            None => {
                let server = axum_server::from_tcp(self.http)
                    .map_err(ServeError::Http)?
                    .handle(handle);
                tokio::spawn(async move { server.serve(app).await })
            }
        };

        let (g, h) = tokio::join!(grpc, http);
        token.cancel();
        let _ = ticker.await;
        g.map_err(|e| ServeError::Task(e.to_string()))??;
        h.map_err(|e| ServeError::Task(e.to_string()))?
            .map_err(ServeError::Http)?;
        Ok(())
    }
}

/// Accepted connections with Nagle's algorithm off: a response written as
/// several small HTTP/2 frames must not wait for the client's delayed ACK.
/// (tonic sets this only on listeners it binds itself.)
pub fn nodelay(
    incoming: TcpListenerStream,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    incoming.map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Completes on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Accepted connections as [`OneWrite`]s.
pub fn one_write(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<OneWrite>> {
    use tokio_stream::StreamExt as _;
    incoming.map(|conn| conn.map(OneWrite::new))
}

/// A gRPC connection that tells HTTP/2 it has no vectored writes, so that
/// a response goes out in one write.
///
/// h2 queues a DATA frame's payload by reference instead of copying it
/// into its write buffer once it reaches a threshold: 256 bytes on a
/// socket with vectored writes, 1,024 on one without. While such a payload
/// is queued, h2 buffers no further frame, so the trailers that end every
/// gRPC response wait for a write of their own. A verdict is about 500
/// bytes: on a plain `TcpStream` each GetVerdict answer took two `writev`
/// calls and, with `TCP_NODELAY`, two packets (measured: 1.94 writes per
/// call against 1.0 for the 2-byte health check, `docs/BENCHMARKS.md`).
/// Copying up to 1 KiB into the buffer costs less than a system call; a
/// larger message is still sent from where it is.
#[derive(Debug)]
pub struct OneWrite<T = tokio::net::TcpStream>(T);

impl<T> OneWrite<T> {
    /// `io`, with its vectored writes hidden.
    pub fn new(io: T) -> Self {
        Self(io)
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for OneWrite<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for OneWrite<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for OneWrite<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

/// The data behind `vigil bench api`'s verdicts, for the one-write test.
#[cfg(test)]
#[path = "../../../src/bench/api_fixture.rs"]
mod api_fixture;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
    use vigil_core::ServiceName;
    use vigil_proto::v1::vigil_service_client::VigilServiceClient;
    use vigil_proto::v1::GetVerdictRequest;

    use super::*;

    use super::api_fixture;

    /// One end of an in-memory connection that counts the writes made to
    /// it and, like a `TcpStream`, offers vectored writes.
    struct Counting {
        io: DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.io).poll_write(cx, buf);
            if r.is_ready() {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            r
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            // One system call for all the slices, as writev; the duplex
            // takes them as one buffer.
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.as_mut().poll_write(cx, &all)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    impl tonic::transport::server::Connected for Counting {
        type ConnectInfo = ();

        fn connect_info(&self) {}
    }

    /// Writes the server made for `CALLS` GetVerdict calls, one after the
    /// other on one connection (after a first call that settles the
    /// connection), and the size of the verdict.
    async fn writes_per_call(one_write: bool) -> (f64, usize) {
        const CALLS: usize = 20;
        let config = Config {
            slice_grace: Duration::ZERO,
            ..Config::default()
        };
        let vigil: Arc<Vigil> = Vigil::new(config, Vec::new());
        let t0 = 1_800_000_000.0;
        let spec = serde_json::from_value(serde_json::json!({
            "service": "payment",
            "baseline_version": "v7",
            "canary_version": "v8",
            "metrics": [
                {"name": "latency", "kind": "latency", "quantiles": [0.5, 0.99]},
                {"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002},
            ],
        }))
        .unwrap();
        let id = vigil
            .create_from(None, spec, "test", t0)
            .unwrap()
            .id
            .to_string();
        // Twelve slices of both metrics, judged: a full report (the data
        // behind every verdict of `vigil bench api`).
        let service = ServiceName::new("payment").unwrap();
        let samples = api_fixture::service_samples(&service, t0).unwrap();
        assert_eq!(vigil.ingest.record("test", &samples).rejected, 0);
        vigil.tick(&mut crate::core::TickState::default());
        let size = vigil.analyses.get(&id).unwrap().published().encoded().len();
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let writes = Arc::new(AtomicUsize::new(0));
        let counting = Counting {
            io: server_io,
            writes: writes.clone(),
        };
        let route = VerdictRoute::new(Service::new(vigil.clone()), 1 << 20);
        let server = tonic::transport::Server::builder().add_service(route);
        let serving = if one_write {
            let incoming = tokio_stream::iter([Ok::<_, io::Error>(OneWrite::new(counting))]);
            tokio::spawn(server.serve_with_incoming(incoming))
        } else {
            let incoming = tokio_stream::iter([Ok::<_, io::Error>(counting)]);
            tokio::spawn(server.serve_with_incoming(incoming))
        };
        let mut client_io = Some(client_io);
        let channel = tonic::transport::Endpoint::from_static("http://in-memory")
            .connect_with_connector(tower::service_fn(move |_| {
                let io = client_io.take();
                async move {
                    io.map(hyper_util::rt::TokioIo::new)
                        .ok_or_else(|| io::Error::other("one connection only"))
                }
            }))
            .await
            .unwrap();
        let client = VigilServiceClient::new(channel);
        let call = |mut client: VigilServiceClient<tonic::transport::Channel>| {
            let id = id.clone();
            async move {
                client
                    .get_verdict(GetVerdictRequest { analysis_id: id })
                    .await
                    .unwrap()
            }
        };
        call(client.clone()).await;
        let before = writes.load(Ordering::Relaxed);
        for _ in 0..CALLS {
            call(client.clone()).await;
        }
        let per_call = (writes.load(Ordering::Relaxed) - before) as f64 / CALLS as f64;
        drop(client);
        serving.abort();
        (per_call, size)
    }

    /// A verdict of a few hundred bytes goes out in one write (a system
    /// call, a packet), not two: without [`OneWrite`], h2 sends the
    /// trailers after the message in a write of their own.
    #[tokio::test]
    async fn a_verdict_goes_out_in_one_write() {
        let (plain, size) = writes_per_call(false).await;
        assert!((256..1024).contains(&size), "verdict of {size} bytes");
        assert!(plain >= 2.0, "{plain} writes per call on a plain socket");
        let (one, _) = writes_per_call(true).await;
        assert!(one <= 1.0, "{one} writes per call through OneWrite");
    }
}
