//! Where the gateway may listen.
//!
//! Its public API has no authentication (anyone who reaches it can create and delete sandboxes),
//! so it binds loopback addresses only (127.0.0.0/8, `[::1]`) unless the operator says otherwise
//! with `--allow-non-loopback` (a Kubernetes driver's pods, for instance, reach the gateway on a
//! node address). Host names are not resolved: the static binary has no NSS.

use std::net::SocketAddr;

/// The flag that allows a non-loopback listen address.
pub const ALLOW_FLAG: &str = "--allow-non-loopback";

/// Errors of the listen address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenError {
    /// Not `IP:PORT`.
    #[error("--listen {0:?} is not IP:PORT, e.g. 127.0.0.1:7443 (host names are not resolved)")]
    NotAnAddress(String),
    /// Not loopback, and not allowed.
    #[error(
        "refusing to listen on {0}: the gateway's API has no authentication, so it listens on \
         loopback addresses (127.0.0.0/8, [::1]) only; pass {ALLOW_FLAG} to listen on {0} anyway \
         and make sure only trusted clients can reach it"
    )]
    NotLoopback(SocketAddr),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ListenError>;

/// The address to bind for `--listen listen`.
pub fn check(listen: &str, allow_non_loopback: bool) -> Result<SocketAddr> {
    let addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| ListenError::NotAnAddress(listen.to_string()))?;
    if addr.ip().is_loopback() || allow_non_loopback {
        Ok(addr)
    } else {
        Err(ListenError::NotLoopback(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_allowed_and_anything_else_needs_the_flag() {
        for ok in ["127.0.0.1:7443", "127.1.2.3:0", "[::1]:7443"] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for public in ["0.0.0.0:7443", "[::]:0", "10.0.0.1:7443", "192.168.1.5:1"] {
            let err = check(public, false).unwrap_err();
            assert!(err.to_string().contains(ALLOW_FLAG), "{err}");
            assert!(check(public, true).is_ok(), "{public} with the flag");
        }
        assert!(matches!(
            check("localhost:7443", true),
            Err(ListenError::NotAnAddress(_))
        ));
    }
}
