//! Losing the engine: a stand-in engine on a Unix socket (just enough HTTP for ping, inspect and
//! an open event stream) goes away; the tracked sandbox must get `Failed` with
//! `BackendUnavailable` within a bounded time instead of waiting forever. Needs no dockerd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use openshell_driver::{ComputeDriver, DriverError, DriverEvent};
use openshell_driver_docker::{watch::LOST_AFTER, DockerConfig, DockerDriver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Answers one connection's requests: ping, container inspect, and a never-ending event stream.
async fn serve(mut conn: UnixStream) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = conn.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = if path.contains("/_ping") {
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"
                    .to_string()
            } else if path.contains("/containers/") && path.contains("/json") {
                let body = r#"{"State":{"Status":"running","Running":true}}"#;
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            } else if path.contains("/events") {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Keep the stream open until this task is aborted.
                std::future::pending::<()>().await;
                return;
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"message\":\"nope\"}\n"
                    .to_string()
            };
            if conn.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test]
async fn losing_the_engine_fails_tracked_sandboxes_as_unavailable_within_a_bound(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket: PathBuf = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&socket)?;
    let server = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((conn, _)) = listener.accept().await {
            connections.spawn(serve(conn));
        }
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = DockerConfig {
        docker_host: Some(format!("unix://{}", socket.display())),
        default_runtime: "runc".into(),
    };
    let driver = DockerDriver::connect(config, tx)?;
    assert!(
        driver.exists("lost-1").await?,
        "the stand-in engine knows the container"
    );

    // The engine goes away: every connection (the event stream included) closes, the socket too.
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&socket)?;
    let gone_at = Instant::now();

    let bound = LOST_AFTER + Duration::from_secs(10);
    let event = tokio::time::timeout(bound, rx.recv()).await?;
    match event {
        Some(DriverEvent::Failed {
            sandbox_id,
            error: DriverError::Unavailable(message),
        }) => {
            assert_eq!(sandbox_id, "lost-1");
            assert!(message.contains("event stream"), "{message}");
        }
        other => anyhow::bail!("expected Failed(Unavailable), got {other:?}"),
    }
    let took = gone_at.elapsed();
    eprintln!("engine lost -> Failed(Unavailable) after {took:?}");
    assert!(
        took >= LOST_AFTER,
        "reported before the reconnect window ended: {took:?}"
    );
    Ok(())
}
