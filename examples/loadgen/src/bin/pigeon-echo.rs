//! Baseline for benchmarks: a plain hyper server that answers every request
//! with `202` and a small JSON body, doing no other work. Comparing Pigeon's
//! figures with this one's, measured on the same machine in the same session,
//! gives a ratio that survives a noisy shared machine.
//!
//! ```text
//! pigeon-echo 127.0.0.1:28082 &
//! pigeon-loadgen --url http://127.0.0.1:28082 --key anything
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;

async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = format!(
        r#"{{"id":"echo","status":"queued","bytes":{}}}"#,
        body.len()
    );
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:28082".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "pigeon-echo: listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(echo))
                .await;
        });
    }
}
