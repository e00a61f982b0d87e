//! The accept path: how a listening socket becomes the connections the gRPC server serves.
//!
//! Every accepted connection gets `TCP_NODELAY`. Without it a one-call client (the `openshell`
//! CLI: connect, one request, exit) stalls about 40 ms on roughly one call in four: the gateway
//! writes its HTTP/2 SETTINGS acknowledgement and, a moment later, the response in a second
//! small write; Nagle's algorithm holds the response until the client acknowledges the first
//! segment, and the client, which has nothing left to send, acknowledges only when its
//! delayed-ACK timer (40 ms on Linux) fires. HTTP/2 already batches its frames per write, so
//! Nagle saves nothing here. tonic's `Server::tcp_nodelay` covers only sockets tonic binds
//! itself, not an incoming stream handed to `serve_with_incoming_shutdown`, so it is set here.

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// The connections accepted on `listener`, each with `TCP_NODELAY` set.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    /// Reads the option back from the server's side of the connection (getsockopt), so a
    /// refactor that bypasses [`incoming`] or drops the option fails here, not in a timing run.
    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert_eq!(
            server_side.peer_addr().unwrap(),
            client.local_addr().unwrap()
        );
        assert!(
            server_side.nodelay().unwrap(),
            "the gateway's accepted socket must not run Nagle's algorithm"
        );
    }

    /// The default the fix exists for: a plain accept leaves Nagle on, so the test above
    /// checks something the kernel does not give for free.
    #[tokio::test]
    async fn a_plain_accept_leaves_nagle_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        assert!(!server_side.nodelay().unwrap());
    }
}
