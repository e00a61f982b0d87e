//! The client, request deadlines, and the sorting of API errors into driver errors.
//!
//! Sorting: no answer (connection refused, TLS, deadline) and authorization refusals (401, 403
//! from RBAC: the driver's account is misconfigured) are [`DriverError::Unavailable`]; an
//! admission refusal (403 naming Pod Security, 422 invalid, 409 already exists, 400) is
//! [`DriverError::CreateFailed`] with the API server's message; a 404 is sorted by the caller.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use openshell_driver::{DriverError, Result};

/// Deadline of a quick request (get, delete, patch).
pub const QUICK: Duration = Duration::from_secs(10);
/// Deadline of a create (admission webhooks may run).
pub const SLOW: Duration = Duration::from_secs(20);

/// Makes a client: from `kubeconfig` when given, else inferred (`KUBECONFIG`, `~/.kube/config`,
/// in-cluster service account).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    // kube is built with rustls and ring only; installing the provider is idempotent and keeps
    // a second rustls provider elsewhere in a binary from making the choice ambiguous.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let unavailable = |what: String| DriverError::Unavailable(what);
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| unavailable(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| unavailable(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| unavailable(format!("no Kubernetes configuration found: {e}")))?,
    };
    kube::Client::try_from(config)
        .map_err(|e| unavailable(format!("cannot make a Kubernetes client: {e}")))
}

/// An API refusal the caller may want to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404.
    NotFound,
    /// 409.
    Conflict,
}

/// A failed request: what was asked, and the error or the deadline.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API server answered with an error, or could not be reached.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// No answer within the deadline.
    #[error("{action}: no answer from the Kubernetes API within {limit:?}")]
    Deadline { action: String, limit: Duration },
}

impl ApiError {
    fn status(&self) -> Option<&kube::core::Status> {
        match self {
            ApiError::Kube {
                source: kube::Error::Api(status),
                ..
            } => Some(status),
            _ => None,
        }
    }

    /// The refusal, when the API server refused with 404 or 409.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.status()?.code {
            404 => Some(Refusal::NotFound),
            409 => Some(Refusal::Conflict),
            _ => None,
        }
    }

    /// The driver error this becomes.
    pub fn into_driver_error(self) -> DriverError {
        let text = self.to_string();
        let Some(status) = self.status() else {
            return DriverError::Unavailable(text);
        };
        let rbac = status.code == 401
            || (status.code == 403 && !status.message.to_lowercase().contains("podsecurity"));
        if rbac || status.code >= 500 {
            DriverError::Unavailable(text)
        } else {
            DriverError::CreateFailed(text)
        }
    }
}

/// Runs one API request with a deadline.
pub async fn bounded<T>(
    action: &str,
    limit: Duration,
    request: impl Future<Output = kube::Result<T>>,
) -> std::result::Result<T, ApiError> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(ApiError::Kube {
            action: action.to_string(),
            source,
        }),
        Err(_) => Err(ApiError::Deadline {
            action: action.to_string(),
            limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16, message: &str) -> ApiError {
        let status = kube::core::Status::failure(message, "Refused").with_code(code);
        ApiError::Kube {
            action: "create pod openshell-x".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn rbac_and_server_errors_are_unavailable_admission_refusals_create_failed() {
        let rbac = refused(
            403,
            "pods is forbidden: User \"x\" cannot create resource \"pods\"",
        );
        assert_eq!(rbac.into_driver_error().reason(), "BackendUnavailable");
        let psa = refused(
            403,
            "pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\"",
        );
        let psa = psa.into_driver_error();
        assert_eq!(psa.reason(), "BackendCreateFailed");
        assert!(psa.to_string().contains("PodSecurity"), "{psa}");
        assert_eq!(
            refused(422, "invalid").into_driver_error().reason(),
            "BackendCreateFailed"
        );
        assert_eq!(
            refused(503, "down").into_driver_error().reason(),
            "BackendUnavailable"
        );
        assert_eq!(refused(404, "gone").refusal(), Some(Refusal::NotFound));
        let late = ApiError::Deadline {
            action: "get pod p".into(),
            limit: QUICK,
        };
        assert_eq!(late.into_driver_error().reason(), "BackendUnavailable");
    }
}
