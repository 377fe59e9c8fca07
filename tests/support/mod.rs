//! What the end-to-end tests share: the `dreamfarm` binary (built once per
//! test process by the same cargo that runs the tests), the repository, and
//! ways to run it and read what it wrote.

pub mod browser;
pub mod cgroup_limit;
pub mod cluster;
pub mod drift;
pub mod fault_proxy;
pub mod http;
pub mod manifests;
pub mod pki;
pub mod seams;
pub mod small_disk;
pub mod small_job;
pub mod synthetic_worker;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the repository")
        .to_path_buf()
}

/// The `dreamfarm` binary of the profile these tests were built with.
/// Another package's binary is not built for this one's tests, so the first
/// call builds it (a no-op when it is up to date). Benchmarks comparing
/// builds name another binary in `DREAMFARM_BIN`.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match std::env::var_os("DREAMFARM_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => built("dreamfarm"),
    })
}

/// The `dreamfarm-worker` binary (what the worker image runs), built like
/// [`binary`].
pub fn worker_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| built("dreamfarm-worker"))
}

/// Builds the workspace's binaries in the tests' profile, as
/// scripts/setup.sh does (building one package alone would unify other
/// features and rebuild half the dependencies); returns `bin`'s path.
fn built(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--workspace", "--bins"])
        .current_dir(repo());
    // Cargo tells the tests this package's name and folder; ring's build
    // script reruns when they change, which would rebuild everything above
    // ring that scripts/setup.sh (a plain `cargo build`) built without them.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
        {
            build.env_remove(name.as_ref());
        }
    }
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building {bin} failed");
    profile_dir.join(bin)
}

/// `dreamfarm ARGS`, run from the repository root.
pub fn dreamfarm(args: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.args(args).current_dir(repo());
    c
}

/// What a process may allocate in the out-of-memory tests (with
/// [`limit_memory`]): the small test renders and jobs dream in about 0.2
/// GB, a 2048x2048 tile needs about 3.8 GB.
pub const SMALL_MEMORY: u64 = 1280 << 20;

/// `dreamfarm dream INPUT -o OUTPUT` on the CPU, one octave of one step:
/// the quickest still there is.
pub fn one_step_still<'a>(input: &'a str, output: &'a str) -> [&'a str; 10] {
    [
        "dream",
        input,
        "-o",
        output,
        "--octaves",
        "1",
        "--iterations",
        "1",
        "--device",
        "cpu",
    ]
}

/// The flags of a one-octave, one-step dream of the astronaut at `size`
/// in one tile of up to 2048 pixels: it fits in [`SMALL_MEMORY`] at
/// 160x160, not at 2048x2048.
pub fn one_tile_dream(size: &str) -> Vec<&str> {
    vec![
        "--input",
        "assets/astronaut.png",
        "--size",
        size,
        "--octaves",
        "1",
        "--iterations",
        "1",
        "--tile-size",
        "2048",
    ]
}

/// Lets `command`'s process allocate at most `bytes` (`RLIMIT_DATA`: its
/// heap and private mappings, where libtorch's tensors live), as on a
/// machine or GPU with that little memory: allocations past it fail.
pub fn limit_memory(command: &mut Command, bytes: u64) {
    set_limit(command, libc::RLIMIT_DATA, bytes, bytes);
}

/// The soft and hard limits on open files of process `pid` (`self`: this
/// one), as `/proc/PID/limits` says them (a number, or `unlimited`).
pub fn open_files_limits(pid: &str) -> [String; 2] {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a line for open files");
    let mut values = line.split_whitespace().skip(3).map(str::to_string);
    [(); 2].map(|()| values.next().expect("a soft and a hard limit"))
}

/// Starts `command`'s process with a soft limit of `soft` open files under
/// a hard one of `hard` (`ulimit -Sn`, `ulimit -Hn`).
pub fn limit_open_files(command: &mut Command, soft: u64, hard: u64) {
    set_limit(command, libc::RLIMIT_NOFILE, soft, hard);
}

/// Sets `command`'s process's limit on `resource` to `soft` under `hard`.
fn set_limit(command: &mut Command, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit is async-signal-safe, and it is all the child does
    // between fork and exec.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(resource, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
}

/// Runs `command`'s process on the first CPU only, as on a machine with
/// one core: what it counts from `available_parallelism` counts one.
pub fn limit_to_one_core(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sched_setaffinity is a system call on a set built before the
    // fork, and it is all the child does between fork and exec.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut one);
        command.pre_exec(move || {
            match libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
}

/// Runs `c` to the end: its status, stdout and stderr.
pub fn run(mut c: Command) -> (Output, String, String) {
    let out = c.output().expect("dreamfarm runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Runs `c`, which must stop with an error within a minute (a process
/// that should refuse to start, and would otherwise run for ever): its
/// stderr. Panics, after killing it, if it runs on or succeeds.
pub fn run_refused(mut c: Command) -> String {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dreamfarm runs");
    let pid = child.id() as i32;
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let out = match waited.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("its output"),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{c:?} was still running after a minute instead of refusing to start");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{c:?} succeeded: {stderr}");
    stderr
}

/// Runs `c` and panics with its stderr unless it succeeds.
pub fn run_ok(c: Command) -> String {
    let (out, stdout, stderr) = run(c);
    assert!(out.status.success(), "{stderr}");
    stdout
}

/// The weight store that scripts/setup.sh filled.
pub fn default_store() -> PathBuf {
    std::env::var_os("DREAMFARM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/dreamfarm/models")
        })
}

/// Writes to `out` the weights file `model` of the default store with its
/// first f32 tensor scaled by 1.5: weights that fit the model and give
/// frames of their own, which no worker holds a copy of.
pub fn altered_weights(model: &str, out: &Path) {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(default_store().join(model)).expect("the store's weights");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let (name, first) = tensors
        .iter()
        .find(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .expect("an f32 tensor");
    let scaled: Vec<u8> = first
        .data()
        .chunks_exact(4)
        .flat_map(|b| (1.5 * f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes())
        .collect();
    let scaled = TensorView::new(first.dtype(), first.shape().to_vec(), &scaled).expect("view");
    let views = tensors.iter().map(|(n, t)| {
        (
            n.clone(),
            if n == name { scaled.clone() } else { t.clone() },
        )
    });
    let out_bytes = safetensors::serialize(views, None).expect("serialized");
    std::fs::write(out, out_bytes).expect("written");
}

/// An RGB image as `f32` samples in 0..=255, row-major, interleaved.
pub struct Rgb {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `3 × width × height` samples.
    pub data: Vec<f32>,
}

impl Rgb {
    /// Reads a PNG or JPEG.
    pub fn open(path: &Path) -> Self {
        let img = image::open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        Self {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.as_raw().iter().map(|&v| f32::from(v)).collect(),
        }
    }

    /// Sample of channel `c` at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * 3 + c]
    }

    /// `self - other`, sample by sample.
    pub fn minus(&self, other: &Self) -> Self {
        assert_eq!((self.width, self.height), (other.width, other.height));
        Self {
            width: self.width,
            height: self.height,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }
}

/// The frame files (`NNNNNN.png`) of an output folder, sorted.
pub fn frames(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "png")
                        && p.file_stem()
                            .and_then(|s| s.to_str())
                            .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The permission bits of `path`.
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("file metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The permission bits a plain `File::create` gives in `dir` under this
/// process's umask: what the files dreamfarm writes for the user should
/// have (not a temporary file's owner-only 0600).
pub fn plain_file_mode(dir: &Path) -> u32 {
    let probe = dir.join(".mode-probe");
    std::fs::File::create(&probe).expect("probe file");
    let mode = file_mode(&probe);
    std::fs::remove_file(&probe).expect("remove probe");
    mode
}

/// The bytes of every frame of `dir`.
pub fn frame_bytes(dir: &Path) -> Vec<Vec<u8>> {
    frames(dir)
        .iter()
        .map(|p| std::fs::read(p).expect("frame readable"))
        .collect()
}

/// The videos of `dir` (`NAME.mp4`, not the hidden partial ones and
/// segments), by name.
pub fn videos(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".mp4") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Seconds between consecutive frames of `dir` by their modification times:
/// each frame's time from the end of the one before it to its own end (the
/// first frame, which also loads the model, has no entry).
pub fn frame_seconds(dir: &Path) -> Vec<f64> {
    let written: Vec<std::time::SystemTime> = frames(dir)
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .expect("frame mtime")
        })
        .collect();
    written
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).map_or(0.0, |d| d.as_secs_f64()))
        .collect()
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A benchmark's frame size from the environment variable `name`
/// (`WIDTHxHEIGHT`), or `default`.
pub fn env_size(name: &str, default: (usize, usize)) -> (usize, usize) {
    let Ok(size) = std::env::var(name) else {
        return default;
    };
    size.split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .unwrap_or_else(|| panic!("{name} is WIDTHxHEIGHT, e.g. 3840x2160, not {size:?}"))
}

/// FNV-1a over the bits of `samples`, folded into `digest`: what a
/// benchmark prints so that a faster build is seen to make the same
/// samples.
pub fn fold_digest(digest: u64, samples: &[f32]) -> u64 {
    samples.iter().fold(digest, |d, v| {
        (d ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a's starting digest, for [`fold_digest`].
pub const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The environment variable `name` parsed, or `default` when it is unset or
/// does not parse (benchmark settings).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `cond` every 100 ms until it holds; panics naming `what` after
/// `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
