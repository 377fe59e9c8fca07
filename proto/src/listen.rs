//! Taking a listening port. Every port the binaries open (the
//! coordinator's gRPC and metrics ports, a worker's change service and
//! probes, `render --ui`) fails with one error that names the port's use,
//! the address, the system's reason and the fix for that reason: another
//! process holding the port, an address this machine does not have, or a
//! privileged port.

use std::io;
use std::net::SocketAddr;

/// A port that could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve {what} on {addr}: {source}. Fix: {}", fix(.flag, .addr, .source))]
pub struct ListenError {
    /// What the port is for ("the web interface").
    pub what: &'static str,
    /// The flag that gives the address ("--ui").
    pub flag: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
    /// The system's reason.
    pub source: io::Error,
}

/// What to do about `error`, met listening on `addr` as `flag` asked.
fn fix(flag: &str, addr: &SocketAddr, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "another process holds port {}: pass a free port to {flag} (or 0, any free port), or stop that process",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine: pass one of its addresses to {flag}, or 0.0.0.0 for all of them",
            addr.ip()
        ),
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: pass a port above 1023 to {flag}"
        ),
        _ => format!("pass another address to {flag}"),
    }
}

/// The error for a failure to listen on `addr` for `what`, given by `flag`.
fn failure(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> impl Fn(io::Error) -> ListenError + Copy {
    move |source| ListenError {
        what,
        flag,
        addr,
        source,
    }
}

/// Listens on `addr` for `what`, given by `flag`, inside a tokio runtime:
/// a tokio listener and the address it took (port 0 picks a free port).
pub fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ListenError> {
    let (listener, bound) = bind_std(addr, what, flag)?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(failure(addr, what, flag))?;
    Ok((listener, bound))
}

/// Listens on `addr` for `what`, given by `flag`, before any runtime
/// exists: a non-blocking std listener, for a runtime to take later
/// (`tokio::net::TcpListener::from_std`), and the address it took.
pub fn bind_std(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<(std::net::TcpListener, SocketAddr), ListenError> {
    let failed = failure(addr, what, flag);
    let listener = std::net::TcpListener::bind(addr).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn a_port_in_use_says_whose_flag_to_change() {
        let taken = std::net::TcpListener::bind(loopback(0)).expect("a free port");
        let addr = taken.local_addr().expect("its address");
        let error = bind(addr, "the probes", "--health-listen").expect_err("the port is taken");
        let said = error.to_string();
        assert!(
            said.starts_with(&format!("cannot serve the probes on {addr}: ")),
            "{said}"
        );
        assert!(
            said.contains(&format!(
                "Fix: another process holds port {}: pass a free port to --health-listen",
                addr.port()
            )),
            "{said}"
        );
        let error = bind_std(addr, "the web interface", "--ui").expect_err("still taken");
        assert!(
            error.to_string().contains("pass a free port to --ui"),
            "{error}"
        );
        // Port 0 picks a free one, and a std listener is ready for tokio.
        let (free, bound) =
            bind_std(loopback(0), "the web interface", "--ui").expect("any free port");
        assert_ne!(bound.port(), 0);
        tokio::net::TcpListener::from_std(free).expect("tokio takes it");
    }

    #[test]
    fn each_reason_gets_its_own_fix() {
        let addr = SocketAddr::from(([192, 0, 2, 7], 80));
        let said = |kind| fix("--listen", &addr, &io::Error::from(kind));
        assert!(
            said(io::ErrorKind::AddrNotAvailable)
                .starts_with("192.0.2.7 is not an address of this machine"),
        );
        assert!(said(io::ErrorKind::PermissionDenied).contains("a port above 1023 to --listen"));
        assert_eq!(
            said(io::ErrorKind::Other),
            "pass another address to --listen"
        );
        let high = SocketAddr::from(([192, 0, 2, 7], 8080));
        assert_eq!(
            fix(
                "--listen",
                &high,
                &io::Error::from(io::ErrorKind::PermissionDenied)
            ),
            "pass another address to --listen"
        );
    }

    #[tokio::test]
    async fn an_address_this_machine_lacks_is_named() {
        // TEST-NET-1 (RFC 5737) is no machine's own address.
        let addr = SocketAddr::from(([192, 0, 2, 1], 0));
        let error =
            bind(addr, "changes", "--change-listen").expect_err("not this machine's address");
        assert!(
            error
                .to_string()
                .contains("192.0.2.1 is not an address of this machine"),
            "{error}"
        );
    }
}
