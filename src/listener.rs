//! The built-in webhook listener: plain HTTP/1.1 with keep-alive on the client's runtime (TLS is
//! terminated by a reverse proxy in front of it).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

use crate::webhook::{Reply, WebhookHandler};

/// Binds `address` now (so that errors surface at client creation) and serves `path` on the
/// runtime. Returns the bound address (useful with port 0).
pub fn start(
    runtime: &Runtime,
    address: &str,
    path: String,
    handler: Arc<WebhookHandler>,
) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(address)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| format!("cannot listen on {address}: {e}"))?
    };
    let path: Arc<str> = path.into();
    runtime.spawn(async move {
        tracing::info!(address = %local, path = %path, "webhook listener started");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and similar: back off rather than spin.
                    tracing::warn!("webhook listener accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (handler, path) = (handler.clone(), path.clone());
            tokio::spawn(async move {
                let service =
                    service_fn(move |request| serve(request, handler.clone(), path.clone()));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = reply.content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn plain(status: u16, body: &str) -> Response<Full<Bytes>> {
    response(Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_string(),
    })
}

async fn serve(
    request: Request<Incoming>,
    handler: Arc<WebhookHandler>,
    path: Arc<str>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if request.uri().path() != &*path {
        return Ok(plain(404, "not found"));
    }
    let method = request.method().as_str().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let signature = request
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let max = handler.max_body();
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Ok(plain(413, "payload too large"));
    }
    let body = match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(plain(413, "payload too large"))
        }
        Err(_) => return Ok(plain(400, "could not read the body")),
    };
    Ok(response(handler.handle(
        &method,
        &query,
        signature.as_deref(),
        &body,
    )))
}
