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
            GatewayError::Store(e) if e.is_unwritable() => Code::Unavailable,
            GatewayError::Store(_) => Code::Internal,
        };
        let message = match code {
            Code::Unavailable => {
                tracing::error!(%error, "store write failed; request refused, nothing changed");
                format!("{error}: nothing was changed; retry once the store is writable again")
            }
            Code::Internal => {
                tracing::error!(%error, "internal error");
                error.to_string()
            }
            _ => error.to_string(),
        };
        tonic::Status::new(code, message)
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

    #[test]
    fn an_unwritable_store_is_unavailable_and_a_corrupt_record_internal() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let status = tonic::Status::from(GatewayError::Store(StoreError::Sqlite(full)));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("nothing was changed"),
            "{status:?}"
        );
        let corrupt = StoreError::Corrupt {
            id: "sb-1".into(),
            detail: "it has no metadata".into(),
        };
        let status = tonic::Status::from(GatewayError::Store(corrupt));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("sandbox sb-1"), "{status:?}");
    }
}
