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
            .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(grpc_listener)), {
                let token = token.clone();
                async move { token.cancelled().await }
            });
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
