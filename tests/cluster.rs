//! The cluster on loopback, as separate processes: a coordinator, workers
//! that join, die (`kill -9`) or stop (SIGTERM) mid-job, clients that
//! submit, watch and fetch, and hostile callers. Frames must equal those of
//! the single-machine render of the same job.

use dreamfarm_common::digest::sha256_hex;
use dreamfarm_tests::cgroup_limit::CgroupLimit;
use dreamfarm_tests::cluster::{Coordinator, TOKEN};
use dreamfarm_tests::small_job::{JOB, LIMIT, job, reference, rendered};
use dreamfarm_tests::{
    SMALL_MEMORY, altered_weights, dreamfarm, frame_bytes, frames, one_tile_dream,
    open_files_limits, run, run_ok, videos,
};

/// Polls `cond` until it holds, for at most the job's limit.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    dreamfarm_tests::wait_for(what, LIMIT, cond);
}

#[test]
fn one_worker_three_workers_and_one_machine_give_identical_frames() {
    let reference = reference();
    assert_eq!(reference.len(), 3);
    for workers in [1, 3] {
        let c = Coordinator::start();
        let _pool: Vec<_> = (0..workers).map(|i| c.worker(&format!("w{i}"))).collect();
        let id = c.submit(&job("same"));
        // `watch` follows the job to the end and exits 0 when it is done.
        let watch = run_ok(c.client("watch", &[&id]));
        assert!(watch.contains("done"), "{watch}");
        assert!(
            c.fetch_frames(&id) == reference,
            "{workers} worker(s): frames differ from the single-machine render"
        );
        assert_eq!(c.metric("dreamfarm_workers"), workers as f64);
    }
}

#[test]
fn a_worker_on_two_devices_offers_both_and_gives_single_machine_frames() {
    let c = Coordinator::start();
    // Two CPU "devices" here; cuda:0,cuda:1 (or all) on a GPU machine.
    let worker = c.worker_on("pair", "cpu,cpu");
    let id = c.submit(&job("pair"));
    let watch = run_ok(c.client("watch", &[&id]));
    assert!(watch.contains("done"), "{watch}");
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ from the single-machine render"
    );
    let log = c.log();
    assert!(
        log.lines().any(|l| l.contains("worker joined")
            && l.contains("device=cpu,cpu")
            && l.contains("concurrency=2")),
        "the worker did not offer two tiles at once on two devices: {log}"
    );
    // Each device's compute thread loads its model with its first lease.
    let loads = worker.log().matches("model loaded").count();
    assert_eq!(
        loads,
        2,
        "leases went to {loads} device(s): {}",
        worker.log()
    );
}

#[test]
fn a_jobs_own_weights_reach_workers_that_have_no_copy_of_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mine = dir.path().join("mine.safetensors");
    altered_weights("inception-v3.safetensors", &mine);
    let path = mine.to_str().expect("UTF-8");
    let c = Coordinator::start();
    let mut own = job("own");
    own.extend(["--weights", path]);
    let id = c.submit(&own);
    // The file is gone from where the job named it (a laptop's path that
    // no worker can see): only the upload is left.
    let kept = dir.path().join("kept.safetensors");
    std::fs::rename(&mine, &kept).expect("moved");
    let worker = c.worker("w");
    c.wait_done(&id, LIMIT);
    let frames = c.fetch_frames(&id);
    let mut same = JOB.to_vec();
    same.extend(["--weights", kept.to_str().expect("UTF-8")]);
    assert!(
        frames == rendered(&same),
        "frames differ from the single-machine render with the same weights"
    );
    assert!(
        frames != reference(),
        "the job dreamed with the worker's own weights, not the uploaded ones"
    );
    // Kept under their digest: a later job with the same file fetches
    // nothing.
    let digest = sha256_hex(std::fs::File::open(&kept).expect("kept")).expect("hashed");
    assert!(
        worker
            .weights_cache
            .join(format!("{digest}.safetensors"))
            .is_file(),
        "{}",
        worker.log()
    );
    let again = c.submit(&{
        let mut j = job("again");
        j.extend(["--weights", kept.to_str().expect("UTF-8"), "--frames", "1"]);
        j
    });
    c.wait_done(&again, LIMIT);
    assert_eq!(
        worker.log().matches("fetched the job's weights").count(),
        1,
        "{}",
        worker.log()
    );
}

#[test]
fn an_f16_job_sends_half_the_pixel_bytes_and_keeps_single_machine_frames() {
    let c = Coordinator::start();
    let _worker = c.worker("w");
    let bytes =
        || c.metric("dreamfarm_bytes_received_total") + c.metric("dreamfarm_bytes_sent_total");
    let exact = c.submit(&job("f32"));
    c.wait_done(&exact, LIMIT);
    let f32_bytes = bytes();
    let mut half = job("f16");
    half.extend(["--wire-precision", "f16"]);
    let id = c.submit(&half);
    c.wait_done(&id, LIMIT);
    let f16_bytes = bytes() - f32_bytes;
    // Both jobs upload the same input; everything else is tile pixels.
    let input = std::fs::metadata(dreamfarm_tests::repo().join("assets/astronaut.png"))
        .expect("input")
        .len() as f64;
    assert_eq!(
        2.0 * (f16_bytes - input),
        f32_bytes - input,
        "f16 halves every lease and result"
    );
    let mut f16_job = JOB.to_vec();
    f16_job.extend(["--wire-precision", "f16"]);
    assert!(
        c.fetch_frames(&id) == rendered(&f16_job),
        "an f16 job's frames differ from its single-machine render"
    );
}

/// Two frames of two two-step octaves of the astronaut at `size` in tiles
/// of `tile` pixels, with `extra` flags.
fn two_octaves<'a>(size: &'a str, tile: &'a str, extra: [&'a str; 2]) -> Vec<&'a str> {
    let mut job = vec![
        "--input",
        "assets/astronaut.png",
        "--size",
        size,
        "--frames",
        "2",
        "--octaves",
        "2",
        "--iterations",
        "2",
        "--tile-size",
        tile,
    ];
    job.extend(extra);
    job
}

#[test]
fn parallelism_and_tile_batches_give_their_tiles_and_single_machine_frames() {
    let c = Coordinator::start();
    let _pool: Vec<_> = (0..2).map(|i| c.worker(&format!("w{i}"))).collect();
    let run = |job: &[&str], name: &str| {
        let mut submit = job.to_vec();
        submit.extend(["--name", name]);
        let id = c.submit(&submit);
        c.wait_done(&id, LIMIT);
        assert!(
            c.fetch_frames(&id) == rendered(job),
            "the {name} job's frames differ from its single-machine render"
        );
    };
    // One 512-pixel tile per octave, unless --parallelism asks for six:
    // both octaves (274x183 and 384x256) then have 3 x 2 tiles of 128.
    run(
        &two_octaves("384x256", "512", ["--parallelism", "6"]),
        "parallel",
    );
    assert_eq!(
        c.metric("dreamfarm_tiles_completed_total"),
        24.0,
        "2 frames x 2 octaves x 6 tiles"
    );
    // 4 x 1 tiles of 128 on the 512x128 octave: the two inner ones are
    // alike and go as one lease; the 366x91 octave's 3 tiles are not.
    let leases = c.metric("dreamfarm_leases_completed_total");
    run(
        &two_octaves("512x128", "128", ["--tile-batch", "3"]),
        "batched",
    );
    assert_eq!(
        c.metric("dreamfarm_tiles_completed_total"),
        24.0 + 14.0,
        "2 frames x (3 + 4) tiles"
    );
    assert_eq!(
        c.metric("dreamfarm_leases_completed_total") - leases,
        12.0,
        "2 frames x (3 + 3) leases"
    );
}

#[test]
fn schedules_a_guide_and_a_cadence_give_single_machine_frames_on_one_model_load() {
    let extra = [
        "--layers",
        "mixed3,mixed5",
        "--layer-weight",
        "mixed5=0:(0), 2:(1)",
        "--step-size",
        "0:(0.01), 2:(0.02)",
        "--iterations",
        "0:(3), 2:(2)",
        "--jitter",
        "0:(4), 2:(2)",
        "--cadence",
        "2",
        "--guide",
        "assets/chelsea.png",
        "--guide-strength",
        "0.5",
        "--color-coherence",
        "lab",
        "--color-reference",
        "assets/chelsea.png",
    ];
    let mut scheduled = JOB.to_vec();
    scheduled.extend_from_slice(&extra);
    let single = rendered(&scheduled);
    assert_eq!(single.len(), 3);
    assert!(single[2] != reference()[2], "the settings changed nothing");

    let c = Coordinator::start();
    let worker = c.worker("w");
    let mut args = job("scheduled");
    args.extend_from_slice(&extra);
    let id = c.submit(&args);
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == single,
        "the cluster's frames differ from the single-machine render"
    );
    // Three frames' objectives, one model.
    let loads = worker.log().matches("model loaded").count();
    assert_eq!(loads, 1, "the worker loaded its model {loads} times");
}

#[test]
fn a_killed_worker_leases_are_retried_and_a_new_worker_picks_up() {
    let c = Coordinator::start();
    let first = c.worker("doomed");
    let id = c.submit(&job("kill"));
    // Kill it mid-frame, while it holds a lease.
    wait_for("the first tiles", || {
        c.metric("dreamfarm_tiles_completed_total") >= 3.0
    });
    wait_for("a lease in flight", || {
        c.metric("dreamfarm_leases_in_flight") >= 1.0
    });
    first.signal(libc::SIGKILL);
    wait_for("the lost lease to go back", || {
        c.metric("dreamfarm_lease_retries_total") >= 1.0
    });
    assert_eq!(c.metric("dreamfarm_workers"), 0.0);
    assert!(c.status(&id).contains("running"), "{}", c.status(&id));
    let _late = c.worker("late");
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ after a worker died"
    );
}

#[test]
fn a_worker_out_of_memory_fails_the_tile_with_advice_and_goes_on_working() {
    let c = Coordinator::start();
    let mut small = c.worker_with_memory("small", SMALL_MEMORY);
    let mut args = one_tile_dream("2048x2048");
    args.extend(["--frames", "1", "--name", "big"]);
    let big = c.submit(&args);
    wait_for("the job too big for the worker to fail", || {
        c.status(&big).contains("failed")
    });
    let status = c.status(&big);
    assert!(
        status.contains("out of memory dreaming a ")
            && status.contains("Fix: dream smaller tiles (a lower --tile-size")
            && status.contains(&format!("`dreamfarm retry {big}` continues from frame 0")),
        "{status}"
    );
    // Under a data limit the worker gives freed memory back (a heap kept
    // at the size the failed tile grew it to would fail every allocation
    // after it, and oneDNN crashed the worker on one).
    assert!(
        small
            .log()
            .contains("memory is limited by RLIMIT_DATA (ulimit -d): freed memory goes back"),
        "{}",
        small.log()
    );
    // The worker lived through it, and computes the next job. One case
    // is tolerated: an allocation that fails inside oneDNN's kernel
    // generation ("could not create a primitive") can leave libtorch to
    // crash the process on a later kernel (seen at one memory limit on one
    // machine); a crashed worker is then replaced, as its pod would be.
    let id = c.submit(&job("after"));
    let mut replacement = None;
    wait_for("the next job to be done", || {
        if replacement.is_none() && !matches!(small.child.try_wait(), Ok(None)) {
            let log = small.log();
            assert!(
                log.contains("libtorch failed: could not create a primitive"),
                "the worker ended: {log}"
            );
            replacement = Some(c.worker("replacement"));
        }
        c.status(&id).contains(" done ")
    });
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ after a worker ran out of memory"
    );
}

/// In a container's memory limit an allocation does not fail: the kernel
/// kills the process once past it, and every lease it held with it. A
/// CPU worker there refuses a tile whose pass through the network cannot
/// fit beside what it uses, as running out of memory, and lives to
/// compute the next job; without the check the kernel killed it. Passes
/// that fit run, one after another: the memory an earlier pass left in
/// the heap for reuse is not counted as used (it was, when the check
/// took what the process held once a model loaded, and refused the
/// second of these jobs).
#[test]
fn a_worker_in_a_memory_limit_refuses_a_tile_too_big_for_it_and_goes_on_working() {
    let limit = match CgroupLimit::memory(SMALL_MEMORY) {
        Ok(limit) => limit,
        Err(why) => {
            eprintln!("SKIPPED: no cgroup for a memory limit on this machine ({why})");
            return;
        }
    };
    let c = Coordinator::start();
    let mut small = c.worker_in("small", &limit);
    // Each job's seed is a dreamer of its own, loaded after the last pass.
    for seed in ["0", "1"] {
        let mut args = one_tile_dream("1024x1024");
        let name = format!("fits-{seed}");
        args.extend(["--frames", "1", "--seed", seed, "--name", &name]);
        let id = c.submit(&args);
        c.wait_done(&id, LIMIT);
    }
    let mut args = one_tile_dream("2048x2048");
    args.extend(["--frames", "1", "--name", "big"]);
    let big = c.submit(&args);
    wait_for("the job too big for the worker to fail", || {
        assert!(
            matches!(small.child.try_wait(), Ok(None)),
            "the worker ended: {}",
            small.log()
        );
        c.status(&big).contains("failed")
    });
    let status = c.status(&big);
    assert!(
        status.contains("out of memory dreaming a 2112x2112 tile (its pass through the network needs about 2.5 GiB, and this process uses ")
            && status.contains("of the 1.2 GiB it may have (the container's memory limit)). Fix: dream smaller tiles"),
        "{status}"
    );
    let id = c.submit(&job("after"));
    c.wait_done(&id, LIMIT);
    assert!(
        matches!(small.child.try_wait(), Ok(None)),
        "{}",
        small.log()
    );
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ after a worker refused a tile"
    );
}

#[test]
fn a_worker_stopped_with_sigterm_loses_nothing() {
    let c = Coordinator::start();
    let mut leaving = c.worker("leaving");
    let _staying = c.worker("staying");
    let id = c.submit(&job("term"));
    wait_for("the first tiles", || {
        c.metric("dreamfarm_tiles_completed_total") >= 2.0
    });
    leaving.signal(libc::SIGTERM);
    let status = leaving.child.wait().expect("worker exits");
    assert!(
        status.success(),
        "a worker stopped by SIGTERM exits 0: {}",
        leaving.log()
    );
    assert!(
        leaving.log().contains("worker stopped"),
        "{}",
        leaving.log()
    );
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ after a worker left"
    );
}

/// A job's video is encoded a segment at a time while the job renders,
/// and comes out as `render`'s. ffmpeg starts with the open files limit
/// the coordinator was given, not the one it raised for its connections.
#[test]
fn a_jobs_video_is_encoded_while_it_renders_and_is_the_single_machine_video() {
    // Eight frames, so that the encoder is seen at work before the last.
    let total = 8;
    let mut settings = JOB.to_vec();
    let frames_flag = settings.iter().position(|&a| a == "--frames");
    let n = total.to_string();
    settings[frames_flag.expect("--frames in the job") + 1] = &n;
    // ffmpeg through a script that writes down its soft limit first.
    let shim = tempfile::tempdir().expect("temp dir");
    let seen = shim.path().join("limits");
    let script = shim.path().join("ffmpeg");
    let paths: Vec<_> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    let ffmpeg = paths
        .iter()
        .map(|dir| dir.join("ffmpeg"))
        .find(|f| f.is_file())
        .expect("ffmpeg on the PATH");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -Sn >> '{}'\nexec '{}' \"$@\"\n",
            seen.display(),
            ffmpeg.display()
        ),
    )
    .expect("the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("runnable");
    let path = std::env::join_paths(std::iter::once(shim.path().to_path_buf()).chain(paths))
        .expect("a PATH");
    // Under this test's own hard limit, which the coordinator raises to.
    let [_, hard] = open_files_limits("self");
    let hard: u64 = hard.parse().expect("this test's hard limit on open files");
    let soft = (hard / 2).min(1000);
    let c = Coordinator::start_with_open_files(
        soft,
        hard,
        &[("PATH", path.to_str().expect("UTF-8 PATH"))],
    );
    assert_eq!(c.metric("process_max_fds"), hard as f64, "raised");
    let mut submitted = settings.clone();
    submitted.extend(["--name", "streamed"]);
    let id = c.submit(&submitted);
    let _worker = c.worker("w");
    let dir = c.frames_dir(&id);
    // The first segment's partial file: the video is encoded a segment at
    // a time.
    let partial = dir.join(".streamed.000000.segment.partial.mp4");
    let mut encoding_at = None;
    wait_for("the job's video", || {
        let done = frames(&dir).len();
        if done < total && partial.exists() {
            encoding_at.get_or_insert(done);
        }
        dir.join("streamed.mp4").exists()
    });
    assert!(
        encoding_at.is_some(),
        "no video was being encoded before the last frame"
    );
    c.wait_done(&id, LIMIT);
    assert!(!partial.exists(), "the partial video was left behind");
    let single = tempfile::tempdir().expect("temp dir");
    let out = single.path().to_str().expect("UTF-8");
    let mut render = vec!["render", "--device", "cpu", "--output", out];
    render.extend_from_slice(&settings);
    let video = run_ok(dreamfarm(&render));
    assert!(
        std::fs::read(dir.join("streamed.mp4")).expect("the job's video")
            == std::fs::read(video.trim()).expect("the render's video"),
        "the job's video differs from the single-machine render's"
    );
    let limits = std::fs::read_to_string(&seen).expect("ffmpeg ran through the script");
    assert!(
        !limits.is_empty() && limits.lines().all(|l| l == soft.to_string()),
        "ffmpeg's soft limits {limits:?}, not the coordinator's first {soft}"
    );
}

#[test]
fn two_jobs_at_once_share_the_pool() {
    let c = Coordinator::start();
    let _w = c.worker("only");
    let a = c.submit(&job("first"));
    let b = c.submit(&job("second"));
    // When either ends, the other must be well on its way: leases alternate.
    let mut other_done_frames = None;
    wait_for("a job to finish", || {
        let (sa, sb) = (c.status(&a), c.status(&b));
        let frames = |s: &str| -> u64 {
            s.split("frames ")
                .nth(1)
                .and_then(|f| f.split('/').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        if sa.contains(" done ") {
            other_done_frames = Some(frames(&sb));
        } else if sb.contains(" done ") {
            other_done_frames = Some(frames(&sa));
        }
        other_done_frames.is_some()
    });
    assert!(
        other_done_frames >= Some(2),
        "the other job was starved: frame {other_done_frames:?} of 3"
    );
    c.wait_done(&a, LIMIT);
    c.wait_done(&b, LIMIT);
    assert!(c.fetch_frames(&a) == reference());
    assert!(c.fetch_frames(&b) == reference());
}

#[test]
fn bad_clients_get_clear_errors_and_the_coordinator_survives() {
    let mut c = Coordinator::start();
    // Wrong token.
    let mut wrong = dreamfarm(&["status", "--coordinator", &c.url, "--token", "nope"]);
    wrong.current_dir(dreamfarm_tests::repo());
    let (out, _, stderr) = run(wrong);
    assert!(!out.status.success());
    assert!(
        stderr.contains("wrong token") && stderr.contains("Unauthenticated"),
        "{stderr}"
    );
    // The web and metrics port given for the gRPC one (both are in the
    // README's first lines): the client says so, and so does a worker, in
    // its log, while it keeps trying.
    let web = format!("http://{}", c.metrics);
    let mut misdialled = dreamfarm(&["status", "--coordinator", &web, "--token", TOKEN]);
    misdialled.current_dir(dreamfarm_tests::repo());
    let (out, _, stderr) = run(misdialled);
    assert!(!out.status.success());
    let not_grpc = "but not gRPC, so it is not the coordinator's gRPC port. Fix: dial the port of the coordinator's --listen";
    assert!(
        stderr.contains(&format!(
            "{web} answered HTTP (status 404 Not Found) {not_grpc}"
        )),
        "{stderr}"
    );
    let lost = c.worker_via("lost", &web);
    wait_for("the worker's advice", || lost.log().contains(not_grpc));
    drop(lost);
    // Garbage bytes on the gRPC port.
    {
        use std::io::Write;
        let addr = c.url.trim_start_matches("http://").to_string();
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff garbage \x13\x37");
    }
    // A job that is not an image, an unknown layer, an unknown job, a bad
    // name; `render`'s --output, which means nothing to a cluster job (it
    // was taken silently, as the job's name); an input too small, named as
    // the user gave it, not as the coordinator's copy; a checkpoint as
    // weights.
    let refused = |command: &str, args: &[&str], says: &[&str]| {
        let (out, _, stderr) = run(c.client(command, args));
        assert!(!out.status.success(), "{command} {args:?} succeeded");
        assert!(says.iter().all(|s| stderr.contains(s)), "{stderr}");
    };
    let not_image = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(not_image.path(), b"not an image").expect("write");
    let mut args = job("bad");
    args[1] = not_image.path().to_str().expect("UTF-8");
    refused(
        "submit",
        &args,
        &["not a readable image", "give a PNG or JPEG file"],
    );
    let with = |extra: [&'static str; 2]| [job("bad"), extra.to_vec()].concat();
    refused("submit", &with(["--layers", "mixed9"]), &["mixed9"]);
    refused(
        "submit",
        &with(["--layers", "mixed3:1:0-768"]),
        &["layer mixed3 of inception-v3 has 768 channels, numbered 0 to 767"],
    );
    refused("watch", &["no-such-job"], &["NotFound"]);
    refused(
        "status",
        &["no-such-job"],
        &["no job \"no-such-job\" on this coordinator: `dreamfarm status` lists the jobs"],
    );
    refused("submit", &job("bad/name"), &["path separators"]);
    refused(
        "submit",
        &with(["--output", "somewhere"]),
        &["dreamfarm fetch JOB --output somewhere"],
    );
    refused(
        "submit",
        &with(["--size", "64x64"]),
        &["input image assets/astronaut.png: at the job's size it is 64x64"],
    );
    // A PyTorch checkpoint for weights: the command that converts it.
    let checkpoint = tempfile::Builder::new()
        .suffix(".pth")
        .tempfile()
        .expect("temp");
    std::fs::write(
        checkpoint.path(),
        b"PK\x03\x04 an archive, as torch.save writes",
    )
    .expect("write");
    let checkpoint = checkpoint.path().to_str().expect("UTF-8");
    refused(
        "submit",
        &[job("bad"), vec!["--weights", checkpoint]].concat(),
        &[
            "the weights file is a PyTorch checkpoint (.pth), and dreamfarm reads .safetensors",
            &format!("{checkpoint} WEIGHTS.safetensors"),
        ],
    );
    refused(
        "submit",
        &with(["--model", "googlenet"]),
        &["googlenet needs your own weights"],
    );
    assert_eq!(
        run_ok(c.client("status", &[])),
        "no jobs\n",
        "a bad job was queued"
    );
    // Still serving, and a good job still renders correctly.
    assert!(c.alive());
    let _w = c.worker("w");
    let id = c.submit(&job("good"));
    c.wait_done(&id, LIMIT);
    assert!(c.fetch_frames(&id) == reference());
    assert!(c.alive());
}

/// A coordinator at its open files limit (more workers and clients than
/// it allows) waits for a descriptor instead of spinning a core (tonic
/// tried a failed accept again at once: 100% CPU and nothing in the log),
/// says so with the limit and the fix, and accepts again once connections
/// close. It starts with its soft limit raised to the hard one, and shows
/// both on `/metrics`.
#[test]
fn a_coordinator_out_of_open_files_waits_says_so_and_accepts_again() {
    let c = Coordinator::start_with_open_files(64, 128, &[]);
    let open_files = open_files_limits(&c.pid().to_string());
    assert_eq!(
        open_files,
        ["128", "128"],
        "the soft limit raised to the hard one: {open_files:?}"
    );
    assert_eq!(c.metric("process_max_fds"), 128.0);
    // More connections than it may hold at the gRPC port, then at the
    // metrics port (which axum serves): each port has more waiting than
    // the limit leaves room for (125 is more than 128 descriptors less
    // those the process holds, and fits a listener's queue of 128), so
    // both meet it, whichever accepts when (with a few at the metrics
    // port, the gRPC port could leave room for all of them, and once did).
    // The kernel queues the rest.
    let metrics_port: std::net::SocketAddr = c.metrics.parse().expect("host:port");
    let flood: Vec<std::net::TcpStream> = (0..200)
        .map(|_| c.addr())
        .chain((0..125).map(|_| metrics_port))
        .map(|to| std::net::TcpStream::connect(to).expect("queued by the kernel"))
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let cpu = c.cpu_seconds();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let spent = c.cpu_seconds() - cpu;
    assert!(
        spent < 0.5,
        "at its limit the coordinator spent {spent:.2} CPU-s in 3 s"
    );
    let log = c.log();
    assert!(
        log.contains(
            "cannot accept connections on the coordinator's gRPC port (Too many open files \
             (os error 24)); they wait, tried again every 100 ms: this process has all the 128 \
             open files its limit allows"
        ) && log.contains("LimitNOFILE"),
        "{log}"
    );
    assert!(
        log.contains(
            "cannot accept connections on the coordinator's metrics and web port (Too many open \
             files (os error 24)); they wait, tried again every 100 ms"
        ) && !log.contains("accept error"),
        "{log}"
    );
    // And before, once, while connections still came in: at 80% of the
    // limit (103 open, or more where the other port took a descriptor).
    let near: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the coordinator's gRPC port accepted a connection with at least"))
        .collect();
    let open: u32 = near
        .first()
        .and_then(|l| l.split("at least ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a warning near the limit in {log}"));
    assert!(
        near.len() == 1
            && (103..128).contains(&open)
            && near[0].contains(
                "of the 128 open files this process's limit allows in use; at the limit new \
                 connections wait"
            ),
        "{near:?}"
    );
    drop(flood);
    let (out, _, stderr) = run(c.client("status", &[]));
    assert!(out.status.success(), "a client after the flood: {stderr}");
    wait_for("accepting again", || {
        c.log()
            .contains("accepting connections on the coordinator's gRPC port again")
    });
    // Its gauge, for the alert on open descriptors against the limit.
    wait_for("the flood's descriptors closed", || {
        c.metric("process_open_fds") < 64.0
    });
}

/// A token anyone could send (empty: every caller sending an empty token
/// got in) or that no HTTP header can carry (a file's last newline, a
/// letter outside ASCII) stops the coordinator, a worker, a client and
/// `render --ui` at once, each with one error saying what to do and never
/// repeating the token, before anything is made or dialled; so does a
/// coordinator whose data folder is a file, whose memory budget holds no
/// job (a size without its unit) or whose port another process holds.
#[test]
fn a_token_anyone_could_send_or_no_header_could_carry_stops_each_process_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let page_folder = dir.path().join("frames");
    // Bounded, so a process that starts instead of refusing fails the
    // test rather than hanging it.
    let bounded = |binary: &std::path::Path, args: &[&str], token: Option<&str>| {
        let mut c = std::process::Command::new("timeout");
        c.arg("60").arg(binary).args(args);
        c.current_dir(dreamfarm_tests::repo())
            .env_remove("DREAMFARM_TOKEN");
        if let Some(token) = token {
            c.env("DREAMFARM_TOKEN", token);
        }
        c
    };
    let nowhere = "http://127.0.0.1:9";
    let coordinator = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().expect("UTF-8"),
    ];
    let bin = dreamfarm_tests::binary();
    let worker = dreamfarm_tests::worker_binary();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"").expect("write");
    let on_a_file = [
        &coordinator[..5],
        &["--data", a_file.to_str().expect("UTF-8")],
    ]
    .concat();
    let not_a_folder = format!(
        "cannot use the data folder {}: it is a file, not a folder. Fix: give --data (DREAMFARM_DATA) a folder",
        a_file.display()
    );
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = holder.local_addr().expect("its address");
    let taken_text = taken.to_string();
    let on_a_taken_port = [&["coordinator", "--listen", &taken_text], &coordinator[3..]].concat();
    let port_taken = format!(
        "cannot serve gRPC on {taken}: Address already in use (os error 98). Fix: another process holds port {}: pass a free port to --listen",
        taken.port()
    );
    let cases = [
        (
            bounded(
                bin,
                &[&coordinator[..], &["--max-memory", "6"]].concat(),
                Some("s3cret-enough-for-a-test"),
            ),
            "--max-memory (DREAMFARM_MAX_MEMORY) 6 bytes holds no job: every job needs more than 176 MiB. Fix: give the size with its unit, e.g. 6GiB",
        ),
        (
            bounded(bin, &on_a_taken_port, Some("s3cret-enough-for-a-test")),
            &*port_taken,
        ),
        // Not a token, but refused at start the same way.
        (
            bounded(bin, &on_a_file, Some("s3cret-enough-for-a-test")),
            &*not_a_folder,
        ),
        (
            bounded(bin, &[&coordinator[..], &["--token", ""]].concat(), None),
            "--token (DREAMFARM_TOKEN): the token is empty, and anyone can send an empty token. Fix: ",
        ),
        (
            bounded(bin, &coordinator, Some("s3cret\n")),
            "the token starts or ends with a space, tab or newline",
        ),
        (
            bounded(worker, &["--coordinator", nowhere], Some(" s3cret")),
            "--token (DREAMFARM_TOKEN): the token starts or ends with",
        ),
        (
            bounded(
                bin,
                &["status", "--coordinator", nowhere],
                Some("s3cr\u{e9}t"),
            ),
            "--token (DREAMFARM_TOKEN): the token's character 5 is not printable ASCII",
        ),
        (
            bounded(
                bin,
                &[
                    "render",
                    "--input",
                    "assets/astronaut.png",
                    "--ui",
                    "127.0.0.1:0",
                    "--output",
                    page_folder.to_str().expect("UTF-8"),
                    "--token",
                    "",
                ],
                None,
            ),
            "--token (DREAMFARM_TOKEN): the token is empty",
        ),
    ];
    for (command, says) in cases {
        let shown = format!("{command:?}");
        let (out, _, stderr) = run(command);
        assert!(!out.status.success(), "{shown} went on: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{shown}: {stderr}");
        assert!(errors[0].contains(says), "{shown}: {stderr}");
        assert!(errors[0].contains("Fix: "), "{shown}: {stderr}");
        assert!(
            !stderr.contains("s3cr"),
            "{shown} repeated the token: {stderr}"
        );
    }
    assert!(!data.exists(), "a refused coordinator made its data folder");
    assert!(!page_folder.exists(), "a refused render made its folder");
}

/// A worker whose model folder cannot be made stops at start with one
/// error naming the folder and the flag, instead of connecting and then
/// failing (and getting blocked from) every job's tiles; so does one given
/// a model's name for that folder (it used to download the model's files
/// into a folder of that name and fail its tiles converting them).
#[test]
fn a_worker_with_an_unusable_model_folder_stops_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"").expect("write");
    let models = a_file.join("models");
    let stops = |folder: &std::ffi::OsStr| {
        let mut worker = std::process::Command::new(dreamfarm_tests::worker_binary())
            .args(["--coordinator", "http://127.0.0.1:1", "--device", "cpu"])
            .arg("--models")
            .arg(folder)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the worker starts");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = worker.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                let _ = worker.kill();
                panic!("the worker kept running with model folder {folder:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut worker.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert!(!status.success(), "{stderr}");
        let errors: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .map(String::from)
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        errors[0].clone()
    };
    let error = stops(models.as_os_str());
    assert!(
        error.contains(&format!("cannot use the model folder {}", models.display()))
            && error.contains("--models"),
        "{error}"
    );
    let error = stops("mobilenet-v2".as_ref());
    assert!(
        error
            .contains("--models (or DREAMFARM_MODELS) is the folder the model weights are kept in")
            && error.contains("write ./mobilenet-v2 for a folder of that name"),
        "{error}"
    );
    assert!(
        !dir.path().join("mobilenet-v2").exists(),
        "the worker made a folder named after the model"
    );
}

/// A fetched job's folder is a render folder of its own: its job file
/// names the job's uploaded files, which come beside it, so
/// `dreamfarm render --job FOLDER/job.toml` continues the farm's frames on
/// this machine, in that folder and into the job's video, with the
/// coordinator and its data gone.
#[test]
fn a_fetched_job_continues_on_this_machine_from_its_folder_alone() {
    let colour = [
        "--color-coherence",
        "lab",
        "--color-reference",
        "assets/chelsea.png",
    ];
    let c = Coordinator::start();
    let _worker = c.worker("w");
    let mut args = job("portable");
    args.extend(colour);
    let id = c.submit(&args);
    c.wait_done(&id, LIMIT);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("fetched");
    let out_str = out.to_str().expect("UTF-8");
    run_ok(c.client("fetch", &[&id, "--output", out_str]));
    let uploaded = c.data().join(&id);
    for file in ["input.png", "color-reference.png"] {
        assert!(
            std::fs::read(out.join(file)).ok() == std::fs::read(uploaded.join(file)).ok(),
            "{file} was not fetched as uploaded"
        );
    }
    drop(c);

    let manifest = out.join("job.toml");
    let job_file = manifest.to_str().expect("UTF-8");
    run_ok(dreamfarm(&[
        "render", "--job", job_file, "--frames", "5", "--device", "cpu",
    ]));
    let mut longer = JOB.to_vec();
    longer.extend(colour);
    longer.extend(["--frames", "5"]);
    assert!(
        frame_bytes(&out) == rendered(&longer),
        "the continued frames differ from a single-machine render of 5 frames"
    );
    assert_eq!(
        videos(&out),
        ["portable.mp4"],
        "the job's video was not continued"
    );
    let manifest = std::fs::read_to_string(&manifest).expect("job.toml");
    assert!(manifest.contains("frames = 5"), "{manifest}");
}

/// The files of `dir` by name, with their bytes.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().into_string().expect("UTF-8 name");
            (name, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

/// Fetching a job again sends only the files the folder lacks or holds
/// changed (a long render fetched as it goes costs its new frames, not all
/// of them each time), and a file of any size goes through the
/// coordinator a piece at a time, never whole in its memory.
#[test]
fn fetching_again_sends_only_new_and_changed_files_a_piece_at_a_time() {
    let c = Coordinator::start();
    let _worker = c.worker("w");
    let id = c.submit(&job("again"));
    c.wait_done(&id, LIMIT);
    let there = c.frames_dir(&id);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("fetched");
    let sent = || c.metric("dreamfarm_bytes_sent_total");
    // The frames and video as they are there, the input beside them, and
    // a job file naming it there.
    let fetched_as_there = || {
        let mut got = files_of(&out);
        let job_file = got.remove("job.toml").unwrap_or_default();
        let input = got.remove("input.png");
        let mut expected = files_of(&there);
        expected.remove("job.toml");
        got == expected
            && input == std::fs::read(c.data().join(&id).join("input.png")).ok()
            && String::from_utf8_lossy(&job_file).contains("input = \"input.png\"")
    };
    let fetch = || {
        let before = sent();
        let said = run_ok(c.client("fetch", &[&id, "--output", out.to_str().expect("UTF-8")]));
        assert!(fetched_as_there(), "fetched files differ: {said}");
        (sent() - before, said)
    };
    let size = |name: &str| std::fs::metadata(there.join(name)).expect("frame").len() as f64;

    let (bytes, said) = fetch();
    let all: f64 = files_of(&out).values().map(|b| b.len() as f64).sum();
    assert_eq!(bytes, all, "{said}");
    assert!(said.starts_with("fetched 6 files"), "{said}");

    let (bytes, said) = fetch();
    assert_eq!(bytes, 0.0, "a second fetch sent its files again: {said}");
    assert!(said.contains("fetched 0 files") && said.contains("6 files already there"));

    // A render or another fetch writing into the folder holds its lock:
    // this fetch waits for no one and is refused.
    let lock_path = out.join(".dreamfarm.lock");
    let lock = std::fs::File::create(&lock_path).expect("a lock file");
    lock.lock().expect("lock");
    let out_str = out.to_str().expect("UTF-8");
    let (status, _, stderr) = run(c.client("fetch", &[&id, "--output", out_str]));
    assert!(!status.status.success(), "{stderr}");
    assert!(
        stderr.contains("another dreamfarm render or fetch is writing into"),
        "{stderr}"
    );
    drop(lock);
    std::fs::remove_file(&lock_path).expect("unlock");
    // A fetch killed mid-file leaves its hidden part; the next removes it
    // (`fetch` checks the folder equals the coordinator's).
    std::fs::write(out.join(".fetch-killed.part"), b"half a frame").expect("a part");
    let (bytes, _) = fetch();
    assert_eq!(bytes, 0.0);

    // A folder of more files than one request can name (here 50 000 of
    // the user's own, with long names: about 5 MB of names).
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("a folder");
    for n in 0..50_000 {
        let name = format!("{}-{n:06}.txt", "n".repeat(90));
        std::fs::File::create(many.join(name)).expect("a file");
    }
    let many_out = many.to_str().expect("UTF-8");
    let said = run_ok(c.client("fetch", &[&id, "--output", many_out]));
    assert!(said.starts_with("fetched 6 files"), "{said}");
    std::fs::remove_dir_all(&many).expect("clean up");

    // A damaged copy and one of another time are sent again.
    std::fs::write(out.join("000001.png"), b"damaged").expect("damage");
    std::fs::File::options()
        .write(true)
        .open(out.join("000002.png"))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .expect("touch");
    let (bytes, said) = fetch();
    assert_eq!(bytes, size("000001.png") + size("000002.png"), "{said}");
    assert!(said.contains("fetched 2 files") && said.contains("4 files already there"));

    // More frames: the new frame, the new video and the job file come.
    run_ok(c.client("extend", &[&id, "--frames", "4"]));
    c.wait_done(&id, LIMIT);
    let (_, said) = fetch();
    assert!(
        said.contains("fetched 3 files") && said.contains("4 files already there"),
        "{said}"
    );

    // A folder holding another job's frames (a render's, say), or frames
    // and no job file, is refused before any of them is replaced.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("a folder");
    for (name, bytes) in files_of(&out) {
        std::fs::write(other.join(&name), bytes).expect("copy");
    }
    let toml = std::fs::read_to_string(other.join("job.toml")).expect("job.toml");
    std::fs::write(other.join("job.toml"), toml.replace("seed = 0", "seed = 7")).expect("edit");
    let mine = files_of(&other);
    let other_out = other.to_str().expect("UTF-8");
    let (status, _, stderr) = run(c.client("fetch", &[&id, "--output", other_out]));
    assert!(!status.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "holds frames of another job (seed: 7 in the folder's job, 0 in job {id})"
        )),
        "{stderr}"
    );
    std::fs::remove_file(other.join("job.toml")).expect("remove");
    let (status, _, stderr) = run(c.client("fetch", &[&id, "--output", other_out]));
    assert!(!status.status.success(), "{stderr}");
    assert!(stderr.contains("holds frames but no job.toml"), "{stderr}");
    let mut left = mine;
    left.remove("job.toml");
    assert!(
        files_of(&other) == left,
        "a refused fetch changed the folder"
    );

    // A folder that cannot be written is one clear error, before any
    // download.
    let a_file = out.join("job.toml");
    for bad in [a_file.clone(), a_file.join("under")] {
        let bad = bad.to_str().expect("UTF-8");
        let before = sent();
        let (status, _, stderr) = run(c.client("fetch", &[&id, "--output", bad]));
        assert!(!status.status.success(), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(bad) && errors[0].contains("Fix: pass --output a folder"));
        assert_eq!(sent(), before, "{stderr}");
    }

    // A file of 512 MiB leaves the coordinator's peak memory where it was.
    let big = 512u64 << 20;
    std::fs::File::create(there.join("big.bin"))
        .and_then(|f| f.set_len(big))
        .expect("a big file");
    let peak = c.peak_rss_gib();
    let (bytes, said) = fetch();
    assert_eq!(bytes, big as f64, "{said}");
    let grew = (c.peak_rss_gib() - peak) * 1024.0;
    assert!(
        grew < 64.0,
        "fetching a 512 MiB file raised the coordinator's peak memory by {grew:.0} MiB"
    );
}
