//! The connections `nnmnist serve` takes: HTTP/1.1 through hyper, at most
//! [`MAX_CONNECTIONS`] open at once (a further one waits in the listen queue until one
//! closes), and none held by a client that sends nothing: a request's headers must arrive
//! within [`HEADER_TIMEOUT`], and a kept-alive connection that starts no new request within
//! it is closed. A body's own time limit is the API's ([`super::api::BODY_TIMEOUT`]).
use anyhow::Result;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The most connections open at once. Each holds at most its read buffer
/// ([`READ_BUFFER`]) and one piece of a body read from it, waiting for the body budget:
/// 64 MiB for all, beside the budget itself.
pub const MAX_CONNECTIONS: usize = 512;

/// A connection's read buffer at most: 64 KiB (hyper's default is about 400 KB), which the
/// request line and headers must fit in (else a 431) and each piece of a body is read into.
pub const READ_BUFFER: usize = 64 << 10;

/// How long a request's headers may take to arrive, and how long an idle kept-alive
/// connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` and serves `router` on each, until the process ends.
pub async fn serve(listener: TcpListener, router: Router) -> Result<()> {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = open.clone().acquire_owned().await?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A connection reset before it was taken: the next one.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused) => continue,
            // No file descriptor left (EMFILE, ENFILE): the open connections go on, and
            // accepting waits a second for some to close, as axum::serve does.
            Err(_) => {
                drop(slot);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(READ_BUFFER)
                .serve_connection(TokioIo::new(stream), service);
            // A connection's end, clean or not (a client gone, a timeout), is the client's.
            let _ = connection.await;
            drop(slot);
        });
    }
}
