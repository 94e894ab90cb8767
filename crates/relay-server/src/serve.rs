//! The accept loop: one HTTP/1.1 connection task per client, each as small as hyper
//! makes it.
//!
//! A relay's connections are mostly long polls that wait, so what one costs while it
//! waits is what the relay costs per user. `axum::serve` runs every connection through
//! hyper-util's protocol-sniffing `auto` builder, whose connection state is sized for
//! HTTP/2 as well; the relay speaks HTTP/1.1 only (TLS and any HTTP/2 toward clients
//! belong to the proxy in front of it, docs/DEPLOY.md), so each connection here is a
//! plain `hyper::server::conn::http1` connection (docs/BENCHMARKS.md has the memory
//! per waiting poll before and after).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Pause after a failed `accept` (typically out of file descriptors), so the loop
/// does not spin while connections close and free them.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Resolves once the loop says stop (or is gone); holds no borrow of the channel after.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Serves `router` on `listener` until `signal` resolves; then stops accepting, asks
/// every connection to finish its request in flight and close, calls `on_signal` (the
/// relay releases its waiting polls there) and returns once every connection closed.
pub(crate) async fn serve_http1(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    on_signal: impl FnOnce(),
) {
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (open, _) = watch::channel(());
    tokio::pin!(signal);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Every answer here is small and latency-bound (a poll answer is the delivery
        // itself): with Nagle's algorithm a response written in two parts would have
        // its tail held until the client ACKs the first, up to 40 ms with delayed ACKs.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
        let service = TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        let open = open.subscribe();
        tokio::spawn(async move {
            let connection = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopped(&mut stopping) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(open);
        });
    }
    on_signal();
    stop.send_replace(true);
    open.closed().await;
}
