//! The HTTP server loop: hyper-util's connection builder (HTTP/1.1 and HTTP/2) under Ferry's
//! poem application.
//!
//! poem's own `Server` (3.1) awaits a connection a second time after it has ended with an
//! error. A client that leaves in the middle of a streamed answer (an event stream, a file
//! download) ends its connection with exactly such an error, and that second await never
//! returns: the connection's task, its socket (in `CLOSE_WAIT`) and the response body, with
//! whatever the body holds, stayed for good. Here a connection that has ended is dropped at
//! once, which drops its body with it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `app` on `acceptor` until `shutdown`; then closes the listener (new connections are
/// refused, so a load balancer moves on at once), lets every connection finish the request
/// in hand, and closes those still open after `grace`.
///
/// # Errors
/// Never at present; accept errors (such as running out of descriptors) are logged and
/// retried.
pub async fn run(
    mut acceptor: TcpAcceptor,
    app: impl Endpoint + 'static,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let app = Arc::new(app.map_to_response().boxed());
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.accept() => match accepted {
                Ok((io, local, remote, _)) => {
                    connections.spawn(connection(
                        io,
                        local,
                        remote,
                        app.clone(),
                        shutdown.clone(),
                        force.clone(),
                    ));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(acceptor);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        force.cancel();
        connections.wait().await;
    }
    Ok(())
}

async fn connection(
    io: TcpStream,
    local: LocalAddr,
    remote: RemoteAddr,
    app: Arc<BoxEndpoint<'static, poem::Response>>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let req = poem::Request::from((
            req,
            local.clone(),
            remote.clone(),
            poem::http::uri::Scheme::HTTP,
        ));
        async move {
            let resp: hyper::Response<_> = app.get_response(req).await.into();
            Ok::<_, Infallible>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        // Ended (the client left, or the exchange is over): dropping it closes the socket.
        _ = conn.as_mut() => return,
        () = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        () = force.cancelled() => {}
    }
}
