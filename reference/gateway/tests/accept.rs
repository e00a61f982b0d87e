//! The served path sets `TCP_NODELAY` on what it accepts (issue 13's 40 ms delayed-ACK stall).
//!
//! `src/accept.rs` tests its function; this test checks that `serve` really uses it, by finding
//! the server's side of a live connection among this process's file descriptors and reading the
//! option back with getsockopt.

mod common;

use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

use common::*;
use openshell_proto::v1::ListSandboxesRequest;

/// `TCP_NODELAY` of the socket in this process whose local and peer addresses are these.
fn nodelay_of(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the stream only borrows the descriptor for getsockname/getpeername/getsockopt
        // (on a descriptor that is not a socket they fail); ManuallyDrop keeps it from closing it.
        let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if socket.local_addr().ok() == Some(local) && socket.peer_addr().ok() == Some(peer) {
            return socket.nodelay().ok();
        }
    }
    None
}

#[tokio::test]
async fn the_served_connections_have_tcp_nodelay_set() {
    let gw = Gateway::start(":memory:", 15).await;
    let server: SocketAddr = gw.endpoint.trim_start_matches("http://").parse().unwrap();
    // A raw connection whose client address we know; the gRPC call after it proves the server
    // has accepted connections (it accepts in order, and sets the option before serving one).
    let raw = tokio::net::TcpStream::connect(server).await.unwrap();
    let mut client = gw.client().await;
    client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap();
    let nodelay = nodelay_of(server, raw.local_addr().unwrap());
    assert_eq!(
        nodelay,
        Some(true),
        "the gateway's side of an accepted connection must have TCP_NODELAY"
    );
    drop((raw, client));
    gw.stop().await;
}
