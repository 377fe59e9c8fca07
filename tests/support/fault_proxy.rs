//! A TCP proxy on loopback that puts network faults on one link, for the
//! tests: it listens on 127.0.0.1, forwards every connection to a target on
//! loopback, and applies faults that the test switches at run time, per
//! direction: latency per chunk, a bandwidth cap, a reset (RST) after a
//! number of bytes, and a partition that holds every byte in both
//! directions, with the connections open, until healed; and stranding:
//! the connections open so far go silent for good while new ones pass, as
//! when a NAT or conntrack entry is lost or a peer vanishes without a word.
//!
//! It runs on its own runtime, so synchronous tests drive it through plain
//! method calls, and it stops, closing its connections, when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read from a socket at a time: one chunk, delayed and counted as a
/// unit.
const READ_BYTES: usize = 16 * 1024;

/// Chunks a direction holds between reading and writing (latency,
/// bandwidth cap or partition) before it stops reading.
const HELD_CHUNKS: usize = 64;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the target.
    ToTarget,
    /// From the target back to the client.
    FromTarget,
}

/// The faults on one direction.
#[derive(Debug, Clone, Default)]
struct LinkFaults {
    /// Added to every chunk's trip.
    latency: Duration,
    /// Most bytes per second; `None`: as fast as the sockets go.
    bytes_per_second: Option<u64>,
    /// Bytes still let through before the connection carrying them is
    /// reset; `None`: no reset due.
    reset_after: Option<u64>,
}

/// Every fault, as the test last set them.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Client to target.
    to_target: LinkFaults,
    /// Target to client.
    from_target: LinkFaults,
    /// Nothing is forwarded, either way, while set.
    partitioned: bool,
    /// Connections numbered below this never forward another byte.
    stranded_below: u64,
}

impl Faults {
    /// Whether connection number `connection` may forward now.
    fn lets_through(&self, connection: u64) -> bool {
        !self.partitioned && connection >= self.stranded_below
    }
}

impl Faults {
    /// The faults of one direction.
    fn link(&self, direction: Direction) -> &LinkFaults {
        match direction {
            Direction::ToTarget => &self.to_target,
            Direction::FromTarget => &self.from_target,
        }
    }

    /// The faults of one direction, to change.
    fn link_mut(&mut self, direction: Direction) -> &mut LinkFaults {
        match direction {
            Direction::ToTarget => &mut self.to_target,
            Direction::FromTarget => &mut self.from_target,
        }
    }
}

/// What the proxy has done, for the tests to check that a fault happened.
#[derive(Debug, Default)]
struct Counters {
    /// Connections accepted.
    connections: AtomicU64,
    /// Connections cut by a reset fault.
    resets: AtomicU64,
    /// Bytes forwarded to the target.
    to_target: AtomicU64,
    /// Bytes forwarded back to clients.
    from_target: AtomicU64,
}

impl Counters {
    /// The byte counter of one direction.
    fn forwarded(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToTarget => &self.to_target,
            Direction::FromTarget => &self.from_target,
        }
    }
}

/// What a connection's tasks share.
struct Link {
    /// Where connections go.
    target: SocketAddr,
    /// The faults; changed by the test, read (and a reset's byte budget
    /// spent) by the connections.
    faults: watch::Sender<Faults>,
    /// What happened.
    counters: Counters,
}

/// Why a direction stopped before its end of stream.
#[derive(Debug)]
enum Cut {
    /// A reset fault fired.
    Reset,
    /// A socket failed (e.g. the peer reset it).
    Io,
}

/// A running fault-injecting proxy; stops when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Shared with the connections.
    link: Arc<Link>,
    /// Runs the proxy; dropping it ends every connection.
    runtime: Option<Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 that forwards to
    /// `target`, which must be on loopback too. No faults at first.
    pub fn start(target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback(),
            "the fault proxy only forwards on loopback, not to {target}"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime starts");
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("the proxy listens on loopback");
        let addr = listener.local_addr().expect("the proxy's address");
        let link = Arc::new(Link {
            target,
            faults: watch::Sender::new(Faults::default()),
            counters: Counters::default(),
        });
        runtime.spawn(accept_loop(listener, link.clone()));
        Self {
            addr,
            link,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a gRPC URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Delays every chunk going `direction` by `latency`.
    pub fn set_latency(&self, direction: Direction, latency: Duration) {
        self.change(|f| f.link_mut(direction).latency = latency);
    }

    /// Caps `direction` at `bytes_per_second` (`None`: no cap).
    pub fn set_bandwidth(&self, direction: Direction, bytes_per_second: Option<u64>) {
        assert_ne!(bytes_per_second, Some(0), "a cap of 0 is a partition");
        self.change(|f| f.link_mut(direction).bytes_per_second = bytes_per_second);
    }

    /// Resets (RST, both sides) the connection that carries the next
    /// `bytes` going `direction`, right after forwarding them; once.
    pub fn reset_after(&self, direction: Direction, bytes: u64) {
        self.change(|f| f.link_mut(direction).reset_after = Some(bytes));
    }

    /// Whether a reset asked for has not fired yet.
    pub fn reset_pending(&self, direction: Direction) -> bool {
        self.link
            .faults
            .borrow()
            .link(direction)
            .reset_after
            .is_some()
    }

    /// Stops forwarding in both directions, holding the bytes; the
    /// connections stay open, and new ones wait to reach the target.
    pub fn partition(&self) {
        self.change(|f| f.partitioned = true);
    }

    /// The connections open so far stop forwarding for good, both ways,
    /// and stay open: only a peer's own timeout can end them. New
    /// connections pass.
    pub fn strand(&self) {
        let next = self.connections();
        self.change(|f| f.stranded_below = next);
    }

    /// Forwards again whatever a partition held.
    pub fn heal(&self) {
        self.change(|f| f.partitioned = false);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.link.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections cut by a reset so far.
    pub fn resets(&self) -> u64 {
        self.link.counters.resets.load(Ordering::SeqCst)
    }

    /// Bytes forwarded going `direction` so far.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.link
            .counters
            .forwarded(direction)
            .load(Ordering::SeqCst)
    }

    /// Changes the faults and wakes the connections waiting on them.
    fn change(&self, edit: impl FnOnce(&mut Faults)) {
        self.link.faults.send_modify(edit);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Accepts connections until the runtime stops.
async fn accept_loop(listener: TcpListener, link: Arc<Link>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let number = link.counters.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(client, number, link.clone()));
            }
            // Out of descriptors or the like: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Forwards one connection both ways until both ends close or a fault or
/// an error cuts it; a cut resets both sides.
async fn connection(mut client: TcpStream, number: u64, link: Arc<Link>) {
    // A partition holds new connections too: the target hears of one only
    // once it heals.
    if link
        .faults
        .subscribe()
        .wait_for(|f| f.lets_through(number))
        .await
        .is_err()
    {
        return;
    }
    let Ok(mut server) = TcpStream::connect(link.target).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (client_in, client_out) = client.split();
        let (server_in, server_out) = server.split();
        tokio::try_join!(
            pipe(client_in, server_out, Direction::ToTarget, number, &link),
            pipe(server_in, client_out, Direction::FromTarget, number, &link),
        )
    };
    if let Err(cut) = outcome {
        if matches!(cut, Cut::Reset) {
            link.counters.resets.fetch_add(1, Ordering::SeqCst);
        }
        // Dropping a socket with a zero linger sends RST, not FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// One direction of a connection: a reader that timestamps chunks and a
/// writer that lets each through when the faults allow; ends with FIN
/// after the reader's end of stream.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    direction: Direction,
    connection: u64,
    link: &Link,
) -> Result<(), Cut> {
    let (held_tx, mut held) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let read = async move {
        let mut buf = vec![0; READ_BYTES];
        loop {
            let n = from.read(&mut buf).await.map_err(|_| Cut::Io)?;
            if n == 0
                || held_tx
                    .send((Instant::now(), buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((read_at, chunk)) = held.recv().await {
            forward(&mut to, read_at, &chunk, direction, connection, link).await?;
        }
        let _ = to.shutdown().await;
        Ok(())
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Writes one chunk of connection number `connection` once its latency
/// has passed, no partition or stranding holds it and the bandwidth cap
/// allows; a reset due within it lets the bytes before the reset through,
/// then cuts.
async fn forward(
    to: &mut WriteHalf<'_>,
    read_at: Instant,
    chunk: &[u8],
    direction: Direction,
    connection: u64,
    link: &Link,
) -> Result<(), Cut> {
    let latency = link.faults.borrow().link(direction).latency;
    tokio::time::sleep_until(read_at + latency).await;
    let mut faults = link.faults.subscribe();
    faults
        .wait_for(|f| f.lets_through(connection))
        .await
        .map_err(|_| Cut::Io)?;
    let cap = link.faults.borrow().link(direction).bytes_per_second;
    if let Some(rate) = cap {
        let seconds = chunk.len() as f64 / rate as f64;
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
    let (allowed, reset) = spend_reset_budget(link, direction, chunk.len());
    to.write_all(&chunk[..allowed]).await.map_err(|_| Cut::Io)?;
    link.counters
        .forwarded(direction)
        .fetch_add(allowed as u64, Ordering::SeqCst);
    if reset {
        return Err(Cut::Reset);
    }
    Ok(())
}

/// Takes `len` bytes from a pending reset's budget; returns how many may
/// go through and whether the connection is to be reset after them (the
/// reset is then spent).
fn spend_reset_budget(link: &Link, direction: Direction, len: usize) -> (usize, bool) {
    let mut outcome = (len, false);
    link.faults.send_if_modified(|f| {
        let faults = f.link_mut(direction);
        match faults.reset_after {
            Some(left) if left <= len as u64 => {
                outcome = (left as usize, true);
                faults.reset_after = None;
            }
            Some(left) => faults.reset_after = Some(left - len as u64),
            None => {}
        }
        false
    });
    outcome
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::thread::JoinHandle;

    use super::*;

    /// A loopback server that echoes every byte back, on its own thread.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut copy = stream.try_clone().expect("clone");
                    let _ = std::io::copy(&mut stream, &mut copy);
                    let _ = copy.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    /// `len` bytes that are not all alike.
    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Sends `data` through a connection to `addr` on another thread and
    /// reads until the end of stream or an error: the bytes read, and
    /// whether the read ended in an error (a reset).
    fn exchange(addr: SocketAddr, data: Vec<u8>) -> (Vec<u8>, bool) {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let sender: JoinHandle<()> = std::thread::spawn(move || {
            let _ = writer.write_all(&data);
            let _ = writer.shutdown(Shutdown::Write);
        });
        let mut got = Vec::new();
        let mut buf = [0; 8192];
        let failed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => panic!("read timed out"),
                Err(_) => break true,
            }
        };
        sender.join().expect("sender");
        (got, failed)
    }

    /// A connection through `proxy` that has echoed one byte.
    fn connected(proxy: &FaultProxy) -> TcpStream {
        let mut stream = TcpStream::connect(proxy.addr()).expect("connect");
        stream.write_all(b"1").expect("write");
        let mut buf = [0; 1];
        stream.read_exact(&mut buf).expect("echo");
        stream
    }

    /// Panics unless nothing arrives on `stream`, and it does not close,
    /// within half a second.
    fn assert_silent(stream: &mut TcpStream, what: &str) {
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let got = stream.read(&mut [0; 16]).map_err(|e| e.kind());
        assert!(
            matches!(got, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{what}: {got:?}"
        );
    }

    /// Reads `expected.len()` bytes from `stream` (waiting up to 10 s) and
    /// compares them.
    fn assert_receives(stream: &mut TcpStream, expected: &[u8]) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = vec![0; expected.len()];
        stream.read_exact(&mut buf).expect("delivered");
        assert_eq!(buf, expected);
    }

    #[test]
    fn bytes_pass_through_unchanged_with_latency_and_a_cap() {
        let proxy = FaultProxy::start(echo_server());
        let data = payload(3 << 20);
        let (got, failed) = exchange(proxy.addr(), data.clone());
        assert!(
            !failed && got == data,
            "{} of {} bytes",
            got.len(),
            data.len()
        );

        proxy.set_latency(Direction::ToTarget, Duration::from_millis(100));
        proxy.set_bandwidth(Direction::FromTarget, Some(1 << 20));
        let start = std::time::Instant::now();
        let data = payload(1 << 20);
        let (got, failed) = exchange(proxy.addr(), data.clone());
        let took = start.elapsed();
        assert!(
            !failed && got == data,
            "{} of {} bytes",
            got.len(),
            data.len()
        );
        assert!(
            took >= Duration::from_millis(1000),
            "1 MiB at 1 MiB/s plus 100 ms took only {took:?}"
        );
        assert_eq!(proxy.forwarded(Direction::ToTarget), 4 << 20);
        assert_eq!(proxy.forwarded(Direction::FromTarget), 4 << 20);
        assert_eq!((proxy.connections(), proxy.resets()), (2, 0));
    }

    #[test]
    fn a_reset_cuts_a_transfer_in_the_middle() {
        let proxy = FaultProxy::start(echo_server());
        proxy.reset_after(Direction::FromTarget, 100_000);
        let data = payload(1 << 20);
        let (got, failed) = exchange(proxy.addr(), data.clone());
        assert!(failed, "the reader sees a reset, not an end of stream");
        assert!(got.len() <= 100_000, "{} bytes got through", got.len());
        assert_eq!(got, data[..got.len()], "what got through is unchanged");
        assert_eq!(proxy.resets(), 1);
        assert!(!proxy.reset_pending(Direction::FromTarget));
        // Spent: the next connection is whole.
        let (got, failed) = exchange(proxy.addr(), data.clone());
        assert!(!failed && got == data);
    }

    #[test]
    fn a_partition_holds_the_bytes_then_delivers_them() {
        let proxy = FaultProxy::start(echo_server());
        let mut stream = connected(&proxy);
        proxy.partition();
        stream.write_all(b"during").expect("write");
        assert_silent(&mut stream, "nothing comes back during a partition");
        // New connections are held too.
        let mut late = TcpStream::connect(proxy.addr()).expect("connect");
        late.write_all(b"late").expect("write");
        assert_silent(&mut late, "a new connection is held too");
        proxy.heal();
        assert_receives(&mut stream, b"during");
        assert_receives(&mut late, b"late");
        assert_eq!(proxy.resets(), 0);
    }

    #[test]
    fn stranded_connections_go_silent_for_good_while_new_ones_pass() {
        let proxy = FaultProxy::start(echo_server());
        let mut old = connected(&proxy);
        proxy.strand();
        old.write_all(b"2").expect("write");
        assert_silent(
            &mut old,
            "a stranded connection neither delivers nor closes",
        );
        let data = payload(100_000);
        let (got, failed) = exchange(proxy.addr(), data.clone());
        assert!(!failed && got == data, "a new connection passes");
        assert_silent(&mut old, "it stays silent");
    }

    #[test]
    fn dropping_the_proxy_closes_its_connections() {
        let proxy = FaultProxy::start(echo_server());
        let mut stream = connected(&proxy);
        let addr = proxy.addr();
        drop(proxy);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert!(
            matches!(stream.read(&mut [0; 1]), Ok(0) | Err(_)),
            "the connection ends"
        );
        assert!(
            TcpStream::connect(addr).is_err(),
            "nothing listens any more"
        );
    }
}
