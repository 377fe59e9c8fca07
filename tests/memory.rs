//! Memory is bounded by the tile size, not the image size: an 8K frame
//! dreams on a small CPU machine. (A test binary of its own, so that the
//! peak it reads belongs to one dream.)

use std::path::Path;
use std::process::Stdio;

use dreamfarm_tests::{dreamfarm, one_step_still, repo};

/// 8K UHD.
const WIDTH: u32 = 7680;
const HEIGHT: u32 = 4320;

/// Generous for the frame-sized buffers of an 8K frame (a few hundred MB
/// each as f32) plus one 1024-pixel tile's forward and backward pass; an
/// untiled 8K pass of the default model needs several times this.
const PEAK_LIMIT_GIB: f64 = 6.0;

/// Runs `dreamfarm ARGS` to the end and returns whether it succeeded and
/// its peak resident memory in GiB (its own, from `wait4`).
fn run_measuring_peak(args: &[&str]) -> (bool, f64) {
    // Reaped below by `wait4`, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = dreamfarm(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("dreamfarm starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value; `wait4` fills it in
    // for our own child, which `child` never waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    (ok, usage.ru_maxrss as f64 / (1024.0 * 1024.0))
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
    let (ok, peak) = run_measuring_peak(&one_step_still(
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
