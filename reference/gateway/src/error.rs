//! Gateway errors and their one mapping to `tonic::Status`.

use crate::store::StoreError;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; the message says how to fix it.
    #[error("{0}")]
    InvalidArgument(String),
    /// A sandbox with this name exists.
    #[error("a sandbox named {0:?} already exists; choose another name or delete it first")]
    AlreadyExists(String),
    /// No such sandbox.
    #[error("sandbox {0:?} not found")]
    NotFound(String),
    /// No credential was sent.
    #[error("missing credential: send `authorization: Bearer <sandbox token>` metadata")]
    Unauthenticated,
    /// The credential is not this sandbox's.
    #[error("the credential does not belong to sandbox {0:?}")]
    PermissionDenied(String),
    /// The sandbox cannot take this request in its current phase.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Persistence failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias of the gateway's request paths.
pub type Result<T> = std::result::Result<T, GatewayError>;

impl From<GatewayError> for tonic::Status {
    fn from(error: GatewayError) -> tonic::Status {
        use tonic::Code;
        let code = match &error {
            GatewayError::InvalidArgument(_) => Code::InvalidArgument,
            GatewayError::AlreadyExists(_) => Code::AlreadyExists,
            GatewayError::NotFound(_) => Code::NotFound,
            GatewayError::Unauthenticated => Code::Unauthenticated,
            GatewayError::PermissionDenied(_) => Code::PermissionDenied,
            GatewayError::FailedPrecondition(_) => Code::FailedPrecondition,
            GatewayError::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(%error, "internal error");
        }
        tonic::Status::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_grpc_code() {
        let cases = [
            (
                GatewayError::InvalidArgument("x".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                GatewayError::AlreadyExists("x".into()),
                tonic::Code::AlreadyExists,
            ),
            (GatewayError::NotFound("x".into()), tonic::Code::NotFound),
            (GatewayError::Unauthenticated, tonic::Code::Unauthenticated),
            (
                GatewayError::PermissionDenied("x".into()),
                tonic::Code::PermissionDenied,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(tonic::Status::from(error).code(), code);
        }
    }
}
