//! The connection to the Docker engine: a lazily (re)connected bollard client, every request
//! bounded by a deadline, and engine errors sorted into what the driver can tell apart.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bollard::{ClientVersion, Docker};

/// The Docker API version spoken: that of Debian 12's `docker.io` 20.10 (newer engines accept it).
pub const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// The engine address used when none is configured and `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Deadline of a quick request (ping, inspect, kill).
pub const QUICK: Duration = Duration::from_secs(5);
/// Deadline of a request that may do real work (create, start, remove).
pub const SLOW: Duration = Duration::from_secs(30);

/// What went wrong talking to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached (no socket, connection refused or reset).
    #[error("docker engine at {host} unreachable while trying to {action}: {detail}")]
    Unreachable {
        host: String,
        action: String,
        detail: String,
    },
    /// The engine did not answer in time.
    #[error("docker engine at {host} did not answer within {secs} s while trying to {action}")]
    Timeout {
        host: String,
        action: String,
        secs: u64,
    },
    /// The engine answered 404 (no such image or container).
    #[error("{0}")]
    NotFound(String),
    /// The engine answered with another error status.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, EngineError>;

/// The engine: its address and a client, connected on first use and after a failure.
#[derive(Debug)]
pub struct Engine {
    host: String,
    client: Mutex<Option<Docker>>,
}

impl Engine {
    /// An engine at `host` (`unix:///…`, a socket path, `tcp://…`, `http://…`), else `DOCKER_HOST`,
    /// else [`DEFAULT_HOST`]. Nothing is sent yet.
    pub fn new(host: Option<String>) -> Engine {
        let host = host
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Engine {
            host,
            client: Mutex::new(None),
        }
    }

    /// The engine's address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A client (cheap to clone), connecting if there is none.
    pub fn client(&self, action: &str) -> Result<Docker> {
        let mut slot = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        // Per-request timeouts are ours (`bounded`); bollard's is only a backstop.
        let backstop = SLOW.as_secs() * 4;
        let connected = if self.host.starts_with("tcp://") || self.host.starts_with("http://") {
            Docker::connect_with_http(&self.host, backstop, &API_VERSION)
        } else {
            let path = self.host.strip_prefix("unix://").unwrap_or(&self.host);
            Docker::connect_with_unix(path, backstop, &API_VERSION)
        };
        let client = connected.map_err(|e| self.classify(action, e))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets the client so the next request connects again (after the socket went away).
    pub fn reset(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Runs one request against the engine within `deadline`.
    pub async fn bounded<T, F, Fut>(
        &self,
        action: &str,
        deadline: Duration,
        request: F,
    ) -> Result<T>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        let client = self.client(action)?;
        match tokio::time::timeout(deadline, request(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = self.classify(action, e);
                if matches!(error, EngineError::Unreachable { .. }) {
                    self.reset();
                }
                Err(error)
            }
            Err(_) => Err(EngineError::Timeout {
                host: self.host.clone(),
                action: action.to_string(),
                secs: deadline.as_secs(),
            }),
        }
    }

    /// Sorts a bollard error.
    pub fn classify(&self, action: &str, error: bollard::errors::Error) -> EngineError {
        use bollard::errors::Error as E;
        match error {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            E::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Refused {
                status: status_code,
                message,
            },
            E::RequestTimeoutError => EngineError::Timeout {
                host: self.host.clone(),
                action: action.to_string(),
                secs: SLOW.as_secs() * 4,
            },
            other => EngineError::Unreachable {
                host: self.host.clone(),
                action: action.to_string(),
                detail: other.to_string(),
            },
        }
    }
}

/// Whether the error means the engine is not there (as opposed to a refused request).
pub fn is_unavailable(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::Unreachable { .. } | EngineError::Timeout { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_unreachable_and_names_the_host() {
        let engine = Engine::new(Some("unix:///nonexistent/docker.sock".into()));
        let err = engine.client("ping").unwrap_err();
        assert!(is_unavailable(&err), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/docker.sock"),
            "{err}"
        );
    }

    #[test]
    fn server_errors_are_sorted_by_status() {
        let engine = Engine::new(Some("unix:///x".into()));
        let not_found = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such image: x".into(),
        };
        assert_eq!(
            engine.classify("create", not_found),
            EngineError::NotFound("No such image: x".into())
        );
        let conflict = bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message: "in use".into(),
        };
        assert!(!is_unavailable(&engine.classify("create", conflict)));
    }
}
