//! Long-render settings end to end: keyframe schedules on the command
//! line and in a job file move the camera and change the dream frame by
//! frame, colour coherence keeps a zoom's colours near frame 0's where the
//! same render without it drifts, a render with all of them (layer picks
//! from the seed and a cadence included) resumes exactly, and a cadence's
//! frames between dreamed ones are their cross-fade.

use std::path::Path;

use dreamfarm_tests::drift::{STILL, render_and_measure};
use dreamfarm_tests::{dreamfarm, frame_bytes, run, run_ok};

/// `dreamfarm render` of [`STILL`] for `frames` frames into `out`, with
/// `extra` flags.
fn recipe(out: &Path, frames: u32, extra: &[&str]) -> std::process::Command {
    let n = frames.to_string();
    let mut args = vec!["render", "--device", "cpu", "--frames", &n, "--output"];
    args.push(out.to_str().expect("UTF-8 path"));
    args.extend_from_slice(STILL);
    args.extend_from_slice(extra);
    dreamfarm(&args)
}

#[test]
fn lab_coherence_holds_colours_where_the_same_zoom_drifts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let off = render_and_measure(&dir.path().join("off"), 40, &["--color-coherence", "off"]);
    let lab = render_and_measure(&dir.path().join("lab"), 40, &["--color-coherence", "lab"]);
    println!("40 frames: off {off:?}, lab {lab:?}");
    assert!(
        lab.saturation <= 0.15 && lab.luminance <= 0.10,
        "lab coherence let colours drift: {lab:?}"
    );
    assert!(
        lab.texture >= 0.7,
        "lab coherence washed the texture out: {lab:?}"
    );
    // Without it the same zoom drifts clearly more: the check above is not
    // one any render passes.
    assert!(
        off.saturation > 2.0 * lab.saturation && off.saturation > 0.15,
        "off {off:?} vs lab {lab:?}"
    );
}

#[test]
fn scheduled_settings_resume_exactly_and_match_their_job_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = [
        "--zoom-factor",
        "0:(1.0), 3:(1.06)",
        "--rotate",
        "0:(0), 5:(2*sin(t))",
        "--pan-x",
        "0:(-2), 5:(2)",
        "--color-coherence",
        "lab",
        "--color-strength",
        "0:(1), 5:(0.5)",
        "--sharpen",
        "0.3",
        "--step-size",
        "0:(0.01), 5:(0.03)",
        "--iterations",
        "0:(4), 5:(2)",
        "--jitter",
        "0:(32), 5:(8)",
        "--layers",
        "mixed2,mixed3,mixed4,mixed5",
        "--layer-every",
        "2",
        "--layer-fade",
        "1",
        "--layer-weight",
        "mixed5=0:(1), 5:(3)",
        "--cadence",
        "2",
    ];
    let whole = dir.path().join("whole");
    run_ok(recipe(&whole, 6, &flags));
    // The same settings from a job file.
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        r#"input = "ASTRONAUT"
frames = 6
size = [160, 160]
[dream]
octaves = 2
iterations = "0:(4), 5:(2)"
step_size = "0:(0.01), 5:(0.03)"
jitter = "0:(32), 5:(8)"
layer_every = 2
layer_fade = 1
cadence = 2
layers = [
  { name = "mixed2" },
  { name = "mixed3" },
  { name = "mixed4" },
  { name = "mixed5", weight = "0:(1), 5:(3)" },
]
[zoom]
zoom = "0:(1.0), 3:(1.06)"
rotate = "0:(0), 5:(2*sin(t))"
pan = ["0:(-2), 5:(2)", 0]
[color]
coherence = "lab"
strength = "0:(1), 5:(0.5)"
sharpen = 0.3
"#
        .replace(
            "ASTRONAUT",
            &dreamfarm_tests::repo()
                .join("assets/astronaut.png")
                .display()
                .to_string(),
        ),
    )
    .expect("job file");
    let from_file = dir.path().join("file");
    let out = from_file.to_str().expect("UTF-8");
    run_ok(dreamfarm(&[
        "render",
        "--device",
        "cpu",
        "--job",
        job.to_str().expect("UTF-8"),
        "--output",
        out,
    ]));
    let frames = frame_bytes(&whole);
    assert_eq!(frames.len(), 6);
    assert!(
        frame_bytes(&from_file) == frames,
        "the job file's frames differ from the flags'"
    );
    // The camera moved differently each frame: no two moves alike means
    // no two consecutive frames alike either.
    assert!(frames.windows(2).all(|w| w[0] != w[1]));

    // Lose the last frames and resume: the same bytes, colour reference,
    // schedules, layer picks and cadence included (frame 3 lies between
    // dreamed frames 2 and 4: the resume dreams again from 2).
    let resumed = dir.path().join("resumed");
    std::fs::create_dir(&resumed).expect("folder");
    for entry in std::fs::read_dir(&whole).expect("frames") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let keep = name.ends_with(".png") && name.as_str() < "000003.png"
            || !name.ends_with(".png") && !name.ends_with(".mp4");
        if keep {
            std::fs::copy(&path, resumed.join(&name)).expect("copy");
        }
    }
    run_ok(recipe(&resumed, 6, &flags));
    assert!(frame_bytes(&resumed) == frames, "a resumed render differs");
}

#[test]
fn malformed_schedules_and_bad_numbers_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("never");
    for (flags, expected) in [
        (vec!["--zoom-factor", "0:(1.0), 60:(1.05"], "--zoom-factor"),
        (
            vec!["--zoom-factor", "0:(1.0), 60:(1.05"],
            "bad schedule at column 18: expected ')' after the value of key 60",
        ),
        (vec!["--rotate", "0:(sinn(t))"], "unknown function \"sinn\""),
        (
            vec!["--zoom-factor", "0:(1.0), 20:(3)"],
            "zoom at frame 11 = 2.1",
        ),
        (
            vec!["--color-strength", "0:(0/0)"],
            "color strength at frame 0 = NaN is not a finite number; change the schedule so that every frame gets one",
        ),
        (
            vec!["--layers", "mixed3:nan"],
            "layer weight of mixed3 at frame 0 = NaN is not a finite number",
        ),
        (
            vec!["--layers", "mixed3", "--layer-weight", "mixed5=1"],
            "--layer-weight names \"mixed5\", which is not one of the layers (mixed3)",
        ),
        (
            vec!["--iterations", "0:(4), 8:(0)"],
            "iterations at frame 8 = 0 is out of range: 1 to 10000",
        ),
        (
            vec!["--step-size", "0:(0.01), 4:(1/0)"],
            "step-size at frame 1 = inf is not a finite number",
        ),
        (vec!["--layer-fade", "3"], "layer-fade = 3 is out of range"),
        (
            vec!["--guide", "no/such/guide.png"],
            "guide image no/such/guide.png: cannot open it",
        ),
        (
            vec!["--color-reference", "assets/chelsea.png"],
            "only with a colour coherence",
        ),
        (vec!["--color-coherence", "cmyk"], "--color-coherence"),
    ] {
        let (status, _, stderr) = run(recipe(&out, 12, &flags));
        assert!(!status.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?} started a render");
    }
}

#[test]
fn a_cadence_cross_fades_between_dreamed_frames() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("cadence");
    // A still camera: the frame between two dreamed ones is exactly their
    // cross-fade, half and half.
    let flags = ["--zoom-factor", "1", "--cadence", "2"];
    run_ok(recipe(&out, 3, &flags));
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|n| {
            image::open(out.join(format!("{n:06}.png")))
                .expect("frame")
                .to_rgb8()
                .into_raw()
        })
        .collect();
    assert_ne!(frames[0], frames[2], "frame 2 was not dreamed");
    let worst = frames[0]
        .iter()
        .zip(&frames[1])
        .zip(&frames[2])
        .map(|((&a, &m), &b)| (2.0 * f32::from(m) - f32::from(a) - f32::from(b)).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 2.0,
        "frame 1 is not the cross-fade of 0 and 2: {worst}"
    );
}

#[test]
fn a_dry_run_previews_the_camera_path_in_its_own_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("trip");
    let started = std::time::Instant::now();
    run_ok(recipe(
        &out,
        24,
        &[
            "--dry-run",
            "--zoom-factor",
            "0:(1.0), 12:(1.1)",
            "--rotate",
            "2",
        ],
    ));
    let seconds = started.elapsed().as_secs_f64();
    let preview = dir.path().join("trip-preview");
    assert!(!out.exists(), "a preview wrote into the job's own folder");
    assert!(
        preview.join("trip-preview.mp4").exists(),
        "no preview video"
    );
    let frames = frame_bytes(&preview);
    assert_eq!(frames.len(), 24);
    assert!(
        frames.windows(2).all(|w| w[0] != w[1]),
        "the camera did not move"
    );
    println!("24 preview frames in {seconds:.1} s");
}
