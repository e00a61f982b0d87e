//! A TCP proxy on 127.0.0.1 between supervisors and a gateway (the gateway's `--endpoint`), so
//! a test can hold new supervisor connections (a sandbox then stays Provisioning for as long as
//! the test wants, deterministically) and release them later, to a gateway that restarted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy; dropping it stops accepting.
pub struct Proxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    accepted: watch::Receiver<u64>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts it, open, with no target yet (connections wait for one).
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, open_rx) = watch::channel(true);
        let (accepted_tx, accepted) = watch::channel(0u64);
        let target = Arc::new(Mutex::new(None));
        let shared = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                accepted_tx.send_modify(|n| *n += 1);
                let (mut open, target) = (open_rx.clone(), shared.clone());
                tokio::spawn(async move {
                    // Held until the proxy is open.
                    if open.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    let Some(to) = *target.lock().unwrap() else {
                        return;
                    };
                    if let Ok(upstream) = TcpStream::connect(to).await {
                        let (mut a, mut b) = (conn, upstream);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            open,
            accepted,
            target,
            task,
        }
    }

    /// Where connections go once open.
    pub fn forward_to(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = Some(to);
    }

    /// Holds every new connection (those already forwarded stay).
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Forwards again, held connections included.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.borrow()
    }

    /// Waits until more than `seen` connections were accepted.
    pub async fn accepted_more_than(&self, seen: u64) {
        let mut rx = self.accepted.clone();
        let _ = rx.wait_for(|n| *n > seen).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
