//! The small job the cluster tests render (several tiles per octave and a
//! camera move, a few seconds per frame on a CPU), and its frames as
//! `dreamfarm render` makes them: a cluster's frames must equal these byte
//! for byte.

use std::sync::OnceLock;
use std::time::Duration;

use crate::{dreamfarm, frame_bytes, run_ok};

/// The job's settings, as `render` and `submit` flags.
pub const JOB: &[&str] = &[
    "--input",
    "assets/astronaut.png",
    "--size",
    "192x128",
    "--frames",
    "3",
    "--octaves",
    "2",
    "--iterations",
    "3",
    "--tile-size",
    "64",
    "--tile-margin",
    "16",
    "--blend-band",
    "8",
    "--jitter",
    "4",
    "--zoom-factor",
    "1.05",
    "--rotate",
    "1",
];

/// How long a test cluster may take over the job, and over any one wait.
pub const LIMIT: Duration = Duration::from_secs(240);

/// The job's `submit` arguments under `name`.
pub fn job(name: &str) -> Vec<&str> {
    let mut args = JOB.to_vec();
    args.extend(["--name", name]);
    args
}

/// The job's frames rendered by `dreamfarm render` on this machine (once
/// per test process).
pub fn reference() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| rendered(JOB))
}

/// The frames `dreamfarm render` makes of `job` (render flags) on this
/// machine's CPU: what a cluster's frames of the same job must equal.
pub fn rendered(job: &[&str]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("UTF-8").to_string();
    let mut args = vec!["render", "--device", "cpu", "--output", &out];
    args.extend_from_slice(job);
    run_ok(dreamfarm(&args));
    frame_bytes(dir.path())
}
