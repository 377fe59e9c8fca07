//! The single-machine render, run as a user would: tiled dreams without
//! seams, byte-identical reruns, exact resume after `kill -9`, a video that
//! ffprobe reads, and one clear error for each kind of bad input without
//! losing a finished frame.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dreamfarm_tests::seams::{SEAM_TILE, SeamMeasures, inner_boundaries, tiled_change};
use dreamfarm_tests::small_disk::SmallDisk;
use dreamfarm_tests::{
    Rgb, SMALL_MEMORY, dreamfarm, file_mode, frame_bytes, frames, limit_memory, limit_to_one_core,
    one_tile_dream, plain_file_mode, repo, run, run_ok, videos,
};

/// A small, quick render: several tiles per octave, two octaves, a camera
/// move with zoom, rotation and pan.
const SMALL_RENDER: &[&str] = &[
    "render",
    "--input",
    "assets/astronaut.png",
    "--size",
    "176x128",
    "--octaves",
    "2",
    "--iterations",
    "3",
    "--tile-size",
    "96",
    "--tile-margin",
    "24",
    "--blend-band",
    "12",
    "--jitter",
    "8",
    "--zoom-factor",
    "1.05",
    "--rotate",
    "1.5",
    "--pan",
    "2,-1",
    "--fps",
    "12",
    "--device",
    "cpu",
];

fn small_render(out: &Path, frames: u32) -> Command {
    let mut args: Vec<String> = SMALL_RENDER.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--output".into(),
        path_str(out).into(),
        "--frames".into(),
        frames.to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dreamfarm(&args)
}

/// [`small_render`] started in the background, its log discarded.
fn spawn_small_render(out: &Path, frames: u32, stdout: Stdio) -> std::process::Child {
    small_render(out, frames)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("dreamfarm starts")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn tiled_dreams_show_no_seam_and_no_double_exposure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let borders = inner_boundaries(512, SEAM_TILE);
    let band = 16;
    // DREAMFARM_TEST_PRECISION=bf16 (or f16) measures mixed precision
    // instead: minutes on a CPU, which emulates it.
    let precision = std::env::var("DREAMFARM_TEST_PRECISION").unwrap_or_else(|_| "f32".into());
    let blended = SeamMeasures::of(
        &tiled_change(dir.path(), 48, band as u32, &["--precision", &precision]),
        &borders,
        band,
    );
    eprintln!(
        "blended ({precision}): edge {:.3} vs {:.3} (ratio {:.3}), contrast {:.3} vs {:.3} (ratio {:.3})",
        blended.edge_at_borders,
        blended.edge_inside,
        blended.edge_ratio(),
        blended.contrast_in_bands,
        blended.contrast_inside,
        blended.contrast_ratio()
    );
    assert!(blended.edge_inside > 1.0, "the dream changed the picture");
    assert!(
        (blended.edge_ratio() - 1.0).abs() <= 0.10,
        "edge energy along tile borders is {:.3}× that inside tiles",
        blended.edge_ratio()
    );
    assert!(
        (blended.contrast_ratio() - 1.0).abs() <= 0.15,
        "local contrast in blend bands is {:.3}× that inside tiles",
        blended.contrast_ratio()
    );

    // The measures do see a seam where there is one: tiles dreamed without
    // context and pasted edge to edge (the dream fades out towards each
    // tile's edge, so the seam is a dead line).
    let cut = SeamMeasures::of(&tiled_change(dir.path(), 0, 0, &[]), &borders, band);
    eprintln!(
        "hard cut: edge ratio {:.3}, contrast ratio {:.3}",
        cut.edge_ratio(),
        cut.contrast_ratio()
    );
    assert!(
        (cut.edge_ratio() - 1.0).abs() > 0.25,
        "hard-cut tiles should show seams, edge ratio {:.3}",
        cut.edge_ratio()
    );
}

/// Mean |x| of the samples.
fn mean_abs(v: impl Iterator<Item = f32>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + f64::from(x.abs()), n + 1));
    sum / n.max(1) as f64
}

/// Pearson correlation of two same-length sample runs.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
        b.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

#[test]
fn mixed_precision_changes_the_texture_not_the_dream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let frame = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "render",
            "--input",
            "assets/astronaut.png",
            "--size",
            "192x160",
            "--frames",
            "1",
            "--octaves",
            "1",
            "--iterations",
            "4",
            "--tile-size",
            "96",
            "--device",
            "cpu",
            "--output",
            path_str(&out),
        ];
        args.extend_from_slice(extra);
        run_ok(dreamfarm(&args));
        // A dry run writes the camera path alone beside the output folder.
        let dry = extra.contains(&"--dry-run");
        Rgb::open(
            &dir.path()
                .join(if dry {
                    format!("{name}-preview")
                } else {
                    name.to_string()
                })
                .join("000000.png"),
        )
    };
    let undreamed = frame("undreamed", &["--dry-run"]);
    let f32_change = frame("f32", &[]).minus(&undreamed);
    for precision in ["bf16", "f16"] {
        let change = frame(precision, &["--precision", precision]).minus(&undreamed);
        let dream = mean_abs(f32_change.data.iter().copied());
        let apart = mean_abs(change.minus(&f32_change).data.into_iter());
        let agree = correlation(&change.data, &f32_change.data);
        eprintln!(
            "{precision}: {apart:.2} levels from f32 (the f32 dream moves {dream:.2}), correlation {agree:.3}"
        );
        assert!(apart > 0.0, "{precision} gave the f32 frame: not applied");
        assert!(
            apart < 0.6 * dream && agree > 0.7,
            "{precision} dreams another picture: {apart:.2} levels from f32, correlation {agree:.3}"
        );
    }
}

// ---------------------------------------------------- determinism, resume

/// The settings of [`SMALL_RENDER`] as a job file, its input beside it.
const SMALL_RENDER_JOB: &str = r#"
input = "photo.png"
frames = 3
size = [176, 128]

[dream]
octaves = 2
iterations = 3
tile_size = 96
tile_margin = 24
blend_band = 12
jitter = 8

[zoom]
zoom = 1.05
rotate = 1.5
pan = [2.0, -1.0]

[video]
fps = 12
"#;

#[test]
fn renders_are_byte_identical_run_after_run_and_from_a_job_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    run_ok(small_render(&a, 3));
    run_ok(small_render(&b, 3));
    let (fa, fb) = (frame_bytes(&a), frame_bytes(&b));
    assert_eq!(fa.len(), 3);
    assert!(fa == fb, "frames differ between identical runs");
    assert_ne!(fa[1], fa[2], "frames move");

    let job = dir.path().join("job.toml");
    std::fs::write(&job, SMALL_RENDER_JOB).expect("write job");
    std::fs::copy(
        repo().join("assets/astronaut.png"),
        dir.path().join("photo.png"),
    )
    .expect("copy");
    run_ok(dreamfarm(&[
        "render",
        "--job",
        path_str(&job),
        "--output",
        path_str(&c),
        "--device",
        "cpu",
    ]));
    assert!(
        frame_bytes(&c) == fa,
        "the job file renders other frames than its flags"
    );
}

/// A render folder's job file is a job file like any other: run from
/// another working directory, `render --job FOLDER/job.toml` finds the
/// input the first command named relative to its own, continues that
/// folder (no --output) and its video (no --name); and a copy of the
/// input at another path continues it too (it was refused as another
/// input).
#[test]
fn a_render_folders_job_file_continues_it_from_any_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (trip, whole) = (dir.path().join("trip"), dir.path().join("whole"));
    let mut first = small_render(&trip, 2);
    first.args(["--name", "journey"]);
    run_ok(first);
    let job = trip.join("job.toml");
    let mut more = dreamfarm(&["render", "--job", path_str(&job), "--frames", "3"]);
    more.current_dir(dir.path());
    run_ok(more);
    run_ok(small_render(&whole, 4));
    assert!(
        frame_bytes(&trip) == frame_bytes(&whole)[..3],
        "the continued frames differ from a render of 3 frames"
    );
    // The input moved (a copy of it at another path): the same job, so
    // the folder continues.
    let moved = dir.path().join("moved.png");
    std::fs::copy(repo().join("assets/astronaut.png"), &moved).expect("copy the input");
    let mut args: Vec<&str> = SMALL_RENDER.to_vec();
    let input = args.iter().position(|&a| a == "--input").expect("--input") + 1;
    args[input] = path_str(&moved);
    args.extend(["--output", path_str(&trip), "--frames", "4"]);
    run_ok(dreamfarm(&args));
    assert!(
        frame_bytes(&trip) == frame_bytes(&whole),
        "the frames continued from the moved input differ from a render of 4 frames"
    );
    assert_eq!(videos(&trip), ["journey.mp4"]);
}

#[test]
fn several_devices_share_each_frames_tiles_and_render_the_same_frames() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    run_ok(small_render(&one, 3));
    // Two embedded workers (on the CPU here; on GPUs, cuda:0,cuda:1).
    let mut args: Vec<&str> = SMALL_RENDER.to_vec();
    let device = args
        .iter()
        .position(|&a| a == "--device")
        .expect("--device")
        + 1;
    args[device] = "cpu,cpu";
    args.extend(["--output", path_str(&two), "--frames", "3"]);
    let (out, _, log) = run(dreamfarm(&args));
    assert!(out.status.success(), "render on two devices failed:\n{log}");
    assert!(
        frame_bytes(&two) == frame_bytes(&one),
        "two embedded workers render other frames than one"
    );
    // Both dreamed tiles of those frames.
    let done = log
        .lines()
        .find(|l| l.contains("embedded workers done"))
        .unwrap_or_else(|| panic!("no tile counts in the log:\n{log}"));
    let counts: Vec<u64> = done
        .split("tiles=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .map(|list| list.split(", ").filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(counts.len(), 2, "{done}");
    assert!(counts.iter().all(|&n| n > 0), "a worker sat idle: {done}");
}

/// ffprobe's view of the first video stream of `mp4`.
fn probe(mp4: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(mp4)
        .output()
        .expect("ffprobe runs (scripts/setup.sh installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    v["streams"][0].clone()
}

/// Where the decoded frames of two videos first differ, for a failure's
/// message: none when only their containers differ.
fn decoded_difference(a: &Path, b: &Path) -> String {
    let hashes = |video: &Path| -> Vec<String> {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(video)
            .args(["-f", "framemd5", "-"])
            .output()
            .expect("ffmpeg runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit(',').next().map(str::trim).map(String::from))
            .collect()
    };
    let (a, b) = (hashes(a), hashes(b));
    match (0..a.len().max(b.len())).find(|&n| a.get(n) != b.get(n)) {
        Some(n) => format!(
            "decoded frame {n} first differs ({} and {} frames)",
            a.len(),
            b.len()
        ),
        None => format!(
            "the {} decoded frames alike: the containers differ",
            a.len()
        ),
    }
}

/// Runs `command`, which must fail because of `what` with exactly one
/// `error:` line; that line.
fn the_one_error(command: Command, what: &str) -> String {
    let (done, _, stderr) = run(command);
    assert!(!done.status.success(), "{what} went unnoticed: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

/// The hidden files in `dir`: what a render keeps only while it runs.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("output folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[test]
fn resume_after_kill_9_is_exact_and_the_video_has_every_frame() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    // Room after each kill point: a frame takes under 0.2 s on an idle
    // 2-core machine, and the kill comes 0.3 s after its point.
    let frames_total = 8;
    run_ok(small_render(&whole, frames_total));

    // Kill the second render in the middle of a frame, twice.
    for kill_after in [1, 3] {
        let mut child = spawn_small_render(&killed, frames_total, Stdio::null());
        let started = Instant::now();
        while frames(&killed).len() < kill_after + 1 {
            assert!(started.elapsed() < Duration::from_secs(300), "no progress");
            assert!(child.try_wait().expect("wait").is_none(), "ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Partway into the next frame.
        std::thread::sleep(Duration::from_millis(300));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let done = frames(&killed).len();
        assert!(done < frames_total as usize, "killed after the last frame");
    }
    let stdout = run_ok(small_render(&killed, frames_total));
    assert!(
        frame_bytes(&killed) == frame_bytes(&whole),
        "resumed frames differ from an uninterrupted render"
    );
    let leftovers = hidden_files(&killed);
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");

    let mp4 = PathBuf::from(stdout.trim());
    assert_eq!(mp4, killed.join("killed.mp4"));
    let stream = probe(&mp4);
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(176), Some(128))
    );
    assert_eq!(stream["r_frame_rate"], "12/1");
    assert_eq!(stream["nb_read_frames"], frames_total.to_string().as_str());
}

/// Runs [`small_render`] of `total` frames into `out` to its end, seeing
/// its video under way (ffmpeg's hidden partial file of the video's first
/// segment) while frames are
/// still missing (assembled after the last frame, it would not exist yet),
/// and checks the video against the one ffmpeg assembles from the frames
/// on disk when the finished render is run again: the same bytes.
fn assert_the_video_is_encoded_while_rendering(out: &Path, total: u32) {
    let name = out.file_name().expect("a folder name").to_string_lossy();
    let partial = out.join(format!(".{name}.000000.segment.partial.mp4"));
    let mut child = spawn_small_render(out, total, Stdio::piped());
    let started = Instant::now();
    let mut encoding_at = None;
    while child.try_wait().expect("wait").is_none() {
        let done = frames(out).len();
        if done < total as usize && partial.exists() {
            encoding_at.get_or_insert(done);
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("reaped");
    assert!(output.status.success(), "the render failed");
    assert!(
        encoding_at.is_some(),
        "no video was being encoded before the last frame"
    );
    assert!(!partial.exists(), "the partial video was left behind");
    let mp4 = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let streamed = std::fs::read(&mp4).expect("the video");
    assert_eq!(
        probe(&mp4)["nb_read_frames"],
        total.to_string().as_str(),
        "every frame is in the video"
    );
    std::fs::remove_file(&mp4).expect("video removed");
    run_ok(small_render(out, total));
    assert!(
        std::fs::read(&mp4).expect("assembled video") == streamed,
        "the video encoded while rendering differs from the one assembled from the frames"
    );
}

#[test]
fn the_video_is_encoded_while_frames_are_written_and_is_the_assembled_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert_the_video_is_encoded_while_rendering(&dir.path().join("streamed"), 8);
}

#[test]
fn a_resumed_render_encodes_its_video_while_rendering_from_the_frames_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("resumed");
    // Four frames on disk (and their video, which the longer render
    // replaces), then twelve: the stream takes the four from disk first.
    run_ok(small_render(&out, 4));
    assert_the_video_is_encoded_while_rendering(&out, 12);
}

#[test]
fn a_damaged_finished_frame_fails_the_resumed_render_after_its_new_frames_and_makes_no_video() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("damaged");
    run_ok(small_render(&out, 3));
    let videos = |out: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        snapshot(out)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "mp4"))
            .collect()
    };
    let three_frames = videos(&out);
    assert_eq!(three_frames.len(), 1, "one video");
    std::fs::write(out.join("000001.png"), b"garbage").expect("damage frame 1");
    let error = the_one_error(small_render(&out, 5), "the damaged frame");
    assert!(
        error.contains("000001.png") && error.contains("Fix: delete it and the frames after it"),
        "{error}"
    );
    // The new frames are written all the same, and the video is still the
    // three frames' one: none is made from a damaged frame.
    assert!(out.join("000004.png").is_file(), "{error}");
    assert_eq!(videos(&out), three_frames);
}

/// A render of the camera path alone (`--dry-run`: frames as fast as the
/// host makes them) into `out`, turning 3 degrees a frame without
/// zooming, so that every frame differs from the one before (the default
/// zoom blows a small image up into one flat colour within a few hundred
/// frames, and a frame fed twice or skipped would not show).
fn turning_camera(out: &Path, size: &str, frames: u32) -> Command {
    dreamfarm(&[
        "render",
        "--input",
        "assets/astronaut.png",
        "--size",
        size,
        "--frames",
        &frames.to_string(),
        "--fps",
        "24",
        "--zoom-factor",
        "1",
        "--rotate",
        "3",
        "--dry-run",
        "--output",
        path_str(out),
    ])
}

#[test]
fn a_resumed_or_longer_render_reencodes_only_the_video_segment_it_stopped_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The camera path alone passes a 500-frame segment in seconds.
    let render = |name: &str, frames: u32| turning_camera(&dir.path().join(name), "96x64", frames);
    let video = |name: &str| {
        dir.path()
            .join(format!("{name}-preview/{name}-preview.mp4"))
    };
    let bytes = |video: PathBuf| std::fs::read(video).expect("a video");
    run_ok(render("whole", 700));
    run_ok(render("longer", 800));
    let killed = dir.path().join("killed-preview");
    let first_segment = killed.join(".killed-preview.000000.segment.mp4");
    let mut child = render("killed", 700)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dreamfarm starts");
    let started = Instant::now();
    while !first_segment.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no segment");
        assert!(child.try_wait().expect("wait").is_none(), "ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let done = frames(&killed).len();
    assert!((500..700).contains(&done), "killed after frame {done}");

    // Resumed, and then made longer (as `extend` does a cluster job): each
    // run encodes from the last whole segment on, and ends with the video
    // of an uninterrupted render of its length, byte for byte.
    for (frames, uninterrupted) in [(700, "whole"), (800, "longer")] {
        let (out, _, stderr) = run(render("killed", frames));
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("encoding resumes here frame=500"),
            "the {frames}-frame run encoded the video from its start: {stderr}"
        );
        // The frames first, then the video: a failure says which part
        // of the chain (the resumed frame loop, the encoder, the join)
        // made the difference.
        let theirs = dir.path().join(format!("{uninterrupted}-preview"));
        let (ours, same) = (frame_bytes(&killed), frame_bytes(&theirs));
        assert_eq!(ours.len(), same.len(), "the {frames}-frame run's frames");
        let differing = (0..ours.len()).find(|&n| ours[n] != same[n]);
        assert_eq!(
            differing, None,
            "the {frames}-frame run's first frame unlike an uninterrupted render's"
        );
        assert!(
            bytes(video("killed")) == bytes(video(uninterrupted)),
            "the {frames}-frame run's video differs from an uninterrupted render's, its frames alike; {}",
            decoded_difference(&video("killed"), &video(uninterrupted))
        );
        assert_eq!(
            probe(&video("killed"))["nb_read_frames"],
            frames.to_string().as_str()
        );
        // The whole segment stays for the next longer run; the short one
        // and every partial file go.
        assert_eq!(hidden_files(&killed), std::slice::from_ref(&first_segment));
    }
}

#[test]
fn the_video_is_the_same_file_whatever_cores_the_machine_has() {
    // A render resumed elsewhere (a pod rescheduled onto another node, a
    // laptop continuing a server's render) re-encodes its last segment
    // there; it joins the earlier ones byte for byte only if the encoder
    // makes the same file on any machine. 256x192 is tall enough for x264
    // to cut each frame into several slices, which is what a thread count
    // taken from the cores changed.
    let dir = tempfile::tempdir().expect("temp dir");
    let render = |name: &str| turning_camera(&dir.path().join(name), "256x192", 24);
    let video = |name: &str| {
        dir.path()
            .join(format!("{name}-preview/{name}-preview.mp4"))
    };
    run_ok(render("all-cores"));
    let mut one_core = render("one-core");
    limit_to_one_core(&mut one_core);
    run_ok(one_core);
    assert_eq!(
        frame_bytes(&dir.path().join("all-cores-preview")),
        frame_bytes(&dir.path().join("one-core-preview")),
        "the frames"
    );
    assert!(
        std::fs::read(video("all-cores")).expect("a video")
            == std::fs::read(video("one-core")).expect("a video"),
        "one core encoded another video from the same frames; {}",
        decoded_difference(&video("all-cores"), &video("one-core"))
    );
}

#[test]
fn a_full_disk_stops_the_render_with_its_frames_whole_and_it_continues_once_there_is_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole");
    let total = 12;
    run_ok(small_render(&whole, total));
    // Room for a few of the twelve frames (each about 60 KB) and the video
    // being encoded beside them.
    let disk = SmallDisk::mount(&dir.path().join("disk"), 320 << 10);
    let out = disk.path().join("full");
    let error = the_one_error(small_render(&out, total), "a full disk");
    assert!(
        error.contains("No space left on device")
            && error.contains("Fix: make room on that disk")
            && error.contains("run the same command again"),
        "{error}"
    );
    let written = frame_bytes(&out);
    assert!(
        !written.is_empty() && written.len() < total as usize,
        "{} frames on a full disk",
        written.len()
    );
    assert!(
        written == frame_bytes(&whole)[..written.len()],
        "a frame written before the disk filled is not whole"
    );
    // Done as the error says, the render continues to the frames it would
    // have had, and its video.
    disk.grow(16 << 20);
    run_ok(small_render(&out, total));
    assert!(
        frame_bytes(&out) == frame_bytes(&whole),
        "frames differ after the disk filled"
    );
    assert_eq!(
        probe(&out.join("full.mp4"))["nb_read_frames"],
        total.to_string().as_str()
    );
}

#[test]
fn a_tile_too_big_for_memory_fails_with_advice_instead_of_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let render = |size: &str| {
        let out = dir.path().join(size);
        let mut args = vec!["render"];
        args.extend(one_tile_dream(size));
        args.extend(["--frames", "2", "--output", path_str(&out)]);
        let mut command = dreamfarm(&args);
        limit_memory(&mut command, SMALL_MEMORY);
        (command, out)
    };
    // The limit leaves room for a small frame ...
    let (small, out) = render("160x160");
    run_ok(small);
    assert_eq!(frames(&out).len(), 2);
    // ... and not for a 2048x2048 tile, which libtorch fails to allocate:
    // one error that says so and what to change, not a panic with
    // libtorch's C++ stack.
    let (big, out) = render("2048x2048");
    let error = the_one_error(big, "a tile too big for memory");
    assert!(
        error.starts_with("error: tile 0 of frame 0, octave 0: out of memory dreaming a ")
            && error.contains("can't allocate memory")
            && error.contains("Fix: dream smaller tiles (a lower --tile-size"),
        "{error}"
    );
    assert!(!error.contains("frame #"), "{error}");
    assert!(frames(&out).is_empty());
}

// ------------------------------------------------------------ bad input

/// A PNG whose header says `width`×`height` and whose pixels never come: a
/// decoder that trusted the header would try to allocate them.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut header = width.to_be_bytes().to_vec();
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &header[..]), (b"IDAT", &[]), (b"IEND", &[])] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32fast::hash(&chunk).to_be_bytes());
    }
    png
}

/// Everything in `dir` with its bytes, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("folder")
        .filter_map(Result::ok)
        .map(|e| (e.path(), std::fs::read(e.path()).expect("readable")))
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_gets_one_clear_error_and_finished_frames_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = dir.path().join("finished");
    run_ok(small_render(&finished, 2));
    let before = snapshot(&finished);
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really a PNG").expect("write");
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_header_only(40_000, 30_000)).expect("write");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"").expect("write");
    let under_a_file = a_file.join("out");
    let nowhere = dir.path().join("nowhere");
    // A PyTorch checkpoint (a zip archive) given as weights.
    let checkpoint = dir.path().join("weights.pth");
    std::fs::write(&checkpoint, b"PK\x03\x04 not a safetensors file").expect("write");
    let fin = path_str(&finished);

    // The small render's flags, with `extra` replacing flags of the same
    // name, into `output`.
    let with = |extra: &[&str], output: &str| -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut base = SMALL_RENDER.iter().chain(&["--frames", "3"]);
        while let Some(&arg) = base.next() {
            if arg.starts_with("--") && extra.contains(&arg) {
                base.next();
            } else {
                args.push(arg.into());
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--output".into(), output.into()]);
        args
    };
    let replace_input = |args: Vec<String>, input: &Path| -> Vec<String> {
        let mut args = args;
        let i = args.iter().position(|a| a == "--input").expect("--input") + 1;
        args[i] = path_str(input).to_string();
        args
    };
    // The --ui page's address, taken by another program.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken_at = holder.local_addr().expect("its address");
    let taken = taken_at.to_string();
    let taken_says = format!(
        "cannot serve the web interface on {taken}: Address already in use (os error 98). \
         Fix: another process holds port {}: pass a free port to --ui",
        taken_at.port()
    );
    let a_file_says = format!(
        "cannot write to output folder {}: it is a file, not a folder",
        a_file.display()
    );
    let under_a_file_says = format!(
        "cannot write to output folder {}: {} is a file, not a folder",
        under_a_file.display(),
        a_file.display()
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&["--ui", &taken], path_str(&nowhere)), &taken_says),
        (
            replace_input(with(&[], fin), Path::new("no/such/photo.png")),
            "input image no/such/photo.png: cannot open it",
        ),
        (
            replace_input(with(&[], fin), &corrupt),
            "not a readable image",
        ),
        (
            replace_input(with(&[], fin), dir.path()),
            "cannot read it (Is a directory (os error 21)); give a PNG or JPEG file",
        ),
        (
            replace_input(with(&[], fin), &huge),
            "40000x30000, larger than the 16384 pixels per side",
        ),
        (
            with(&["--layers", "mixed9"], fin),
            "has no layer \"mixed9\"",
        ),
        (
            with(&["--layers", "mixed4:1:700-800"], path_str(&nowhere)),
            "layer mixed4 of inception-v3 has 768 channels, numbered 0 to 767, so channel 800 does not exist",
        ),
        (
            with(&["--frames", "0"], fin),
            "frames = 0 is out of range: 1 to",
        ),
        (
            with(&["--size", "100000x100"], fin),
            "size = 100000x100 is out of range",
        ),
        (
            with(&["--zoom-factor", "0"], fin),
            "zoom at frame 0 = 0 is out of range",
        ),
        (
            with(&["--seed", "many"], fin),
            "invalid value 'many' for '--seed",
        ),
        (
            with(&["--iterations", "3", "--seed", "9"], fin),
            "holds frames of a different job (seed: 0 in the folder's job, 9 in this command)",
        ),
        (
            with(&["--frames", "1"], fin),
            "already holds 2 frames of this job, more than the 1 asked for",
        ),
        (with(&[], path_str(&under_a_file)), &under_a_file_says),
        (with(&[], path_str(&a_file)), &a_file_says),
        (
            with(&["--device", "cuda:99"], path_str(&nowhere)),
            "cuda:99 requested, but",
        ),
        (
            with(&["--model", "googlenet"], path_str(&nowhere)),
            "googlenet needs your own weights: pass --weights",
        ),
        // More memory than the render may take (the machine's, by default).
        (
            with(
                &["--size", "4096x4096", "--max-memory", "1GiB"],
                path_str(&nowhere),
            ),
            "a 4096x4096 render needs about 6.7 GiB of memory for its frames and video (6.7 GiB) and the network's passes on the CPU (10 MiB), more than --max-memory (1.0 GiB). Fix: pass a smaller --size or --tile-size",
        ),
        // Refused by the model, which is loaded before the folder is made.
        (
            with(&["--size", "176x60"], path_str(&nowhere)),
            "at the job's size it is 176x60, smaller than the 75 pixels per side the model needs; pass a larger --size",
        ),
        (
            with(&["--weights", path_str(&checkpoint)], path_str(&nowhere)),
            "it is a PyTorch checkpoint (.pth)",
        ),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, _, stderr) = run(dreamfarm(&args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in\n{stderr}"
        );
        let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(errors, 1, "one error, not {errors}: {stderr}");
        assert!(
            stderr.matches("(os error").count() <= 1,
            "the cause is said once: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            snapshot(&finished) == before,
            "{args:?} touched finished work"
        );
    }

    assert!(!nowhere.exists(), "a failed render left a folder behind");

    // A name that is a path.
    for name in ["../escape", "a/b", ".."] {
        let (out, _, stderr) = run(dreamfarm(&[
            "render",
            "--input",
            "assets/astronaut.png",
            "--frames",
            "1",
            "--name",
            name,
        ]));
        assert!(!out.status.success(), "--name {name} succeeded");
        assert!(stderr.contains("without path separators"), "{stderr}");
    }

    // Frames whose job.toml is gone: refused with what is missing, and
    // nothing in the folder touched.
    std::fs::remove_file(finished.join("job.toml")).expect("remove job.toml");
    let orphans = snapshot(&finished);
    let args = with(&[], fin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _, stderr) = run(dreamfarm(&args));
    assert!(
        !out.status.success(),
        "frames without job.toml were resumed"
    );
    assert!(
        stderr.contains("holds frames but no job.toml saying which job made them"),
        "{stderr}"
    );
    assert_eq!(snapshot(&finished), orphans, "it touched the frames");
}

/// An input edited in place after frames were made from it (the same
/// path, other pixels) stops the resumed render with one error that says
/// so, and no frame is touched; with the photo put back the render goes
/// on. The folder's `sources.sha256` is what `sha256sum -c` reads.
#[test]
fn a_render_whose_input_was_edited_in_place_stops_until_it_is_put_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let photo = dir.path().join("photo.png");
    let original = repo().join("assets/astronaut.png");
    std::fs::copy(&original, &photo).expect("the photo");
    let out = dir.path().join("edited");
    // The small render's flags, reading the photo instead of the astronaut.
    let render = |frames: u32| {
        let args: Vec<String> = small_render(&out, frames)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .map(|a| match a.as_str() {
                "assets/astronaut.png" => path_str(&photo).to_string(),
                _ => a,
            })
            .collect();
        let mut command = dreamfarm(&[]);
        command.args(args);
        command
    };
    run_ok(render(1));
    let checked = Command::new("sha256sum")
        .args(["-c", "sources.sha256"])
        .current_dir(&out)
        .output()
        .expect("sha256sum runs");
    assert!(checked.status.success(), "{checked:?}");

    image::open(&original)
        .expect("the astronaut")
        .fliph()
        .save(&photo)
        .expect("the photo edited in place");
    let before = snapshot(&out);
    let error = the_one_error(render(2), "an input edited in place");
    assert!(
        error.contains("photo.png has changed since the frames in")
            && error.contains("(1 of them;"),
        "{error}"
    );
    assert_eq!(
        snapshot(&out),
        before,
        "the refused render touched the folder"
    );

    std::fs::copy(&original, &photo).expect("the photo put back");
    run_ok(render(2));
    assert_eq!(frames(&out).len(), 2);
}

/// A render that stopped before its first frame (here a size too small for
/// the model) made nothing to keep: the corrected command renders into the
/// same folder instead of being refused as "a different job". And what a
/// render writes for the user (frames, job.toml, sources.sha256, video) has the
/// permissions any file the user makes has, not a temporary file's 0600.
#[test]
fn a_folder_without_frames_goes_to_the_corrected_command_and_its_files_are_the_users() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("typo");
    let mut typo: Vec<&str> = SMALL_RENDER
        .iter()
        .map(|&a| if a == "176x128" { "64x64" } else { a })
        .collect();
    typo.extend(["--frames", "2", "--output", path_str(&out)]);
    let (status, _, stderr) = run(dreamfarm(&typo));
    assert!(!status.status.success(), "a 64x64 render succeeded");
    assert!(stderr.contains("pass a larger --size"), "{stderr}");
    assert!(frames(&out).is_empty(), "the failed render wrote a frame");

    let stdout = run_ok(small_render(&out, 2));
    assert_eq!(frames(&out).len(), 2, "the corrected render's frames");
    let manifest = std::fs::read_to_string(out.join("job.toml")).expect("job.toml");
    assert!(
        manifest.contains("size = [176, 128]"),
        "job.toml is the corrected job's:\n{manifest}"
    );
    let video = PathBuf::from(stdout.trim());
    let plain = plain_file_mode(dir.path());
    for file in
        frames(&out)
            .into_iter()
            .chain([out.join("job.toml"), out.join("sources.sha256"), video])
    {
        assert_eq!(
            file_mode(&file),
            plain,
            "{} has mode {:o}, not a plain file's {plain:o}",
            file.display(),
            file_mode(&file)
        );
    }
}

/// Two renders of one folder (the same command started twice): the second
/// stops at once with one error saying another render writes there, and
/// the first renders on undisturbed; once it has ended, the folder is free.
#[test]
fn a_second_render_into_a_folder_being_rendered_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("busy");
    let mut first = spawn_small_render(&out, 12, Stdio::null());
    dreamfarm_tests::wait_for("the first frame", Duration::from_secs(120), || {
        !frames(&out).is_empty()
    });
    let (second, _, stderr) = run(small_render(&out, 12));
    assert!(!second.status.success(), "the second render ran: {stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("another dreamfarm render or fetch is writing into"),
        "{stderr}"
    );
    assert!(
        first.wait().expect("wait").success(),
        "the first render failed"
    );
    assert_eq!(frames(&out).len(), 12);
    run_ok(small_render(&out, 12));
}

/// Linux file names are bytes, not always UTF-8, but a job file is TOML,
/// which is: a render of such a file, or of a job file in such a folder,
/// is refused with one error naming the path, before any folder is made
/// (it panicked); a still (`dream`), which records no job file, takes it.
#[test]
fn a_path_that_is_not_utf8_is_refused_by_a_render_and_taken_by_a_still() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let odd = |name: &[u8]| dir.path().join(std::ffi::OsStr::from_bytes(name));
    let astronaut = repo().join("assets/astronaut.png");
    let photo = odd(b"a\xffb.png");
    std::fs::copy(&astronaut, &photo).expect("copy");
    let job_dir = odd(b"job\xff");
    std::fs::create_dir(&job_dir).expect("folder");
    std::fs::copy(&astronaut, job_dir.join("photo.png")).expect("copy");
    std::fs::write(
        job_dir.join("job.toml"),
        "input = \"photo.png\"\nframes = 1\nsize = [64, 64]\n",
    )
    .expect("job file");
    let out = dir.path().join("out");
    let render = |source: &str, path: &Path| {
        let mut c = dreamfarm(&["render", "--octaves", "1", "--iterations", "1"]);
        c.args(["--size", "64x64", "--frames", "1", "--device", "cpu"])
            .args(["--output", path_str(&out), source])
            .arg(path);
        c
    };
    let said = the_one_error(render("--input", &photo), "an input named in non-UTF-8");
    assert!(said.contains(r#"a\xFFb.png" is not UTF-8 text"#), "{said}");
    assert!(said.contains("Fix: rename the file"), "{said}");
    let said = the_one_error(
        render("--job", &job_dir.join("job.toml")),
        "a job file in a non-UTF-8 folder",
    );
    assert!(
        said.contains(r#"job\xFF/photo.png" is not UTF-8 text"#),
        "{said}"
    );
    assert!(!out.exists(), "a refused render made its folder");

    let still = dir.path().join("still.png");
    let mut dream = dreamfarm(&["dream", "--octaves", "1", "--iterations", "1"]);
    dream
        .args(["--device", "cpu", "-o", path_str(&still)])
        .arg(&photo);
    run_ok(dream);
    let dreamed = image::open(&still).expect("the still is an image");
    assert_eq!((dreamed.width(), dreamed.height()), (512, 512));
}

/// Paths in a job file are relative to the file, the input's and also the
/// guide's and the colour reference's: a job folder moved elsewhere, or
/// run from another folder, renders the same.
#[test]
fn a_job_files_images_are_found_beside_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs folder");
    for (from, to) in [
        ("assets/astronaut.png", "in.png"),
        ("assets/chelsea.png", "guide.png"),
        ("assets/chelsea.png", "palette.png"),
    ] {
        std::fs::copy(repo().join(from), jobs.join(to)).expect("copy");
    }
    let job = jobs.join("job.toml");
    std::fs::write(
        &job,
        "input = \"in.png\"\nframes = 2\nsize = [160, 120]\n\
         [dream]\nguide = \"guide.png\"\n\
         [color]\ncoherence = \"lab\"\nreference = \"palette.png\"\n",
    )
    .expect("job file");
    let out = dir.path().join("out");
    let args = [
        "render",
        "--job",
        path_str(&job),
        "--dry-run",
        "--output",
        path_str(&out),
    ];
    // Run from the repository: none of the three is there.
    let (status, _, stderr) = run(dreamfarm(&args));
    assert!(status.status.success(), "{stderr}");
    assert_eq!(frames(&dir.path().join("out-preview")).len(), 2);
}

// ------------------------------------------------------- the seed's flags

/// The value of `key = …` in the `[table]` of a job manifest.
fn manifest_value(manifest: &str, table: &str, key: &str) -> String {
    let mut current = "";
    for line in manifest.lines() {
        if let Some(t) = line.strip_prefix('[') {
            current = t.trim_end_matches(']');
        } else if current == table
            && let Some((k, v)) = line.split_once(" = ")
            && k == key
        {
            return v.to_string();
        }
    }
    panic!("no {key} in [{table}] of\n{manifest}")
}

#[test]
fn the_seed_programs_flags_keep_their_meaning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("seedflags");
    run_ok(dreamfarm(&[
        "render",
        "--input",
        "assets/astronaut.png",
        "--size",
        "200x100",
        "--output",
        path_str(&out),
        "--frames",
        "1",
        "--iter_num",
        "2",
        "--rec_num",
        "1",
        "--zoom",
        "5",
        "--tile-size",
        "128",
        "--device",
        "cpu",
    ]));
    let manifest = std::fs::read_to_string(out.join("job.toml")).expect("job.toml");
    // --rec_num 1 is one octave beyond the first: real octaves.
    assert_eq!(manifest_value(&manifest, "dream", "octaves"), "2");
    assert_eq!(manifest_value(&manifest, "dream", "iterations"), "2");
    // --zoom 5 crops 5 px per side of 200: an isotropic 200/190.
    let zoom: f64 = manifest_value(&manifest, "zoom", "zoom")
        .parse()
        .expect("float");
    assert!((zoom - 200.0 / 190.0).abs() < 1e-12, "{zoom}");
    assert_eq!(frames(&out).len(), 1);

    let (status, _, stderr) = run(dreamfarm(&[
        "render",
        "--input",
        "assets/astronaut.png",
        "--frames",
        "1",
        "--zoom",
        "2",
        "--zoom-factor",
        "1.1",
    ]));
    assert!(!status.status.success());
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn without_ffmpeg_the_frames_stay_and_a_rerun_makes_the_video() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("noffmpeg");
    let mut no_ffmpeg = small_render(&out, 2);
    no_ffmpeg.env("PATH", dir.path());
    let (status, _, stderr) = run(no_ffmpeg);
    assert!(!status.status.success());
    assert!(stderr.contains("ffmpeg was not found"), "{stderr}");
    assert!(stderr.contains("apt-get install ffmpeg"), "{stderr}");
    let finished = frame_bytes(&out);
    assert_eq!(finished.len(), 2);

    let stdout = run_ok(small_render(&out, 2));
    assert!(frame_bytes(&out) == finished);
    assert_eq!(probe(Path::new(stdout.trim()))["nb_read_frames"], "2");
}
