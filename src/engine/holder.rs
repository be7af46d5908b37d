//! Who holds the port Carpool cannot listen on: the process that `carpool serve`'s error
//! and the tray's notification name ([`super::StartError::Listen`]).
//!
//! Looked up only when a bind fails with `AddrInUse`, through the `listeners` crate (Linux:
//! `/proc/net/tcp{,6}` and each process's `/proc/<pid>/fd`; macOS: libproc; Windows: the
//! IP Helper API). It is best effort and never in the way of the error itself: the lookup
//! runs on a thread of its own for at most [`LOOKUP_TIMEOUT`], and a failure, a panic or
//! a timeout all give no holder. It sees what this user may inspect: a port held by
//! another user's process (without root on Linux and macOS), or from another network
//! namespace, is "in use" without a name.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;

/// How long the lookup may take before the error goes out without a holder. A scan of
/// every process's sockets takes milliseconds; this is for a machine that stalls.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The process listening on a port Carpool wanted. Shown as "`name` (pid 1234)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: u32,
    /// The executable's file name (`carpool`, `nginx`, `python3.12`).
    pub name: String,
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (pid {})", self.name, self.pid)
    }
}

/// The process listening on a TCP port that keeps Carpool from listening on `addr`, if
/// one is found within [`LOOKUP_TIMEOUT`].
pub(super) async fn find(addr: SocketAddr) -> Option<PortHolder> {
    bounded(move || lookup(addr), LOOKUP_TIMEOUT).await
}

/// Runs `work` on a thread of its own and waits at most `limit` for its answer; a panic
/// or a timeout is `None`. A detached thread rather than `spawn_blocking`: a runtime
/// waits for its blocking tasks when it is dropped, so a lookup that never returned would
/// hold up the exit of `carpool serve` after the error.
async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> Option<T> + Send + 'static,
    limit: Duration,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("carpool-port-holder".into())
        // A panic drops `tx`: the receiver gets an error, which is `None` below.
        .spawn(move || drop(tx.send(work())))
        .ok()?;
    tokio::time::timeout(limit, rx).await.ok()?.ok()?
}

/// Only listening sockets count: on Unix tokio binds with `SO_REUSEADDR`, so connections
/// still on the port (accepted ones, `TIME_WAIT`) do not keep it from a new listener.
fn lookup(addr: SocketAddr) -> Option<PortHolder> {
    let all = listeners::get_all().ok()?;
    pick(
        addr,
        all.iter()
            .filter(|l| {
                l.protocol == listeners::Protocol::TCP && l.state == listeners::SocketState::Listen
            })
            .map(|l| {
                let name = executable_name(&l.process.name, &l.process.path);
                (
                    l.socket,
                    PortHolder {
                        pid: l.process.pid,
                        name,
                    },
                )
            }),
    )
}

/// Of the listening sockets, one whose address keeps `wanted` from being bound: one on
/// exactly that address first, then the lowest pid (several processes may listen on one
/// port with `SO_REUSEPORT`, or on its IPv4 and IPv6 sides).
fn pick(
    wanted: SocketAddr,
    listening: impl Iterator<Item = (SocketAddr, PortHolder)>,
) -> Option<PortHolder> {
    listening
        .filter(|(held, _)| conflicts(wanted, *held))
        .min_by_key(|(held, holder)| (canonical(held.ip()) != canonical(wanted.ip()), holder.pid))
        .map(|(_, holder)| holder)
}

/// Whether a socket listening on `held` keeps one from listening on `wanted`: the same
/// port, and the same address or a wildcard on either side. An IPv6 wildcard (`[::]`,
/// dual-stack by default on Linux and macOS) covers IPv4 too; an IPv4-mapped IPv6
/// address (how Linux lists an IPv4 socket of a dual-stack listener) is its IPv4 one.
fn conflicts(wanted: SocketAddr, held: SocketAddr) -> bool {
    if wanted.port() != held.port() {
        return false;
    }
    let (wanted, held) = (canonical(wanted.ip()), canonical(held.ip()));
    match (wanted, held) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            wanted == held || wanted.is_unspecified() || held.is_unspecified()
        }
        (IpAddr::V4(_), IpAddr::V6(_)) => held.is_unspecified(),
        (IpAddr::V6(_), IpAddr::V4(_)) => wanted.is_unspecified(),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The executable's file name from its path when known, else the name the OS gives. On
/// Linux the latter is the kernel's `comm`: cut to 15 bytes, and whatever the process
/// renamed itself to. Linux marks the path of an executable replaced since it started
/// (an upgrade) " (deleted)"; that is not part of the name.
fn executable_name(name: &str, path: &str) -> String {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    match Path::new(path).file_name() {
        Some(file) if !file.is_empty() => file.to_string_lossy().into_owned(),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StartError;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    fn holder(pid: u32) -> PortHolder {
        PortHolder {
            pid,
            name: format!("p{pid}"),
        }
    }

    #[test]
    fn a_holder_reads_as_its_name_and_pid() {
        let h = PortHolder {
            pid: 1234,
            name: "carpool".into(),
        };
        assert_eq!(h.to_string(), "`carpool` (pid 1234)");
    }

    #[test]
    fn the_same_port_on_an_overlapping_address_conflicts() {
        let conflicting = [
            ("127.0.0.1:8787", "127.0.0.1:8787"),
            ("127.0.0.1:8787", "0.0.0.0:8787"),
            ("0.0.0.0:8787", "127.0.0.1:8787"),
            ("127.0.0.1:8787", "[::]:8787"),
            ("127.0.0.1:8787", "[::ffff:127.0.0.1]:8787"),
            ("[::]:8787", "127.0.0.1:8787"),
            ("[::1]:8787", "[::1]:8787"),
            ("[::1]:8787", "[::]:8787"),
        ];
        for (wanted, held) in conflicting {
            assert!(conflicts(at(wanted), at(held)), "{wanted} vs {held}");
        }
        let apart = [
            ("127.0.0.1:8787", "127.0.0.1:8788"),
            ("127.0.0.1:8787", "127.0.0.2:8787"),
            ("127.0.0.1:8787", "[::1]:8787"),
            ("[::1]:8787", "0.0.0.0:8787"),
            ("[::1]:8787", "127.0.0.1:8787"),
        ];
        for (wanted, held) in apart {
            assert!(!conflicts(at(wanted), at(held)), "{wanted} vs {held}");
        }
    }

    #[test]
    fn the_exact_address_is_picked_first_then_the_lowest_pid() {
        let wanted = at("127.0.0.1:8787");
        let listening = vec![
            (at("0.0.0.0:8787"), holder(5)),
            (at("127.0.0.1:9999"), holder(1)),
            (at("127.0.0.1:8787"), holder(40)),
            (at("[::ffff:127.0.0.1]:8787"), holder(30)),
        ];
        assert_eq!(pick(wanted, listening.into_iter()), Some(holder(30)));
        let wildcards = vec![
            (at("[::]:8787"), holder(9)),
            (at("0.0.0.0:8787"), holder(7)),
        ];
        assert_eq!(pick(wanted, wildcards.into_iter()), Some(holder(7)));
        let elsewhere = vec![(at("127.0.0.1:8788"), holder(1))];
        assert_eq!(pick(wanted, elsewhere.into_iter()), None);
    }

    #[test]
    fn the_name_is_the_executables_file_name_when_its_path_is_known() {
        assert_eq!(executable_name("carpool", "/usr/bin/carpool"), "carpool");
        // Linux's comm is cut to 15 bytes; the path has it whole.
        assert_eq!(
            executable_name("serve-0123456789", "/t/deps/serve-0123456789abcdef"),
            "serve-0123456789abcdef"
        );
        assert_eq!(
            executable_name("carpool", "/usr/bin/carpool (deleted)"),
            "carpool"
        );
        assert_eq!(executable_name("launchd", ""), "launchd");
    }

    #[tokio::test]
    async fn this_process_is_found_listening_and_a_free_port_has_no_holder() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let found = find(addr).await.expect("this process holds the port");
        assert_eq!(found.pid, std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(found.name, exe.file_name().unwrap().to_string_lossy());
        drop(taken);
        assert_eq!(find(addr).await, None, "nobody listens there now");
    }

    #[test]
    fn the_message_names_the_holder_else_says_the_port_is_in_use() {
        let addr = at("127.0.0.1:8787");
        let in_use = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let named = StartError::Listen {
            addr,
            source: in_use(),
            holder: Some(PortHolder {
                pid: 1234,
                name: "carpool".into(),
            }),
        };
        assert_eq!(
            named.to_string(),
            "cannot listen on 127.0.0.1:8787: the port is in use by `carpool` (pid 1234)"
        );
        let unknown = StartError::Listen {
            addr,
            source: in_use(),
            holder: None,
        };
        assert_eq!(
            unknown.to_string(),
            "cannot listen on 127.0.0.1:8787: the port is already in use"
        );
        let other = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "not here");
        let elsewhere = StartError::Listen {
            addr,
            source: other,
            holder: None,
        };
        assert_eq!(
            elsewhere.to_string(),
            "cannot listen on 127.0.0.1:8787: not here"
        );
    }

    #[tokio::test]
    async fn only_a_port_in_use_is_looked_up() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let holder_of = |e: StartError| match e {
            StartError::Listen { holder, .. } => holder,
            other => panic!("{other}"),
        };
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let found = holder_of(StartError::listen(addr, in_use).await);
        assert_eq!(found.map(|h| h.pid), Some(std::process::id()));
        let refused = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(holder_of(StartError::listen(addr, refused).await), None);
    }

    #[tokio::test]
    async fn a_lookup_that_hangs_or_panics_gives_no_holder_in_time() {
        let limit = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let hung = bounded(
            || {
                std::thread::sleep(Duration::from_secs(30));
                Some(holder(1))
            },
            limit,
        )
        .await;
        assert_eq!(hung, None);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?}",
            started.elapsed()
        );
        let panicked: Option<PortHolder> = bounded(|| panic!("lookup failed"), limit).await;
        assert_eq!(panicked, None);
        assert_eq!(bounded(|| Some(holder(2)), limit).await, Some(holder(2)));
    }
}
