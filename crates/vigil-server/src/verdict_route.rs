//! GetVerdict without cloning or encoding the report on each read.
//!
//! tonic's generated server encodes every response with prost: for
//! GetVerdict that is a clone of a ~500-byte report holding a dozen
//! strings, its encoding and its drop, on every read, of a value that only
//! changes on a judge tick. [`Published`](crate::registry::Published)
//! keeps the encoded message, computed once per change, and
//! [`VerdictRoute`] sends those bytes: it wraps the generated server,
//! answers `/vigil.v1.VigilService/GetVerdict` through tonic's own
//! `Grpc::unary` (the same framing, message limits and status handling as
//! the generated code) with a codec whose encoder copies the published
//! bytes, and hands every other path to the generated server unchanged.

use std::convert::Infallible;

use bytes::{BufMut as _, Bytes};
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service as TowerService, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;
use vigil_proto::v1;
use vigil_proto::v1::vigil_service_server::VigilServiceServer;

use crate::grpc::Service;

const GET_VERDICT: &str = "/vigil.v1.VigilService/GetVerdict";

/// The generated `VigilService` server, with GetVerdict answered from the
/// published bytes.
#[derive(Debug, Clone)]
pub struct VerdictRoute {
    inner: VigilServiceServer<Service>,
    service: Service,
    /// Largest request and response, bytes (the generated server's limit).
    limit: usize,
}

impl VerdictRoute {
    /// `service` behind the generated server, both with message limit
    /// `limit` in each direction.
    pub fn new(service: Service, limit: usize) -> Self {
        let inner = VigilServiceServer::new(service.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        Self {
            inner,
            service,
            limit,
        }
    }
}

impl NamedService for VerdictRoute {
    const NAME: &'static str = <VigilServiceServer<Service> as NamedService>::NAME;
}

impl<B> TowerService<http::Request<B>> for VerdictRoute
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <VigilServiceServer<Service> as TowerService<http::Request<B>>>::poll_ready(
            &mut self.inner,
            cx,
        )
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != GET_VERDICT {
            return self.inner.call(req);
        }
        let method = GetVerdict(self.service.clone());
        let limit = self.limit;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(PublishedCodec)
                .apply_max_message_size_config(Some(limit), Some(limit));
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// GetVerdict as a unary service answering encoded bytes.
struct GetVerdict(Service);

impl UnaryService<v1::GetVerdictRequest> for GetVerdict {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<v1::GetVerdictRequest>) -> Self::Future {
        std::future::ready(self.0.verdict_bytes(&req).map(Response::new))
    }
}

/// Decodes a `GetVerdictRequest` with prost, encodes an already encoded
/// `VerdictReport` by copying it.
#[derive(Debug, Clone, Copy, Default)]
struct PublishedCodec;

impl Codec for PublishedCodec {
    type Encode = Bytes;
    type Decode = v1::GetVerdictRequest;
    type Encoder = Copied;
    type Decoder = ProstDecoder<v1::GetVerdictRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        Copied
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Writes an encoded message as it is.
#[derive(Debug, Clone, Copy, Default)]
struct Copied;

impl Encoder for Copied {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
