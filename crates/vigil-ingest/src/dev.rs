//! A local Kafka-protocol broker for development and tests: librdkafka's
//! mock cluster (`rdkafka::mocking`), reachable on a port of our choosing.
//!
//! librdkafka's mock brokers listen on ephemeral ports. To serve a fixed
//! port (`vigil dev-broker --port 9092`), the broker advertises that port in
//! its metadata (`rd_kafka_mock_broker_set_host_port`, the one call here
//! that rdkafka does not wrap) and a small TCP proxy forwards the port to
//! the broker's real listener. Clients bootstrap from the fixed port, learn
//! the same address from the metadata, and never see the ephemeral one.
//! When any port will do (port 0: the demo, tests, benches), clients talk
//! to the mock broker's own listener: the proxy would copy every byte
//! through the async runtime once more, on the same cores as the clients.
//!
//! The mock cluster keeps everything in memory and implements the consumer
//! group protocol, offsets and headers, which is all Vigil's ingest needs;
//! it is not a Kafka for production (no persistence, one process).

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::raw::c_int;

use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Vigil's topics, created on start: the default input topics and the
/// dead-letter queue.
pub const VIGIL_TOPICS: [&str; 6] = [
    "vigil.samples",
    "vigil.events",
    "otlp_spans",
    "otlp_metrics",
    "vigil.arrow",
    "vigil.dlq",
];

/// The mock cluster's one broker.
const BROKER_ID: i32 = 1;

/// Why the dev broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    /// librdkafka could not create the mock cluster or a topic.
    #[error("mock cluster")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The client has no mock cluster (cannot happen with
    /// `test.mock.num.brokers` set).
    #[error("the client has no mock cluster")]
    NoMockCluster,
    /// The port cannot be bound, or the broker's listener not found.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The mock cluster's bootstrap address is not `host:port`.
    #[error("unexpected mock bootstrap address `{0}`")]
    Bootstrap(String),
}

/// A running dev broker. Dropping it without [`DevBroker::shutdown`] stops
/// the proxy's listener on the next accept and destroys the cluster.
pub struct DevBroker {
    /// Owns the mock cluster (created by `test.mock.num.brokers`).
    client: BaseProducer,
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for DevBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DevBroker {
    /// Starts a one-broker mock cluster reachable on `127.0.0.1:port` (0:
    /// the mock broker's own listener on a free port, with no proxy) and
    /// creates [`VIGIL_TOPICS`] with `partitions` each.
    ///
    /// # Errors
    ///
    /// The port is taken, or librdkafka cannot create the cluster or topics.
    pub async fn start(port: u16, partitions: i32) -> Result<DevBroker, DevBrokerError> {
        let client: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()?;
        let upstream = {
            let mock = client
                .client()
                .mock_cluster()
                .ok_or(DevBrokerError::NoMockCluster)?;
            let bootstrap = mock.bootstrap_servers();
            // One broker: the list is a single `host:port`.
            if bootstrap.contains(',') || !bootstrap.contains(':') {
                return Err(DevBrokerError::Bootstrap(bootstrap));
            }
            bootstrap
        };
        // Any port (0): the mock broker's own (ephemeral) listener, no
        // proxy. A fixed port: bound here, advertised, proxied.
        let (addr, listener) = if port == 0 {
            let addr = upstream
                .parse()
                .map_err(|_| DevBrokerError::Bootstrap(upstream.clone()))?;
            (addr, None)
        } else {
            let listen = format!("127.0.0.1:{port}");
            let listener =
                TcpListener::bind(&listen)
                    .await
                    .map_err(|source| DevBrokerError::Bind {
                        addr: listen.clone(),
                        source,
                    })?;
            let addr = listener
                .local_addr()
                .map_err(|source| DevBrokerError::Bind {
                    addr: listen,
                    source,
                })?;
            advertise(&client, "127.0.0.1", addr.port())?;
            (addr, Some(listener))
        };
        let broker = DevBroker {
            client,
            addr,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        for topic in VIGIL_TOPICS {
            broker.create_topic(topic, partitions)?;
        }
        if let Some(listener) = listener {
            broker.tracker.spawn(proxy(
                listener,
                upstream,
                broker.cancel.clone(),
                broker.tracker.clone(),
            ));
        }
        Ok(broker)
    }

    /// Creates a topic (replication factor 1).
    ///
    /// # Errors
    ///
    /// When the mock cluster refuses it (a bad name or partition count).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), DevBrokerError> {
        let mock = self
            .client
            .client()
            .mock_cluster()
            .ok_or(DevBrokerError::NoMockCluster)?;
        mock.create_topic(topic, partitions, 1)?;
        Ok(())
    }

    /// The bootstrap address clients use: `127.0.0.1:port`.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the proxy, waits for its connections to close, and destroys
    /// the cluster.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Makes the mock broker advertise `host:port` in its metadata.
#[allow(unsafe_code)] // The one FFI call rdkafka does not wrap; see below.
fn advertise(client: &BaseProducer, host: &str, port: u16) -> Result<(), DevBrokerError> {
    let host = CString::new(host).map_err(|_| DevBrokerError::Bootstrap(host.to_owned()))?;
    let native = client.client().native_ptr();
    // SAFETY: `native` is the live handle of `client`, borrowed for this
    // whole function, so the handle and the mock cluster it owns (created by
    // `test.mock.num.brokers`) outlive both calls. `rd_kafka_handle_mock_cluster`
    // only reads the handle and returns null when there is no cluster, which
    // is checked. `rd_kafka_mock_broker_set_host_port` takes the cluster's
    // lock, copies `host` (a NUL-terminated string that lives until the end
    // of this function) into the broker's fixed-size buffer with bounds
    // (`rd_snprintf`), and ignores unknown broker ids.
    unsafe {
        let cluster = rdkafka_sys::rd_kafka_handle_mock_cluster(native);
        if cluster.is_null() {
            return Err(DevBrokerError::NoMockCluster);
        }
        rdkafka_sys::rd_kafka_mock_broker_set_host_port(
            cluster,
            BROKER_ID,
            host.as_ptr(),
            c_int::from(port),
        );
    }
    Ok(())
}

/// Forwards every connection on `listener` to the mock broker's listener.
async fn proxy(
    listener: TcpListener,
    upstream: String,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (mut client, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                debug!(%error, "dev broker accept failed");
                continue;
            }
        };
        let upstream = upstream.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut broker = match TcpStream::connect(&upstream).await {
                Ok(s) => s,
                Err(error) => {
                    debug!(%error, %peer, "cannot reach the mock broker");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = broker.set_nodelay(true);
            tokio::select! {
                () = cancel.cancelled() => {}
                r = tokio::io::copy_bidirectional(&mut client, &mut broker) => {
                    if let Err(error) = r {
                        debug!(%error, %peer, "dev broker connection closed");
                    }
                }
            }
        });
    }
}
