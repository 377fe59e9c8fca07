//! Open file descriptors: the soft limit raised to the hard one at start,
//! and listeners (tonic's and axum's) that say when the process is near
//! its limit, and at the limit pause instead of spinning and say so, each
//! time with the fix.
//!
//! Every connection holds a descriptor: a coordinator one for each worker
//! and client, a worker serving changes one to and one from each other
//! worker serving changes. Many systems start a process with a soft limit
//! of 1,024 (a login shell, systemd) under a far higher hard one, so a pool
//! of a few hundred workers would run out where nothing is wrong but a
//! default. At the limit `accept` fails while the connection stays queued,
//! and tonic's accept loop, which skips accept errors, then tried again at
//! once for as long as it lasted: a core spinning without a word in the
//! log, with new workers and clients left waiting.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

use crate::exposition::{Exposition, MetricKind};

/// How long a listener waits after a failed accept before the next try:
/// short enough that a freed descriptor is used soon, long enough that a
/// listener at the limit costs nothing.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How often a listener that keeps failing says so again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What to do at the limit, for the messages that meet it.
const FIX: &str = "a coordinator keeps a descriptor for each worker and client, a worker \
serving changes two for each other worker serving changes. Fix: raise the hard limit \
(`ulimit -Hn`, systemd's LimitNOFILE, the container runtime's nofile limit); dreamfarm \
raises its soft limit to the hard one at start";

/// The share of the limit, in percent, in use when a listener says it is
/// near: connections still come in, and there is time to raise it.
const NEAR_PERCENT: u64 = 80;

/// The share below which it says so again when it next gets near.
const CLEAR_PERCENT: u64 = 70;

/// The most the soft limit is raised to: a pool of hundreds of thousands
/// of workers, where a hard limit of `infinity` (2^30 on some systems)
/// would slow whatever walks every descriptor a process could have.
const MOST: u64 = 1 << 20;

/// Raises this process's soft limit on open files to its hard limit (at
/// most `MOST`), as it holds a connection per worker or neighbour, and
/// logs the limit. Recent containerd and Docker start containers with
/// systemd's defaults, a soft limit of 1,024 under a hard one of 524,288,
/// and leave it to a program that needs more to raise its soft limit so.
#[cfg(target_os = "linux")]
pub fn raise_limit() {
    let Some(mut limit) = limits() else {
        return;
    };
    let before = limit.rlim_cur;
    let wanted = limit.rlim_max.min(MOST);
    if before < wanted {
        // Only the first raise knows the limit the process was given.
        let _ = STARTED_WITH.set(before);
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit reads the struct it is given; a soft limit up
        // to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(
                open_files = before,
                "cannot raise the open files limit: {e}"
            );
            return;
        }
    }
    tracing::info!(
        open_files = limit.rlim_cur,
        raised_from = before,
        "open files limit"
    );
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn raise_limit() {}

/// The soft limit this process was started with, once [`raise_limit`]
/// raised it.
#[cfg(target_os = "linux")]
static STARTED_WITH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Starts the program `command` runs (ffmpeg, pip, npm) with the soft
/// limit this process was given, not the one [`raise_limit`] raised it to:
/// the raise is for dreamfarm's connections, and a program written for the
/// usual 1,024 may `select()` on its descriptors, which breaks past 1,024,
/// or walk every descriptor its limit allows before it starts.
pub fn child_limit(command: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    if let Some(&soft) = STARTED_WITH.get() {
        with_soft_limit(command, soft);
    }
    command
}

/// Has `command` set its soft limit on open files to `soft` before it
/// starts its program; its hard limit stays this process's.
#[cfg(target_os = "linux")]
fn with_soft_limit(command: &mut Command, soft: u64) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls may be made: getrlimit and setrlimit
    // are system calls, and it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && soft < limit.rlim_cur {
                limit.rlim_cur = soft;
                // A failure leaves the raised limit, which still works.
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
            Ok(())
        });
    }
}

/// This process's soft and hard limits on open files, if they can be read.
#[cfg(target_os = "linux")]
fn limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// This process's soft limit on open files, if it can be read.
#[cfg(target_os = "linux")]
fn limit() -> Option<u64> {
    limits().map(|l| l.rlim_cur)
}

/// Elsewhere it is not read.
#[cfg(not(target_os = "linux"))]
fn limit() -> Option<u64> {
    None
}

/// How many descriptors this process has open, if it can tell.
fn in_use() -> Option<u64> {
    // Less the one reading the folder.
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(open.saturating_sub(1) as u64)
}

/// Adds the descriptors open and the limit to `page`, under the names
/// Prometheus' own client libraries give them (`process_open_fds`,
/// `process_max_fds`), so that the usual alert on their ratio covers
/// dreamfarm's processes too; a value that cannot be read is left out.
pub fn expose(page: &mut Exposition) {
    for (name, help, value) in [
        ("process_open_fds", "Open file descriptors.", in_use()),
        (
            "process_max_fds",
            "The limit on open file descriptors (the soft one, which dreamfarm raises to the hard one at start).",
            limit(),
        ),
    ] {
        if let Some(value) = value {
            page.metric(name, MetricKind::Gauge, help, value as f64);
        }
    }
}

/// Whose descriptors ran out, when a call failed for want of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortage {
    /// This process is at its limit (EMFILE).
    Process,
    /// The system's table of open files is full (ENFILE).
    System,
}

/// Whose descriptors `e` says ran out, if that is what it says: not a
/// fault of the peer or the network.
fn shortage(e: &io::Error) -> Option<Shortage> {
    #[cfg(target_os = "linux")]
    return match e.raw_os_error() {
        Some(libc::EMFILE) => Some(Shortage::Process),
        Some(libc::ENFILE) => Some(Shortage::System),
        _ => None,
    };
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// What to add to an error whose chain holds `links` when one of them is
/// this process, `who`, out of descriptors: the limit and the fix (a
/// connection to a neighbour that fails so is no fault of the network
/// between them).
pub fn advice<'a>(
    who: &str,
    links: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Option<String> {
    links
        .into_iter()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .find_map(shortage)
        .map(|short| at_the_limit(who, short))
}

/// The sentence that says `who` (a process) could not have a descriptor.
fn at_the_limit(who: &str, short: Shortage) -> String {
    match (short, limit()) {
        (Shortage::Process, Some(n)) => {
            format!("{who} has all the {n} open files its limit allows: {FIX}")
        }
        (Shortage::Process, None) => {
            format!("{who} has all the open files its limit allows: {FIX}")
        }
        (Shortage::System, _) => format!(
            "{who} found the machine's table of open files full. Fix: raise fs.file-max \
             (sysctl), or stop what holds them"
        ),
    }
}

/// Connections accepted from `S` (a listener's stream), for tonic's
/// `serve_with_incoming` (and, through [`HttpListener`], axum's `serve`):
/// a connection that failed before it was accepted
/// is skipped, and any other failure (out of descriptors or memory) is
/// logged and paused for 100 ms before the next try, instead of
/// retried at once. It never yields an error. When an accepted connection
/// shows the process near its limit, it says so once, with the fix.
pub struct Accepting<S> {
    inner: S,
    /// What listens, for the log ("the coordinator's gRPC port").
    what: &'static str,
    /// Running until the next try, after a failure.
    pause: Option<Pin<Box<Sleep>>>,
    /// The failures since the last connection accepted.
    trouble: Option<Trouble>,
    /// Whether it has said the process is near its limit (until it is
    /// well below again).
    near: bool,
}

/// A stretch of failed accepts.
struct Trouble {
    since: Instant,
    failures: u64,
    /// When it was last said.
    warned: Option<Instant>,
}

impl Accepting<TcpListenerStream> {
    /// Connections from the TCP `listener` of `what`.
    pub fn tcp(listener: TcpListener, what: &'static str) -> Self {
        Self::new(TcpListenerStream::new(listener), what)
    }
}

impl<S> Accepting<S> {
    /// Connections from `inner`, the listener of `what`.
    pub fn new(inner: S, what: &'static str) -> Self {
        Self {
            inner,
            what,
            pause: None,
            trouble: None,
            near: false,
        }
    }

    /// Says once, when a connection accepted on descriptor `fd` shows the
    /// process near its `limit`, how near and what to raise: a new
    /// descriptor takes the lowest number free, so every one below `fd` is
    /// open, which costs nothing to learn where counting them would.
    fn check_headroom(&mut self, fd: RawFd, limit: Option<u64>) {
        let Some(limit) = limit.filter(|&l| l > 0) else {
            return;
        };
        let open = u64::try_from(fd).map_or(0, |fd| fd + 1);
        // Saturating: a limit of `infinity` is never near.
        let percent_of = |share: u64| limit.saturating_mul(share);
        let used = open.saturating_mul(100);
        if used >= percent_of(NEAR_PERCENT) {
            if !self.near {
                self.near = true;
                tracing::warn!(
                    open_files = open,
                    limit,
                    "{} accepted a connection with at least {open} of the {limit} open files \
                     this process's limit allows in use; at the limit new connections wait: {FIX}",
                    self.what
                );
            }
        } else if used < percent_of(CLEAR_PERCENT) {
            self.near = false;
        }
    }

    /// Logs the failed accept `e` (the first of a stretch, then once a
    /// minute while it lasts) and starts the pause.
    fn failed(&mut self, e: &io::Error) {
        let now = Instant::now();
        let trouble = self.trouble.get_or_insert(Trouble {
            since: now,
            failures: 0,
            warned: None,
        });
        trouble.failures += 1;
        if trouble
            .warned
            .is_none_or(|warned| now.duration_since(warned) >= WARN_EVERY)
        {
            trouble.warned = Some(now);
            let what = self.what;
            let pause = ACCEPT_PAUSE.as_millis();
            let failures = trouble.failures;
            if let Some(short) = shortage(e) {
                let why = at_the_limit("this process", short);
                tracing::warn!(
                    failures,
                    "cannot accept connections on {what} ({e}); they wait, tried again every {pause} ms: {why}"
                );
            } else {
                tracing::warn!(
                    failures,
                    "cannot accept connections on {what} ({e}); they wait, tried again every {pause} ms"
                );
            }
        }
        self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
    }
}

/// Failures of one connection before it was accepted: the next one is
/// unaffected.
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl<S, T> Stream for Accepting<S>
where
    S: Stream<Item = io::Result<T>> + Unpin,
    T: AsRawFd,
{
    type Item = io::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(connection)) => {
                    if let Some(t) = this.trouble.take() {
                        tracing::info!(
                            failures = t.failures,
                            "accepting connections on {} again after {:.1} s",
                            this.what,
                            t.since.elapsed().as_secs_f64()
                        );
                    }
                    this.check_headroom(connection.as_raw_fd(), limit());
                    return Poll::Ready(Some(Ok(connection)));
                }
                Some(Err(e)) if connection_error(&e) => continue,
                Some(Err(e)) => this.failed(&e),
            }
        }
    }
}

/// A TCP listener for axum's `serve` (the web interface, metrics and
/// health ports) whose failed accepts go as [`Accepting`]'s do: axum's own
/// loop logs an error each second at the limit, without the fix.
pub struct HttpListener {
    connections: Accepting<TcpListenerStream>,
}

impl HttpListener {
    /// Connections from `listener`, the listener of `what`.
    pub fn new(listener: TcpListener, what: &'static str) -> Self {
        Self {
            connections: Accepting::tcp(listener, what),
        }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.connections.next().await {
                // A peer gone before its address is read: the next one.
                Some(Ok(stream)) => match stream.peer_addr() {
                    Ok(peer) => return (stream, peer),
                    Err(_) => continue,
                },
                // `Accepting` yields no errors, and a listener's
                // connections never end.
                Some(Err(_)) | None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.connections.inner.as_ref().local_addr()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::time::Instant;
    use tokio_stream::StreamExt;

    use super::*;

    /// A connection accepted on the descriptor it holds.
    #[derive(Debug, PartialEq)]
    struct Conn(RawFd);

    impl AsRawFd for Conn {
        fn as_raw_fd(&self) -> RawFd {
            self.0
        }
    }

    /// A listener's stream that yields `script` in order, counting polls
    /// and when each item was taken.
    struct Scripted {
        script: VecDeque<io::Result<Conn>>,
        taken: Vec<Instant>,
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = io::Result<Conn>>) -> Self {
            Self {
                script: script.into_iter().collect(),
                taken: Vec::new(),
            }
        }
    }

    impl Stream for Scripted {
        type Item = io::Result<Conn>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.taken.push(Instant::now());
            Poll::Ready(self.script.pop_front())
        }
    }

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_out_of_descriptors_pauses_and_never_yields_the_error() {
        let script = [
            Ok(Conn(1)),
            Err(emfile()),
            Err(emfile()),
            Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            Ok(Conn(2)),
        ];
        let mut accepting = Accepting::new(Scripted::new(script), "a test port");
        let start = Instant::now();
        let mut got = Vec::new();
        while let Some(item) = accepting.next().await {
            got.push(item.expect("no error comes out"));
        }
        assert_eq!(got, [Conn(1), Conn(2)]);
        // One pause after each failed accept, none after a connection's
        // own failure: the try after each of the two EMFILEs waited.
        let taken = &accepting.inner.taken;
        assert_eq!(taken.len(), 6, "five items and the end");
        assert_eq!(taken[2] - taken[1], ACCEPT_PAUSE);
        assert_eq!(taken[3] - taken[2], ACCEPT_PAUSE);
        assert_eq!(
            taken[4], taken[3],
            "a connection's own failure is not paused"
        );
        assert_eq!(start.elapsed(), 2 * ACCEPT_PAUSE);
        assert!(
            accepting.trouble.is_none(),
            "the connection ended the stretch"
        );
    }

    /// A connection on a descriptor past 80% of the limit says the process
    /// is near it, once, until one below 70% shows it well below again.
    #[test]
    fn a_connection_near_the_limit_says_so_once() {
        let mut accepting = Accepting::new(Scripted::new([]), "a test port");
        let said: Vec<bool> = [500, 799, 900, 950, 750, 650, 800]
            .into_iter()
            .map(|fd| {
                accepting.check_headroom(fd, Some(1000));
                accepting.near
            })
            .collect();
        // Descriptor 799 is the 800th open: 80%. Between 70% and 80% it
        // neither says so again nor forgets.
        assert_eq!(said, [false, true, true, true, true, false, true]);
        accepting.check_headroom(999, None);
        assert!(accepting.near, "an unknown limit changes nothing");
    }

    /// axum serves through it: a request gets its answer, and the
    /// listener says where it listens.
    #[tokio::test]
    async fn axum_serves_through_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let listener = HttpListener::new(tcp, "a test port");
        let addr = axum::serve::Listener::local_addr(&listener).expect("an address");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut client = TcpStream::connect(addr).await.expect("connected");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("request sent");
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("answer");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("hello"),
            "{answer}"
        );
    }

    /// The value of gauge `name` on a page [`expose`] writes now.
    fn exposed(name: &str) -> f64 {
        let mut page = Exposition::default();
        expose(&mut page);
        let page = page.finish();
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {page}"))
    }

    #[test]
    fn the_descriptors_open_and_their_limit_are_exposed() {
        assert_eq!(
            exposed("process_max_fds"),
            limit().expect("the limit") as f64
        );
        let before = exposed("process_open_fds");
        // Many, as the other tests of this binary open and close a few.
        let held: Vec<std::fs::File> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/stat").expect("a file"))
            .collect();
        let opened = exposed("process_open_fds") - before;
        assert!(
            (190.0..=210.0).contains(&opened),
            "{opened} more open, not 200"
        );
        drop(held);
    }

    /// A program started through [`with_soft_limit`] gets that soft
    /// limit, and the hard one stays.
    #[test]
    fn a_child_starts_with_the_limit_given() {
        let ulimit = |soft: Option<u64>| {
            let mut sh = Command::new("sh");
            sh.args(["-c", "echo $(ulimit -Sn) $(ulimit -Hn)"]);
            if let Some(soft) = soft {
                with_soft_limit(&mut sh, soft);
            }
            let out = sh.output().expect("sh runs");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let own = limits().expect("the limits");
        assert_eq!(ulimit(None), format!("{} {}", own.rlim_cur, own.rlim_max));
        assert_eq!(ulimit(Some(256)), format!("256 {}", own.rlim_max));
        // Never raised by it.
        assert_eq!(
            ulimit(Some(own.rlim_cur.saturating_add(1))),
            format!("{} {}", own.rlim_cur, own.rlim_max)
        );
    }

    #[test]
    fn an_error_out_of_descriptors_gets_the_limit_and_the_fix() {
        let e = emfile();
        let said =
            advice("the worker", [&e as &(dyn std::error::Error + 'static)]).expect("advice");
        assert!(said.starts_with("the worker has all the "), "{said}");
        assert!(said.contains("open files its limit allows"), "{said}");
        assert!(said.contains("LimitNOFILE"), "{said}");
        let system = io::Error::from_raw_os_error(libc::ENFILE);
        let said = advice(
            "the worker",
            [&system as &(dyn std::error::Error + 'static)],
        )
        .expect("advice");
        assert!(
            said.contains("table of open files full. Fix: raise fs.file-max"),
            "{said}"
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(
            advice(
                "the worker",
                [&refused as &(dyn std::error::Error + 'static)]
            )
            .is_none()
        );
    }
}
