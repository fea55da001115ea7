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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::{BodyExt as _, Full};

    use super::*;
    use crate::{Config, Vigil};

    /// grpc-status, grpc-message (from the trailers, or the headers of a
    /// trailers-only answer) and the body.
    async fn call<S>(svc: &mut S, token: Option<&str>, body: &[u8]) -> (String, String, Bytes)
    where
        S: TowerService<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
        S::Error: std::fmt::Debug,
    {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(GET_VERDICT)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(tonic::body::Body::new(Full::new(Bytes::copy_from_slice(
                body,
            ))))
            .unwrap();
        let response = svc.call(req).await.unwrap();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let get = |k: &str| {
            trailers
                .get(k)
                .or_else(|| headers.get(k))
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        (
            get("grpc-status"),
            get("grpc-message"),
            collected.to_bytes(),
        )
    }

    fn frame(id: &str) -> Vec<u8> {
        let message = prost::Message::encode_to_vec(&v1::GetVerdictRequest {
            analysis_id: id.into(),
        });
        let mut out = vec![0u8];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&message);
        out
    }

    /// The route answers exactly what tonic's generated route answers:
    /// the verdict, and every error with the same status and message.
    #[tokio::test]
    async fn the_route_answers_as_the_generated_server() {
        let mut config = Config::default();
        config.auth.require_on_reads = true;
        let vigil: Arc<Vigil> = Vigil::new(config, vec!["s3cret".into()]);
        let spec = serde_json::from_value(serde_json::json!({
            "service": "svc",
            "baseline_version": "v7",
            "canary_version": "v8",
            "metrics": [{"name": "latency", "kind": "latency"}],
        }))
        .unwrap();
        let id = vigil
            .create_from(None, spec, "test", vigil.stream_now())
            .unwrap()
            .id
            .to_string();
        let limit = 1 << 20;
        let mut ours = VerdictRoute::new(Service::new(vigil.clone()), limit);
        let mut theirs = VigilServiceServer::new(Service::new(vigil.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
            (Some("s3cret"), frame(&id), "0"),
            (Some("s3cret"), frame("no-such-analysis"), "5"),
            (Some("s3cret"), frame(""), "3"),
            (None, frame(&id), "16"),
            (Some("wrong"), frame(&id), "16"),
            (Some("s3cret"), vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff], "13"),
        ];
        for (token, body, status) in cases {
            let a = call(&mut ours, token, &body).await;
            let b = call(&mut theirs, token, &body).await;
            assert_eq!(a, b, "{token:?} {body:?}");
            assert_eq!(a.0, status, "{token:?} {body:?}: {a:?}");
        }
        // The answer is the published verdict, framed.
        let (_, _, body) = call(&mut ours, Some("s3cret"), &frame(&id)).await;
        let published = vigil.analyses.get(&id).unwrap().published();
        assert_eq!(&body[5..], &published.encoded()[..]);
    }
}
