//! The one thread every sandbox is forked from.
//!
//! `PR_SET_PDEATHSIG` fires when the parent *thread* exits, not the parent process. A sandbox
//! forked from a tokio blocking-pool thread would be killed when that thread idles out, so every
//! launch runs on one dedicated thread that lives as long as the process.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SpawnerError {
    /// The spawner thread could not be started.
    #[error("cannot start the sandbox spawner thread: {0}")]
    Thread(String),
    /// The spawner thread is gone (it never exits, so this means it panicked).
    #[error("the sandbox spawner thread is gone")]
    Gone,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SpawnerError>;

type Job = Box<dyn FnOnce() + Send>;

static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn jobs() -> Result<&'static Mutex<mpsc::Sender<Job>>> {
    if let Some(jobs) = JOBS.get() {
        return Ok(jobs);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    // A racing initialiser wins; this thread then ends when its sender is dropped.
    let _thread = std::thread::Builder::new()
        .name("openshell-sandbox-spawner".into())
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .map_err(|e| SpawnerError::Thread(e.to_string()))?;
    let _ = JOBS.set(Mutex::new(tx));
    JOBS.get().ok_or(SpawnerError::Gone)
}

/// Runs `job` on the spawner thread, inside the caller's tokio runtime, and returns its result.
pub async fn run<T, F>(job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let _entered = runtime.enter();
        let _ = done_tx.send(job());
    });
    jobs()?
        .lock()
        .map_err(|_| SpawnerError::Gone)?
        .send(wrapped)
        .map_err(|_| SpawnerError::Gone)?;
    done_rx.await.map_err(|_| SpawnerError::Gone)
}
