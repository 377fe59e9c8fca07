//! Memory is bounded by the tile size, not the image size: an 8K frame
//! dreams on a small CPU machine. (A test binary of its own, so that the
//! peak it reads belongs to one dream.)

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::process::Stdio;

use dreamfarm_tests::{dreamfarm, one_step_still, repo};

/// 8K UHD.
const WIDTH: u32 = 7680;
const HEIGHT: u32 = 4320;

/// Generous for the frame-sized buffers of an 8K frame (a few hundred MB
/// each as f32) plus one 1024-pixel tile's forward and backward pass; an
/// untiled 8K pass of the default model needs several times this.
const PEAK_LIMIT_GIB: f64 = 6.0;

/// Runs `dreamfarm ARGS` to the end and returns whether it succeeded, its
/// peak resident memory in GiB (its own, from `wait4`) and its stderr.
fn run_measuring_peak(args: &[&str]) -> (bool, f64, String) {
    // Reaped below by `wait4`, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let mut child = dreamfarm(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dreamfarm starts");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value; `wait4` fills it in
    // for our own child, which `child` never waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    (ok, usage.ru_maxrss as f64 / (1024.0 * 1024.0), stderr)
}

fn write_8k_input(path: &Path) {
    let photo = image::open(repo().join("assets/astronaut.png"))
        .expect("demo photo")
        .to_rgb8();
    image::imageops::resize(&photo, WIDTH, HEIGHT, image::imageops::FilterType::Triangle)
        .save(path)
        .expect("write 8K input");
}

#[test]
fn an_8k_frame_dreams_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("8k.png");
    write_8k_input(&input);
    let output = dir.path().join("8k-dream.png");
    let (ok, peak, _) = run_measuring_peak(&one_step_still(
        input.to_str().expect("UTF-8"),
        output.to_str().expect("UTF-8"),
    ));
    eprintln!("8K dream: peak RSS {peak:.2} GiB");
    assert!(ok, "the 8K dream failed");
    assert_eq!(
        image::image_dimensions(&output).expect("dreamed PNG"),
        (WIDTH, HEIGHT)
    );
    assert!(
        peak < PEAK_LIMIT_GIB,
        "peak RSS {peak:.2} GiB exceeds {PEAK_LIMIT_GIB} GiB"
    );
}

/// The memory `dream` says it needs, in GiB, from its JSON log.
fn needs(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("\"needs\""))
        .unwrap_or_else(|| panic!("no memory line in:\n{stderr}"));
    let log: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    log["fields"]["needs"].as_f64().expect("needs in bytes") / f64::from(1 << 30)
}

/// What `dream` needs beside its frames is the network's pass on the
/// CPU, worked out from the network's description; it must follow what
/// the pass really holds. For each built-in model (GoogLeNet on random
/// weights), one step on a 1024×1024 image in 256-pixel tiles and in one
/// tile: the memory the check says it needs grows by 0.85 to 1.5 times
/// what the process's peak resident memory grows by (measured 0.95–1.26).
#[test]
fn the_memory_check_follows_the_networks_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.png");
    let photo = image::open(repo().join("assets/astronaut.png"))
        .expect("demo photo")
        .to_rgb8();
    image::imageops::resize(&photo, 1024, 1024, image::imageops::FilterType::Triangle)
        .save(&input)
        .expect("write input");
    let googlenet = dir.path().join("googlenet.safetensors");
    let made = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("scripts/reference/torchvision_models.py"))
        .arg("googlenet-weights")
        .arg(&googlenet)
        .status()
        .expect("run the project's Python (scripts/setup.sh makes .venv)");
    assert!(
        made.success(),
        "torchvision could not save GoogLeNet's weights"
    );
    let output = dir.path().join("out.png");
    let (input, output) = (
        input.to_str().expect("UTF-8"),
        output.to_str().expect("UTF-8"),
    );
    let googlenet = [
        "--model",
        "googlenet",
        "--weights",
        googlenet.to_str().expect("UTF-8"),
    ];
    for model in [
        &["--model", "inception-v3"][..],
        &["--model", "mobilenet-v2"][..],
        &googlenet[..],
    ] {
        let run = |tile: &str| {
            let args = [
                &one_step_still(input, output)[..],
                model,
                &["--tile-size", tile, "--jitter", "0", "--log-format", "json"],
            ]
            .concat();
            let (ok, peak, stderr) = run_measuring_peak(&args);
            assert!(ok, "{args:?} failed:\n{stderr}");
            (needs(&stderr), peak)
        };
        let (small, large) = (run("256"), run("1024"));
        let ratio = (large.0 - small.0) / (large.1 - small.1);
        eprintln!(
            "{model:?}: says it needs {:.3} -> {:.3} GiB, peak {:.3} -> {:.3} GiB: {ratio:.2}",
            small.0, large.0, small.1, large.1
        );
        assert!(
            (0.85..1.5).contains(&ratio),
            "{model:?}: the check's growth is {ratio:.2} times the peak's"
        );
    }
}

/// A dream whose frames fit `--max-memory` but whose pass on the CPU does
/// not is refused before it starts, naming both (it ran before, and the
/// kernel killed it where the memory was short).
#[test]
fn a_dream_whose_pass_does_not_fit_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.png");
    let mut dream = dreamfarm(
        &[
            &one_step_still("assets/astronaut.png", output.to_str().expect("UTF-8"))[..],
            &["--tile-size", "1024", "--max-memory", "200MiB"],
        ]
        .concat(),
    );
    let (out, _, stderr) = dreamfarm_tests::run({
        dream.stdout(Stdio::null());
        dream
    });
    assert!(
        !out.status.success(),
        "a 200 MiB dream of a 512x512 tile ran"
    );
    assert!(
        stderr.contains(
            "dreaming a 512x512 image needs about 283 MiB of memory for its octaves (128 MiB) and the network's passes on the CPU (155 MiB), more than --max-memory (200 MiB). Fix: dream a smaller copy of the image or pass a smaller --tile-size, or a larger --max-memory"
        ),
        "{stderr}"
    );
    assert!(!output.exists(), "the refused dream wrote {output:?}");
}
