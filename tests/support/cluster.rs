//! A cluster on loopback for the tests: a `dreamfarm coordinator` process
//! on free ports, `dreamfarm worker` processes, and the client commands.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup_limit::CgroupLimit;
use crate::small_disk::SmallDisk;
use crate::{binary, frame_bytes, repo, run};

/// The token every process of a test cluster shares.
pub const TOKEN: &str = "test-token";

/// A running coordinator, killed on drop.
pub struct Coordinator {
    child: Child,
    /// gRPC URL (`https://localhost:PORT` when it serves TLS).
    pub url: String,
    /// The gRPC listener's address.
    addr: SocketAddr,
    /// The CA its clients and workers trust, when it serves TLS.
    tls_ca: Option<PathBuf>,
    /// host:port of the metrics endpoint.
    pub metrics: String,
    /// Flags it was started with beyond the usual ones.
    extra: Vec<String>,
    /// Environment variables it was started with.
    env: Vec<(String, String)>,
    /// Its soft and hard limits on open files, if the test set them.
    open_files: Option<(u64, u64)>,
    /// Its data folder and the workers' logs.
    pub dir: tempfile::TempDir,
}

/// `dreamfarm coordinator` on `dir/data` with a short heartbeat timeout,
/// logging to `dir/coordinator.log` (appended, so restarts keep history).
fn coordinator_command(dir: &Path, listen: &str, metrics: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.args([
        "coordinator",
        "--listen",
        listen,
        "--metrics-listen",
        metrics,
    ])
    .args(["--token", TOKEN, "--heartbeat-timeout", "3", "--data"])
    .arg(dir.join("data"))
    .args(extra)
    .current_dir(repo());
    c
}

/// Starts a coordinator (with `open_files` as its soft and hard limits on
/// open files, if given) and reads the addresses it prints.
fn spawn_coordinator(
    dir: &Path,
    listen: &str,
    metrics: &str,
    extra: &[&str],
    env: &[(String, String)],
    open_files: Option<(u64, u64)>,
) -> Result<(Child, String, String), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("coordinator.log"))
        .map_err(|e| e.to_string())?;
    let mut command = coordinator_command(dir, listen, metrics, extra);
    if let Some((soft, hard)) = open_files {
        crate::limit_open_files(&mut command, soft, hard);
    }
    let mut child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    // "dreamfarm coordinator listening on A (metrics on http://M/metrics)"
    let addr = line.split_whitespace().nth(4);
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next());
    match (addr, metrics) {
        (Some(a), Some(m)) => Ok((child, a.to_string(), m.to_string())),
        _ => {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("coordinator.log")).unwrap_or_default();
            Err(format!("it printed {line:?}; its log: {log}"))
        }
    }
}

/// Runs `dreamfarm coordinator` on `dir` with `extra` flags as a one-off
/// process that must fail to start: its exit status and stderr. Panics if
/// it is still running after a minute (it started after all).
fn run_to_failure(dir: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let stderr = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = coordinator_command(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
        .stdout(Stdio::null())
        .stderr(stderr.reopen().expect("temp file"))
        .spawn()
        .expect("coordinator runs");
    let status = exit_within(&mut child, Duration::from_secs(60));
    let log = std::fs::read_to_string(stderr.path()).expect("the coordinator's stderr");
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the coordinator started instead of refusing to: {log}");
    };
    (status, log)
}

/// Waits up to `limit` for `child` to exit: its status, or `None` if it
/// is still running.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    exit_while_moving(child, limit, || 0)
}

/// Waits for `child` to exit as long as `progress` keeps changing: its
/// status, or `None` once `stall` passes with no change. A loaded machine
/// (CI runs the tests side by side on two cores) slows a render down
/// without stopping it; a hang still fails after `stall`.
fn exit_while_moving(
    child: &mut Child,
    stall: Duration,
    mut progress: impl FnMut() -> u64,
) -> Option<std::process::ExitStatus> {
    let mut seen = progress();
    let mut since = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        let now = progress();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > stall {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a coordinator with `extra` flags on a fresh data folder, as a
/// one-off process that must fail to start: its exit status and stderr.
pub fn coordinator_fails(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    run_to_failure(dir.path(), extra)
}

/// A running worker process, killed on drop.
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
    /// Where it keeps the weights files jobs upload (`--weights-cache`).
    pub weights_cache: PathBuf,
}

/// The environment of a coordinator as the benches measure it.
const MEASURED: &[(&str, &str)] = &[
    ("DREAMFARM_VIDEO_ENCODING", "after-last-frame"),
    ("DREAMFARM_MAX_MEMORY", "64GiB"),
];

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) that `child` has used.
fn cpu_seconds(child: &Child) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{}/stat", child.id())).expect("/proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf is always safe to call.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks_of = |i: usize| fields[i].parse::<f64>().expect("clock ticks");
    (ticks_of(11) + ticks_of(12)) / ticks
}

/// The value of series `name` (with its labels, `a_total{way="in"}`) on
/// the `/metrics` page at `host_port`.
fn metric_at(host_port: &str, name: &str) -> f64 {
    let body = crate::http::get(host_port, "/metrics", &[]).text();
    series(&body, name).unwrap_or_else(|| panic!("no metric {name} in {body}"))
}

/// The value of series `name` on a `/metrics` page `body`, if it is there.
pub fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

/// The most resident memory `child` has held, in GiB (VmHWM).
fn peak_rss_gib(child: &Child) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("/proc/PID/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / (1024.0 * 1024.0)
}

impl Worker {
    /// The most resident memory the worker process has held, in GiB.
    pub fn peak_rss_gib(&self) -> f64 {
        peak_rss_gib(&self.child)
    }

    /// Where the worker serves `/metrics`, as its log says: where it was
    /// told to (`--health-listen`), if its build has them.
    pub fn metrics_at(&self) -> Option<String> {
        let log = self.log();
        log.split_once("/metrics on http://")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string)
    }

    /// The value of series `name` on the worker's `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let at = self.metrics_at().unwrap_or_else(|| {
            panic!(
                "the worker serves no /metrics (--health-listen): {}",
                self.log()
            )
        });
        metric_at(&at, name)
    }

    /// The worker's `/metrics` page, if it serves one (a bench measuring
    /// an older build through `DREAMFARM_BIN` may not): read once for
    /// several series with [`series`].
    pub fn metrics_page(&self) -> Option<String> {
        Some(crate::http::get(&self.metrics_at()?, "/metrics", &[]).text())
    }

    /// CPU seconds (user + system) the worker process has used.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child)
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Coordinator {
    /// Starts a coordinator with a short heartbeat timeout.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a coordinator with a short heartbeat timeout and `extra`
    /// flags, on a fresh data folder.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, None, &[])
    }

    /// Starts a coordinator with a soft limit of `soft` open files under a
    /// hard one of `hard`, and `env`.
    pub fn start_with_open_files(soft: u64, hard: u64, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch_in(dir, &[], None, env, Some((soft, hard)))
    }

    /// Starts a coordinator as the benches measure it: its frame loops
    /// alone, with no video encoder beside them on the machine's cores
    /// (their jobs are stopped before they end, so no video is made either
    /// way), and a memory budget that lets every job a bench submits run at
    /// once. Set through the environment, which coordinators built before
    /// these settings ignore, so that benches still compare them
    /// (`DREAMFARM_BIN`).
    pub fn start_measured() -> Self {
        Self::launch(&[], None, MEASURED)
    }

    /// [`start_measured`](Self::start_measured), serving TLS as
    /// [`start_tls`](Self::start_tls) does.
    pub fn start_measured_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        Self::launch_tls(cert, key, ca, MEASURED)
    }

    /// Starts a coordinator that serves TLS with the PEM files `cert` and
    /// `key`; its URL is `https://localhost:PORT`, and its clients and
    /// workers trust `ca`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        Self::launch_tls(cert, key, ca, &[])
    }

    /// Starts a coordinator serving TLS with `cert` and `key`, its clients
    /// trusting `ca`, with `env`.
    fn launch_tls(cert: &Path, key: &Path, ca: &Path, env: &[(&str, &str)]) -> Self {
        let (cert, key) = (
            cert.to_str().expect("UTF-8 path"),
            key.to_str().expect("UTF-8 path"),
        );
        Self::launch(&["--tls-cert", cert, "--tls-key", key], Some(ca), env)
    }

    /// Starts a coordinator whose data folder is a file system of `bytes`
    /// (its logs stay on the usual disk); unmounted when the disk drops.
    pub fn start_on_small_disk(bytes: u64) -> (Self, SmallDisk) {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = SmallDisk::mount(&dir.path().join("data"), bytes);
        (Self::launch_in(dir, &[], None, &[], None), disk)
    }

    /// Starts a coordinator with `extra` flags and `env` on a fresh data
    /// folder, serving TLS that clients check with `ca` if one is given.
    fn launch(extra: &[&str], ca: Option<&Path>, env: &[(&str, &str)]) -> Self {
        Self::launch_in(tempfile::tempdir().expect("temp dir"), extra, ca, env, None)
    }

    /// [`launch`](Self::launch) with its data folder in `dir`, and
    /// `open_files` as its limits on open files if given.
    fn launch_in(
        dir: tempfile::TempDir,
        extra: &[&str],
        ca: Option<&Path>,
        env: &[(&str, &str)],
        open_files: Option<(u64, u64)>,
    ) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr, metrics) = spawn_coordinator(
            dir.path(),
            "127.0.0.1:0",
            "127.0.0.1:0",
            extra,
            &env,
            open_files,
        )
        .unwrap_or_else(|e| panic!("coordinator did not start: {e}"));
        let addr: SocketAddr = addr
            .parse()
            .expect("the coordinator listens on an IP address");
        Self {
            child,
            url: match ca {
                Some(_) => format!("https://localhost:{}", addr.port()),
                None => format!("http://{addr}"),
            },
            addr,
            tls_ca: ca.map(Path::to_path_buf),
            metrics,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env,
            open_files,
            dir,
        }
    }

    /// Kills the coordinator with SIGKILL, as a node failure would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the coordinator SIGTERM, as Kubernetes stopping its pod or a
    /// Ctrl-C does, and returns how it exited; panics (after killing it)
    /// unless it exits within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
        let Some(status) = exit_within(&mut self.child, limit) else {
            self.kill();
            panic!("the coordinator was still running {limit:?} after SIGTERM");
        };
        status
    }

    /// Starts the coordinator again (after [`kill`](Self::kill)) on the
    /// same data folder and ports, with the same flags and environment.
    pub fn restart(&mut self) {
        self.kill();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let listen = self.addr().to_string();
        let (child, _, _) = spawn_coordinator(
            self.dir.path(),
            &listen,
            &self.metrics,
            &extra,
            &self.env,
            self.open_files,
        )
        .unwrap_or_else(|e| panic!("coordinator did not restart: {e}"));
        self.child = child;
    }

    /// Runs the coordinator on this data folder as a one-off process that
    /// must fail to start: its exit status and stderr.
    pub fn start_fails(&self) -> (std::process::ExitStatus, String) {
        run_to_failure(self.dir.path(), &[])
    }

    /// The coordinator's data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `dreamfarm worker` named `name` on the CPU.
    pub fn worker(&self, name: &str) -> Worker {
        self.worker_via(name, &self.url)
    }

    /// Starts `dreamfarm worker` named `name` on the CPU, dialling the
    /// coordinator at `url` (a proxy in front of it, say) and trusting
    /// its CA, if it serves TLS.
    pub fn worker_via(&self, name: &str, url: &str) -> Worker {
        self.worker_via_with(name, url, &[])
    }

    /// [`worker_via`](Self::worker_via) with `extra` flags.
    pub fn worker_via_with(&self, name: &str, url: &str, extra: &[&str]) -> Worker {
        self.spawn_worker(name, url, "cpu", |_| (), extra)
    }

    /// Starts `dreamfarm worker` named `name` on the CPU with `extra`
    /// flags.
    pub fn worker_with(&self, name: &str, extra: &[&str]) -> Worker {
        self.spawn_worker(name, &self.url, "cpu", |_| (), extra)
    }

    /// Starts `dreamfarm worker` named `name` on the CPU, serving its
    /// changes to its neighbours on a loopback port (with `extra` flags:
    /// its TLS, say): it takes whole regions of frames.
    pub fn worker_serving_changes(&self, name: &str, extra: &[&str]) -> Worker {
        let mut flags = vec!["--change-listen", "127.0.0.1:0"];
        flags.extend_from_slice(extra);
        self.spawn_worker(name, &self.url, "cpu", |_| (), &flags)
    }

    /// Starts `dreamfarm worker` named `name` on `devices` (`--device`).
    pub fn worker_on(&self, name: &str, devices: &str) -> Worker {
        self.spawn_worker(name, &self.url, devices, |_| (), &[])
    }

    /// Starts `dreamfarm worker` named `name` on the CPU, allowed to
    /// allocate at most `bytes` (see [`crate::limit_memory`]): a worker
    /// whose GPU or machine has that little memory.
    pub fn worker_with_memory(&self, name: &str, bytes: u64) -> Worker {
        self.spawn_worker(
            name,
            &self.url,
            "cpu",
            |c| crate::limit_memory(c, bytes),
            &[],
        )
    }

    /// Starts `dreamfarm worker` named `name` on the CPU in `limit`'s
    /// cgroup: a worker in a container with that limit.
    pub fn worker_in(&self, name: &str, limit: &CgroupLimit) -> Worker {
        self.spawn_worker(name, &self.url, "cpu", |c| limit.confine(c), &[])
    }

    /// Starts a worker named `name` on `devices` dialling `url`, its
    /// command limited by `limit` first, with `extra` flags.
    fn spawn_worker(
        &self,
        name: &str,
        url: &str,
        devices: &str,
        limit: impl FnOnce(&mut Command),
        extra: &[&str],
    ) -> Worker {
        let log = self.dir.path().join(format!("{name}.log"));
        let weights_cache = self.dir.path().join(format!("{name}-weights"));
        let mut command = self.dialling("worker", url);
        command
            .args(["--device", devices, "--name", name])
            .args(extra)
            // By the environment, which workers built before it ignore
            // (`DREAMFARM_BIN`).
            .env("DREAMFARM_WEIGHTS_CACHE", &weights_cache)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).expect("log"));
        limit(&mut command);
        let child = command.spawn().expect("worker starts");
        Worker {
            child,
            log,
            weights_cache,
        }
    }

    /// The gRPC listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `dreamfarm SUBCOMMAND --coordinator URL --token TOKEN ARGS` (and
    /// `--tls-ca CA` when it serves TLS).
    pub fn client(&self, subcommand: &str, args: &[&str]) -> Command {
        self.client_at(&self.url, subcommand, args)
    }

    /// [`client`](Self::client), dialling `url` instead of the
    /// coordinator's own URL.
    pub fn client_at(&self, url: &str, subcommand: &str, args: &[&str]) -> Command {
        let mut c = self.dialling(subcommand, url);
        c.args(args);
        c
    }

    /// `dreamfarm SUBCOMMAND --coordinator URL --token TOKEN`, with
    /// `--tls-ca CA` when the coordinator serves TLS.
    fn dialling(&self, subcommand: &str, url: &str) -> Command {
        let mut c = Command::new(binary());
        c.args([subcommand, "--coordinator", url, "--token", TOKEN])
            .current_dir(repo());
        if let Some(ca) = &self.tls_ca {
            c.arg("--tls-ca").arg(ca);
        }
        c
    }

    /// Submits a job; returns its id.
    pub fn submit(&self, args: &[&str]) -> String {
        let (out, stdout, stderr) = run(self.client("submit", args));
        assert!(out.status.success(), "submit failed: {stderr}");
        stdout.trim().to_string()
    }

    /// The `dreamfarm status JOB` line.
    pub fn status(&self, job: &str) -> String {
        let (_, stdout, stderr) = run(self.client("status", &[job]));
        format!("{stdout}{stderr}")
    }

    /// Waits until the job is done (panics if it fails, or if `stall`
    /// passes without a frame finishing), through one `dreamfarm watch`
    /// process: polling with `dreamfarm status` would start a process
    /// (which loads libtorch) every time and take CPU from the workers
    /// being measured. Watch prints a line as each frame ends, so its
    /// output growing is the job moving.
    pub fn wait_done(&self, job: &str, stall: Duration) {
        let log = self.dir.path().join(format!("watch-{job}.log"));
        let lines = self.dir.path().join(format!("watch-{job}.out"));
        let mut watch = self
            .client("watch", &[job])
            .stdout(std::fs::File::create(&lines).expect("watch output"))
            .stderr(std::fs::File::create(&log).expect("watch log"))
            .spawn()
            .expect("dreamfarm watch starts");
        let moved = || std::fs::metadata(&lines).map_or(0, |m| m.len());
        let Some(status) = exit_while_moving(&mut watch, stall, moved) else {
            let _ = watch.kill();
            panic!("job made no progress for {stall:?}: {}", self.status(job));
        };
        assert!(
            status.success(),
            "job {job} did not finish: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Fetches the job's files into `dir`.
    pub fn fetch(&self, job: &str, dir: &Path) {
        let out = dir.to_str().expect("UTF-8 path");
        let (status, _, stderr) = run(self.client("fetch", &[job, "--output", out]));
        assert!(status.status.success(), "fetch failed: {stderr}");
        // Fetched files are the user's: the permissions of any file they
        // make, not a temporary file's 0600.
        let plain = crate::plain_file_mode(dir);
        for entry in std::fs::read_dir(dir)
            .expect("fetched")
            .filter_map(Result::ok)
        {
            let mode = crate::file_mode(&entry.path());
            assert_eq!(mode, plain, "{:?} fetched with mode {mode:o}", entry.path());
        }
    }

    /// Fetches the job's files and returns its frames' bytes; panics
    /// unless the video came too.
    pub fn fetch_frames(&self, job: &str) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().expect("temp dir");
        self.fetch(job, dir.path());
        let mp4 = std::fs::read_dir(dir.path())
            .expect("fetched")
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "mp4"));
        assert!(mp4, "the video is fetched with the frames");
        frame_bytes(dir.path())
    }

    /// The value of a metric at `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_at(&self.metrics, name)
    }

    /// The folder of job `id`'s frames and video on the coordinator.
    pub fn frames_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("data").join(id).join("frames")
    }

    /// CPU seconds (user + system) the coordinator process has used.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child)
    }

    /// The coordinator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The coordinator's peak resident memory so far, in GiB.
    pub fn peak_rss_gib(&self) -> f64 {
        peak_rss_gib(&self.child)
    }

    /// The coordinator's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coordinator.log")).unwrap_or_default()
    }

    /// Whether the coordinator process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A worker session opened by hand on the real protocol, for tests that
/// play a worker themselves: what they send up, and what comes down.
pub struct RawSession {
    /// Messages to the coordinator.
    pub up: tokio::sync::mpsc::Sender<dreamfarm_proto::pb::WorkerMessage>,
    /// Messages from it.
    pub down: tonic::Streaming<dreamfarm_proto::pb::CoordinatorMessage>,
}

impl RawSession {
    /// Opens a session to `url` with the test token, sending `first` (a
    /// Hello, or something a coordinator must refuse).
    pub async fn open(
        url: &str,
        first: dreamfarm_proto::pb::WorkerMessage,
    ) -> Result<Self, tonic::Status> {
        Self::open_with_headers(url, first, &[]).await
    }

    /// [`Self::open`] with `headers` added to the call's own (a peer that
    /// claims what it does not do).
    pub async fn open_with_headers(
        url: &str,
        first: dreamfarm_proto::pb::WorkerMessage,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Self, tonic::Status> {
        use tonic::service::Interceptor;
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut token = dreamfarm_proto::auth::AttachToken::new(Some(TOKEN)).expect("token");
        let headers = headers.to_vec();
        let attach = move |request| {
            let mut request = token.call(request)?;
            for &(name, value) in &headers {
                let value = value.parse().expect("a header value");
                request.metadata_mut().insert(name, value);
            }
            Ok(request)
        };
        let mut client =
            dreamfarm_proto::pb::worker_service_client::WorkerServiceClient::with_interceptor(
                channel, attach,
            );
        let (up, rx) = tokio::sync::mpsc::channel(64);
        up.send(first).await.expect("send");
        let down = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self { up, down })
    }
}
