//! The connection to an OpenShell gateway and the one place gRPC errors become user messages.
//!
//! [`Gateway::connect`] dials eagerly, so an unreachable gateway is reported before any request
//! as `cannot reach gateway at URL: …`. [`Gateway::map_status`] turns a `tonic::Status` into a
//! [`GatewayError`] whose text is one line fit for a user: `NotFound` names the sandbox,
//! `Unavailable` names the gateway, `InvalidArgument` / `AlreadyExists` / `FailedPrecondition`
//! pass the server's message on (control characters escaped).

use std::time::Duration;

use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    CreateSandboxRequest, DeleteSandboxRequest, GetSandboxRequest, ListSandboxesRequest, Sandbox,
    SandboxStreamEvent, WatchSandboxRequest,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::hygiene::escape_controls;

/// How long dialing the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking to the gateway, each one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `--gateway` / `OPENSHELL_GATEWAY` is not a usable URL.
    #[error("invalid gateway URL `{url}`: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is unusable.
        detail: String,
    },
    /// The gateway could not be dialed, or answered `Unavailable`.
    #[error("cannot reach gateway at {url}: {detail}")]
    Unreachable {
        /// The gateway URL.
        url: String,
        /// The underlying error.
        detail: String,
    },
    /// The sandbox does not exist.
    #[error("sandbox {0} not found")]
    NotFound(String),
    /// The gateway refused the request; its message says why.
    #[error("{0}")]
    Rejected(String),
    /// Any other gRPC failure.
    #[error("gateway error ({code:?}): {message}")]
    Other {
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// A response lacked its sandbox.
    #[error("gateway answered without a sandbox")]
    EmptyResponse,
}

/// Result of gateway calls.
pub type Result<T> = std::result::Result<T, GatewayError>;

/// `url` with `http://` in front when it names no scheme.
pub fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// An error and its sources, joined with `: `, control characters escaped.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    escape_controls(&parts.join(": ")).into_owned()
}

/// A connected client plus the URL it was dialed with (for messages).
#[derive(Debug, Clone)]
pub struct Gateway {
    url: String,
    client: OpenShellClient<Channel>,
}

impl Gateway {
    /// Dials `url` (`http://` assumed when no scheme is given).
    pub async fn connect(url: &str) -> Result<Self> {
        let url = normalize_url(url);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| GatewayError::InvalidUrl {
                url: url.clone(),
                detail: error_chain(&e),
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| GatewayError::Unreachable {
                url: url.clone(),
                detail: error_chain(&e),
            })?;
        Ok(Gateway {
            url,
            client: OpenShellClient::new(channel),
        })
    }

    /// The gateway's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The user's message for a failed call about sandbox `name`.
    pub fn map_status(&self, name: &str, status: &Status) -> GatewayError {
        let message = escape_controls(status.message()).into_owned();
        match status.code() {
            Code::NotFound => GatewayError::NotFound(escape_controls(name).into_owned()),
            Code::Unavailable => GatewayError::Unreachable {
                url: self.url.clone(),
                detail: message,
            },
            Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
                GatewayError::Rejected(message)
            }
            code => GatewayError::Other { code, message },
        }
    }

    fn sandbox_of(response: Option<Sandbox>) -> Result<Sandbox> {
        response.ok_or(GatewayError::EmptyResponse)
    }

    /// `CreateSandbox`.
    pub async fn create(&mut self, request: CreateSandboxRequest) -> Result<Sandbox> {
        let name = request.name.clone();
        let response = self.client.create_sandbox(request).await;
        let response = response.map_err(|s| self.map_status(&name, &s))?;
        Self::sandbox_of(response.into_inner().sandbox)
    }

    /// `GetSandbox` by name.
    pub async fn get(&mut self, name: &str) -> Result<Sandbox> {
        let request = GetSandboxRequest {
            name: name.to_string(),
            ..Default::default()
        };
        let response = self.client.get_sandbox(request).await;
        let response = response.map_err(|s| self.map_status(name, &s))?;
        Self::sandbox_of(response.into_inner().sandbox)
    }

    /// `ListSandboxes`, optionally filtered by a `k=v[,k=v…]` label selector.
    pub async fn list(&mut self, selector: Option<&str>) -> Result<Vec<Sandbox>> {
        let request = ListSandboxesRequest {
            label_selector: selector.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let response = self.client.list_sandboxes(request).await;
        let response = response.map_err(|s| self.map_status("", &s))?;
        Ok(response.into_inner().sandboxes)
    }

    /// `DeleteSandbox` by name; `NotFound` when the gateway deleted nothing.
    pub async fn delete(&mut self, name: &str) -> Result<()> {
        let request = DeleteSandboxRequest {
            name: name.to_string(),
            ..Default::default()
        };
        let response = self.client.delete_sandbox(request).await;
        let response = response.map_err(|s| self.map_status(name, &s))?;
        if response.into_inner().deleted {
            Ok(())
        } else {
            Err(GatewayError::NotFound(escape_controls(name).into_owned()))
        }
    }

    /// `WatchSandbox{id, follow_status, stop_on_terminal}`; `name` is for messages.
    pub async fn watch(&mut self, id: &str, name: &str) -> Result<Streaming<SandboxStreamEvent>> {
        let request = WatchSandboxRequest {
            id: id.to_string(),
            follow_status: true,
            stop_on_terminal: true,
            ..Default::default()
        };
        let response = self.client.watch_sandbox(request).await;
        Ok(response
            .map_err(|s| self.map_status(name, &s))?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn map_status_names_the_sandbox_the_gateway_or_passes_the_message() {
        // A lazily connected channel is enough to hold a Gateway; nothing is dialed.
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let gw = Gateway {
            url: "http://127.0.0.1:9".into(),
            client: OpenShellClient::new(channel),
        };
        let not_found = gw.map_status("box", &Status::not_found("no such sandbox"));
        assert_eq!(not_found.to_string(), "sandbox box not found");
        let down = gw.map_status("box", &Status::unavailable("tcp connect error"));
        assert_eq!(
            down.to_string(),
            "cannot reach gateway at http://127.0.0.1:9: tcp connect error"
        );
        let bad = gw.map_status(
            "box",
            &Status::invalid_argument("name \u{1b}x is not DNS-1123"),
        );
        assert_eq!(bad.to_string(), "name \\u{1b}x is not DNS-1123");
        let dup = gw.map_status("box", &Status::already_exists("sandbox box already exists"));
        assert_eq!(dup.to_string(), "sandbox box already exists");
        let other = gw.map_status("box", &Status::internal("db"));
        assert_eq!(other.to_string(), "gateway error (Internal): db");
    }

    #[test]
    fn urls_without_a_scheme_get_http() {
        assert_eq!(normalize_url("127.0.0.1:7443"), "http://127.0.0.1:7443");
        assert_eq!(normalize_url("http://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalize_url("https://gw:443"), "https://gw:443");
    }

    #[tokio::test]
    async fn a_url_that_is_not_a_uri_is_reported_as_invalid() {
        let err = Gateway::connect("http://[::1").await.unwrap_err();
        assert!(matches!(err, GatewayError::InvalidUrl { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("invalid gateway URL `http://[::1`"),
            "{err}"
        );
    }
}
