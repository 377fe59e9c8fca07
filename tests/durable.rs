//! Jobs outlive every process of the farm: a coordinator killed with
//! `kill -9` comes back on the same data folder with every job in its
//! state, running jobs finish with frames byte-identical to `dreamfarm
//! render`, `watch` carries on across the restart, the job controls work
//! end to end, a damaged or too-new store is refused with one clear error
//! (one job a newer release wrote is set aside, the others run),
//! and the memory budget holds jobs back instead of running out.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::job_service_client::JobServiceClient;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::{FetchRequest, Hello, LeaseFailed, WorkerMessage};
use dreamfarm_tests::cluster::{Coordinator, RawSession, TOKEN, Worker};
use dreamfarm_tests::fault_proxy::{Direction, FaultProxy};
use dreamfarm_tests::http::get;
use dreamfarm_tests::{dreamfarm, frame_bytes, frames, run, run_ok};
use tokio_stream::StreamExt;

/// A small job: two octaves of 2x2 and 3x2 tiles, a camera move.
const JOB: &[&str] = &[
    "--input",
    "assets/astronaut.png",
    "--size",
    "160x120",
    "--octaves",
    "2",
    "--iterations",
    "2",
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

/// Frames of the reference render; shorter jobs are its prefixes.
const REFERENCE_FRAMES: u32 = 20;

const LIMIT: Duration = Duration::from_secs(300);

/// Finished jobs the jobs page shows, the newest.
const PAGE_FINISHED_JOBS: usize = 100;

/// The job's frames rendered by `dreamfarm render` on this machine.
fn reference() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().to_str().expect("UTF-8").to_string();
        let n = REFERENCE_FRAMES.to_string();
        let mut args = vec![
            "render", "--device", "cpu", "--output", &out, "--frames", &n,
        ];
        args.extend_from_slice(JOB);
        run_ok(dreamfarm(&args));
        frame_bytes(dir.path())
    })
}

fn job(name: &str, frames: u32) -> Vec<String> {
    let mut args: Vec<String> = JOB.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--name".into(),
        name.into(),
        "--frames".into(),
        frames.to_string(),
    ]);
    args
}

fn submit(c: &Coordinator, name: &str, frames: u32, extra: &[&str]) -> String {
    let mut args = job(name, frames);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.submit(&args)
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    dreamfarm_tests::wait_for(what, LIMIT, cond);
}

/// Frames of job `id` on the coordinator's disk.
fn frames_on_disk(c: &Coordinator, id: &str) -> usize {
    frames(&c.frames_dir(id)).len()
}

/// The job's state word in `dreamfarm status JOB`.
fn state(c: &Coordinator, id: &str) -> String {
    c.status(id)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// `dreamfarm watch JOB` in the background, what it says going to `log`.
fn watch_into(c: &Coordinator, id: &str, log: &std::path::Path) -> std::process::Child {
    c.client("watch", &[id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("watch starts")
}

/// `dreamfarm events JOB`.
fn events(c: &Coordinator, id: &str) -> String {
    run_ok(c.client("events", &[id]))
}

/// `dreamfarm CONTROL ARGS` must succeed.
fn control(c: &Coordinator, control: &str, args: &[&str]) -> String {
    let (out, stdout, stderr) = run(c.client(control, args));
    assert!(out.status.success(), "{control} {args:?}: {stderr}");
    stdout
}

/// `dreamfarm CONTROL ARGS` must fail; its stderr.
fn refused(c: &Coordinator, control: &str, args: &[&str]) -> String {
    let (out, _, stderr) = run(c.client(control, args));
    assert!(!out.status.success(), "{control} {args:?} succeeded");
    stderr
}

#[test]
fn a_coordinator_killed_twice_mid_job_finishes_it_identically_and_watch_carries_on() {
    let reference = reference();
    let mut c = Coordinator::start();
    let _worker = c.worker("w");
    // Frames enough after the second kill's that a fast machine still has
    // leases in flight when it comes.
    let id = submit(&c, "crash", 8, &[]);
    let watch_log = c.dir.path().join("watch.log");
    let mut watch = watch_into(&c, &id, &watch_log);
    // Mid-frame (a lease in flight), then again later in the job.
    for frames in [1, 3] {
        wait_for("frames on disk", || frames_on_disk(&c, &id) >= frames);
        wait_for("a lease in flight", || {
            c.metric("dreamfarm_leases_in_flight") >= 1.0
        });
        c.kill();
        assert!(
            watch.try_wait().expect("watch").is_none(),
            "watch gave up when the coordinator died"
        );
        c.restart();
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = watch.try_wait().expect("watch") {
            break s;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the job did not finish: {}",
            c.status(&id)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let watched = std::fs::read_to_string(&watch_log).unwrap_or_default();
    assert!(status.success(), "watch failed: {watched}");
    assert!(watched.contains("reconnecting"), "{watched}");
    assert_eq!(state(&c, &id), "done");
    assert!(
        c.fetch_frames(&id) == reference[..8],
        "frames differ after two crashes"
    );
    let log = events(&c, &id);
    let restarts = log
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("restarted"))
        .count();
    assert_eq!(restarts, 2, "{log}");
    for kind in ["submitted", "started", "frame", "done"] {
        assert!(log.contains(kind), "no {kind} event: {log}");
    }
}

/// A worker speaking the real protocol that fails every lease it gets.
async fn failing_worker(url: String, name: &str) {
    let hello = Hello {
        protocol_version: dreamfarm_proto::PROTOCOL_VERSION,
        name: name.into(),
        concurrency: 1,
        device: "cuda:0".into(),
        ..Default::default()
    };
    let first = WorkerMessage {
        body: Some(Up::Hello(hello)),
    };
    let RawSession { up: tx, mut down } = RawSession::open(&url, first).await.expect("session");
    while let Ok(Some(msg)) = down.message().await {
        if let Some(Down::LeaseStart(l)) = msg.body {
            let failed = LeaseFailed {
                lease_id: l.lease_id,
                reason: "CUDA error: an illegal memory access was encountered".into(),
                exchange_failed: false,
            };
            let _ = tx
                .send(WorkerMessage {
                    body: Some(Up::Failed(failed)),
                })
                .await;
        }
    }
}

#[test]
fn a_restarted_coordinator_brings_every_job_back_in_its_state() {
    let reference = reference();
    let mut c = Coordinator::start();
    // A finished job.
    let done = {
        let _worker = c.worker("first");
        let id = submit(&c, "finished", 1, &[]);
        c.wait_done(&id, LIMIT);
        id
    };
    // A failed one: its only worker fails every lease, is blocked from the
    // job, and with no worker left the job fails.
    let failed = submit(&c, "failing", 2, &[]);
    {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let url = c.url.clone();
        let worker = runtime.spawn(async move { failing_worker(url, "broken-gpu").await });
        wait_for("the job to fail", || state(&c, &failed) == "failed");
        worker.abort();
    }
    let status = c.status(&failed);
    assert!(
        status.contains("failed on") || status.contains("blocked"),
        "{status}"
    );
    assert!(status.contains("illegal memory access"), "{status}");
    assert!(
        status.contains(&format!("then `dreamfarm retry {failed}`")),
        "{status}"
    );
    assert!(events(&c, &failed).contains("worker-blocked"));
    // Two running ones (no worker: they wait) and a paused one.
    let running: Vec<String> = (0..2)
        .map(|i| submit(&c, &format!("running{i}"), 2, &[]))
        .collect();
    let paused = submit(&c, "paused", 2, &[]);
    control(&c, "pause", &[&paused]);
    wait_for("running jobs", || {
        running.iter().all(|id| state(&c, id) == "running")
    });

    c.restart();
    assert_eq!(state(&c, &done), "done");
    assert_eq!(state(&c, &failed), "failed");
    assert_eq!(state(&c, &paused), "paused");
    for id in &running {
        wait_for("the running jobs to run again", || {
            state(&c, id) == "running"
        });
        assert!(events(&c, id).contains("restarted"));
    }
    assert!(c.fetch_frames(&done) == reference[..1]);

    // A real worker joins: the running jobs finish, the paused one waits
    // until resumed, and the failed one continues when retried.
    let _worker = c.worker("second");
    for id in &running {
        c.wait_done(id, LIMIT);
        assert!(c.fetch_frames(id) == reference[..2], "{id} differs");
    }
    assert_eq!(state(&c, &paused), "paused");
    assert_eq!(
        frames_on_disk(&c, &paused),
        0,
        "a paused job renders nothing"
    );
    control(&c, "resume", &[&paused]);
    control(&c, "retry", &[&failed]);
    for id in [&paused, &failed] {
        c.wait_done(id, LIMIT);
        assert!(c.fetch_frames(id) == reference[..2], "{id} differs");
    }
}

#[test]
fn a_full_data_volume_fails_the_job_with_its_frames_whole_and_retry_continues_it() {
    let reference = reference();
    // Room for the uploaded input (about 800 KB), the store and a few of
    // the job's frames (about 45 KB each).
    let (c, disk) = Coordinator::start_on_small_disk(1536 << 10);
    let _worker = c.worker("w");
    let total = REFERENCE_FRAMES;
    let id = submit(&c, "full", total, &[]);
    wait_for("the job to fail", || state(&c, &id) == "failed");
    let why = c.status(&id);
    assert!(
        why.contains("No space left on device")
            && why.contains("make room on the coordinator's data volume")
            && why.contains(&format!("`dreamfarm retry {id}`")),
        "{why}"
    );
    let written = frames_on_disk(&c, &id);
    assert!(written > 0 && written < total as usize, "{written} frames");
    assert!(
        frame_bytes(&c.frames_dir(&id)) == reference[..written],
        "a frame written before the volume filled is not whole"
    );
    // A job submitted to the full volume is refused with the same way out,
    // and leaves nothing there.
    let args = job("another", 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let why = refused(&c, "submit", &args);
    assert!(
        why.contains("data volume is full") && why.contains("make room on it"),
        "{why}"
    );
    let folders = std::fs::read_dir(c.data())
        .expect("data folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(folders, 1, "a refused job left its folder");
    disk.grow(64 << 20);
    control(&c, "retry", &[&id]);
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference[..total as usize],
        "frames differ after the volume filled"
    );
}

#[test]
fn job_controls_work_end_to_end() {
    let reference = reference();
    let c = Coordinator::start();
    let worker = c.worker("w");

    // Priority: submitted later, served first. The low job is five times
    // the high one's frames: its tiles fill the worker's gaps while the
    // high job's frame loop makes its next tiles, which on a loaded
    // machine took it past a job of 2.5 times.
    let low = submit(&c, "low", 10, &[]);
    wait_for("the low job to start", || {
        c.metric("dreamfarm_tiles_completed_total") >= 1.0
    });
    let high = submit(&c, "high", 2, &["--priority", "5"]);
    assert!(
        c.status(&high).contains("priority 5"),
        "{}",
        c.status(&high)
    );
    c.wait_done(&high, LIMIT);
    assert!(
        frames_on_disk(&c, &low) < 10,
        "the low-priority job finished first"
    );

    // Pause: no more frames, no leases; resume: it finishes identically.
    control(&c, "pause", &[&low]);
    assert_eq!(state(&c, &low), "paused");
    let paused_at = frames_on_disk(&c, &low);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(frames_on_disk(&c, &low), paused_at);
    assert_eq!(c.metric("dreamfarm_leases_in_flight"), 0.0);
    assert!(refused(&c, "pause", &[&low]).contains("paused"));
    control(&c, "priority", &[&low, "-2"]);
    assert!(c.status(&low).contains("priority -2"));
    control(&c, "resume", &[&low]);
    c.wait_done(&low, LIMIT);
    assert!(c.fetch_frames(&low) == reference[..10]);

    // Extend: a finished job continues as if submitted longer.
    control(&c, "extend", &[&high, "--frames", "4"]);
    c.wait_done(&high, LIMIT);
    assert!(
        c.fetch_frames(&high) == reference[..4],
        "extended frames differ"
    );
    assert!(refused(&c, "extend", &[&high, "--frames", "2"]).contains("larger"));

    // A finished frame damaged on the coordinator's disk: the job fails
    // saying which and how to redo it with `retry`; done as it says, the
    // job ends with the frames it would have had.
    let damaged = c.frames_dir(&high).join("000002.png");
    std::fs::write(&damaged, b"not a PNG any more").expect("damage a frame");
    control(&c, "extend", &[&high, "--frames", "5"]);
    wait_for("the job to fail", || state(&c, &high) == "failed");
    let why = c.status(&high);
    assert!(
        why.contains("cannot read frame") && why.contains("000002.png"),
        "{why}"
    );
    assert!(why.contains(&format!("`dreamfarm retry {high}`")), "{why}");
    for n in 2..5 {
        let _ = std::fs::remove_file(c.frames_dir(&high).join(format!("{n:06}.png")));
    }
    control(&c, "retry", &[&high]);
    c.wait_done(&high, LIMIT);
    assert!(
        c.fetch_frames(&high) == reference[..5],
        "the frames made again differ"
    );

    // Cancel: a paused job shows no ETA; cancelled, its frames stay and
    // `watch` says so.
    let dropped = submit(&c, "dropped", 5, &[]);
    wait_for("its first frame", || frames_on_disk(&c, &dropped) >= 1);
    control(&c, "pause", &[&dropped]);
    let paused = c.status(&dropped);
    assert!(!paused.contains("ETA"), "a paused job has an ETA: {paused}");
    control(&c, "cancel", &[&dropped]);
    let kept = frames_on_disk(&c, &dropped);
    let said = refused(&c, "watch", &[&dropped]);
    assert!(
        said.contains(&format!("was cancelled after {kept} of its 5 frames"))
            && said.contains(&format!("`dreamfarm fetch {dropped}`")),
        "{said}"
    );
    assert!(refused(&c, "resume", &[&dropped]).contains("only paused"));
    assert_eq!(frames_on_disk(&c, &dropped), kept);

    // Delete: refused while running unless forced; gone afterwards.
    let doomed = submit(&c, "doomed", 3, &[]);
    wait_for("the doomed job to run", || state(&c, &doomed) == "running");
    assert!(refused(&c, "delete", &[&doomed]).contains("--force"));
    control(&c, "delete", &[&doomed, "--force"]);
    assert!(refused(&c, "status", &[&doomed]).contains("no job"));
    assert!(!c.data().join(&doomed).exists(), "its files stay");
    control(&c, "delete", &[&low]);
    assert!(!c.data().join(&low).exists());

    // Bad controls: one clear error each.
    assert!(refused(&c, "resume", &[&high]).contains("only paused"));
    assert!(refused(&c, "retry", &[&high]).contains("only failed"));
    assert!(refused(&c, "pause", &["no-such-job"]).contains("no job"));

    // The event log tells the story.
    let log = events(&c, &high);
    for kind in [
        "submitted",
        "priority",
        "started",
        "frame",
        "done",
        "extended",
    ] {
        assert!(log.contains(kind), "no {kind} event: {log}");
    }
    drop(worker);
}

#[test]
fn a_damaged_or_newer_store_and_a_second_coordinator_are_refused_and_a_newer_job_is_set_aside() {
    let mut c = Coordinator::start();
    let _worker = c.worker("w");
    let id = submit(&c, "kept", 1, &[]);
    c.wait_done(&id, LIMIT);

    // A second coordinator on the same data folder.
    let (status, stderr) = c.start_fails();
    assert!(!status.success());
    assert!(stderr.contains("another coordinator is using"), "{stderr}");
    c.kill();

    let store = c.data().join("jobs.sqlite");
    // Everything in the main file (closing the last connection removes
    // the write-ahead log), so that a copy of it is the whole store.
    rusqlite::Connection::open(&store)
        .and_then(|db| db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
        .expect("checkpoint");
    let good = std::fs::read(&store).expect("store");
    // From a newer dreamfarm.
    {
        let db = rusqlite::Connection::open(&store).expect("open");
        db.execute_batch("PRAGMA user_version = 999").expect("bump");
    }
    let (status, stderr) = c.start_fails();
    assert!(!status.success());
    assert!(stderr.contains("schema version 999"), "{stderr}");
    assert!(stderr.contains("jobs.sqlite"), "{stderr}");
    // Truncated.
    std::fs::write(&store, &good[..good.len() / 2]).expect("truncate");
    let (status, stderr) = c.start_fails();
    assert!(!status.success());
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("jobs.sqlite"), "{stderr}");
    // The job's frames are untouched, and the good store brings it back.
    assert_eq!(frames_on_disk(&c, &id), 1);
    std::fs::write(&store, &good).expect("restore");
    c.restart();
    assert_eq!(state(&c, &id), "done");

    // A job row a newer dreamfarm wrote (a setting this build does not
    // know) and an event kind it does not know, as after a roll-back: the
    // coordinator starts with its other jobs, names that one with the fix
    // wherever it is asked for, and rewrites nothing.
    let other = submit(&c, "other", 1, &[]);
    c.wait_done(&other, LIMIT);
    c.kill();
    let edit = |sql: String| {
        rusqlite::Connection::open(&store)
            .and_then(|db| db.execute_batch(&sql))
            .expect("edit the store");
    };
    edit(format!(
        "UPDATE jobs SET spec = spec || 'shimmer = 0.5' WHERE id = '{id}';
         INSERT INTO events (job, at_ms, kind, detail) VALUES ('{other}', 1, 'region-moved', 'to w2');"
    ));
    c.restart();
    let said = c.status(&id);
    assert!(
        said.contains("failed") && said.contains("cannot read it") && said.contains("shimmer"),
        "{said}"
    );
    let listed = run_ok(c.client("status", &[]));
    assert!(listed.contains(&id) && listed.contains(&other), "{listed}");
    for control in ["retry", "delete", "watch"] {
        let why = refused(&c, control, &[&id]);
        assert!(why.contains("Fix: run the dreamfarm release"), "{why}");
    }
    let auth = format!("Bearer {TOKEN}");
    let page = get(&c.metrics, "/", &[("Authorization", &auth)]).text();
    assert!(
        page.contains("state-unreadable") && page.contains("cannot read it"),
        "{page}"
    );
    assert_eq!(state(&c, &other), "done");
    assert!(events(&c, &other).contains("region-moved: to w2"));
    assert_eq!(frames_on_disk(&c, &id), 1);
    // Its row as it was, the job is back.
    c.kill();
    edit(format!(
        "UPDATE jobs SET spec = replace(spec, 'shimmer = 0.5', '') WHERE id = '{id}'"
    ));
    c.restart();
    assert_eq!(state(&c, &id), "done");
}

/// SIGTERM (Kubernetes stopping the pod, a Ctrl-C) stops a coordinator at
/// once, although workers' sessions and watches are calls that stay open
/// (it waited on them for ever, until Kubernetes' SIGKILL); its running job
/// goes on at the next start with the same frames, and the watch rides
/// out the restart.
#[test]
fn a_coordinator_stops_at_once_on_sigterm_and_its_job_goes_on() {
    let mut c = Coordinator::start();
    let worker = c.worker("w");
    let frames = REFERENCE_FRAMES;
    let id = submit(&c, "stopped", frames, &[]);
    wait_for("its first frame", || frames_on_disk(&c, &id) >= 1);
    let log = c.dir.path().join("watch.log");
    let mut watch = watch_into(&c, &id, &log);
    // And a client that opens a fetch and never ends its requests.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_open, requests) = tokio::sync::mpsc::channel(1);
    let (url, job_id) = (c.url.clone(), id.clone());
    let fetch = runtime.spawn(async move {
        let token = dreamfarm_proto::auth::AttachToken::new(Some(TOKEN)).expect("token");
        let channel = tonic::transport::Endpoint::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = JobServiceClient::with_interceptor(channel, token);
        let first = FetchRequest {
            job_id,
            held: Vec::new(),
        };
        let requests = tokio_stream::iter([first])
            .chain(tokio_stream::wrappers::ReceiverStream::new(requests));
        client.fetch(requests).await.map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", c.log());
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    // A planned stop ends the worker's session without a warning on
    // either side (operators alert on warnings).
    let stopping = c.log();
    assert!(
        !stopping
            .lines()
            .any(|l| l.contains("WARN") && l.contains("session ended")),
        "{stopping}"
    );
    wait_for("the worker to hear of the restart", || {
        worker.log().contains("the coordinator is restarting")
    });
    assert!(
        !worker.log().contains("lost the coordinator"),
        "{}",
        worker.log()
    );
    assert!(
        frames_on_disk(&c, &id) < frames as usize,
        "the job ended before the SIGTERM"
    );
    let fetched = runtime.block_on(fetch).expect("the fetch task");
    assert!(
        fetched
            .as_ref()
            .is_err_and(|s| s.message().contains("shutting down")),
        "{fetched:?}"
    );
    c.restart();
    c.wait_done(&id, LIMIT);
    assert!(c.fetch_frames(&id) == reference());
    let watched = watch.wait().expect("watch ends");
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(watched.success(), "{said}");
    assert!(said.contains("shutting down"), "{said}");
}

/// A long render logs an event a frame: its whole log still comes through
/// `dreamfarm events` (it was one reply, refused past 4 MiB, about 110 000
/// frames), and its web page shows the latest events, not megabytes of
/// them.
#[test]
fn a_long_renders_event_log_is_listed_whole_and_its_page_stays_small() {
    let mut c = Coordinator::start();
    let _worker = c.worker("w");
    let id = submit(&c, "long", 1, &[]);
    c.wait_done(&id, LIMIT);
    let before = events(&c, &id).lines().count();
    c.kill();
    let added: i64 = 150_000;
    {
        let mut db = rusqlite::Connection::open(c.data().join("jobs.sqlite")).expect("open");
        let tx = db.transaction().expect("transaction");
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO events (job, at_ms, kind, detail) VALUES (?1, ?2, 'frame', ?3)",
                )
                .expect("prepare");
            for n in 0..added {
                let detail = format!("frame {n} in 2.1 s");
                insert
                    .execute(rusqlite::params![id, 1_764_633_600_000 + n, detail])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    c.restart();

    let log = events(&c, &id);
    let total = before + added as usize;
    assert_eq!(log.lines().count(), total);
    let last = format!("frame {} in 2.1 s", added - 1);
    assert!(
        log.ends_with(&format!("{last}\n")),
        "{}",
        &log[log.len() - 200..]
    );

    let auth = format!("Bearer {}", dreamfarm_tests::cluster::TOKEN);
    let page = dreamfarm_tests::http::get(
        &c.metrics,
        &format!("/jobs/{id}"),
        &[("Authorization", auth.as_str())],
    )
    .text();
    assert!(page.len() < 200_000, "the page is {} bytes", page.len());
    assert!(page.contains(&format!("The latest 500 of {total} events.")));
    assert!(page.contains(&format!("dreamfarm events {id}")));
    assert!(page.contains(&last));
}

/// A farm's long history: `dreamfarm status` lists every job (it was one
/// reply, refused past 4 MiB: these 100 001 are 5.1 MB), `status JOB` asks for
/// that job alone (it listed them all to pick one), and the jobs page
/// shows every unfinished job and the newest finished ones, not
/// megabytes of rows.
#[test]
fn a_long_history_of_jobs_is_listed_whole_and_its_page_stays_small() {
    let mut c = Coordinator::start();
    let _worker = c.worker("w");
    let id = submit(&c, "newest", 1, &[]);
    c.wait_done(&id, LIMIT);
    c.kill();
    let added: u32 = 100_000;
    {
        let db = rusqlite::Connection::open(c.data().join("jobs.sqlite")).expect("open");
        // Copies of the job, submitted before it, one a second.
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO jobs SELECT printf('astronaut-zoom-4k-take-%06d', i), 'old', spec, state, priority,
                 submitted_ms - 1000 * i, updated_ms, frames_done, reason
             FROM jobs, n WHERE id = ?2",
            rusqlite::params![added, id],
        )
        .expect("insert");
    }
    let t = Instant::now();
    c.restart();
    eprintln!("restarted in {:?}", t.elapsed());

    let started = Instant::now();
    let (out, listed, stderr) = run(c.client("status", &[]));
    eprintln!(
        "listed {} jobs in {:?}",
        listed.lines().count(),
        started.elapsed()
    );
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), added as usize + 1);
    assert!(lines[0].starts_with(&id), "newest first: {}", lines[0]);
    assert!(lines[lines.len() - 1].starts_with(&format!("astronaut-zoom-4k-take-{added:06}")));
    let one = c.status("astronaut-zoom-4k-take-000042");
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(
        one.starts_with("astronaut-zoom-4k-take-000042") && one.contains("done"),
        "{one}"
    );

    let auth = format!("Bearer {}", dreamfarm_tests::cluster::TOKEN);
    let get = |path: &str| {
        dreamfarm_tests::http::get(&c.metrics, path, &[("Authorization", auth.as_str())]).text()
    };
    let t = Instant::now();
    let page = get("/");
    eprintln!("page in {:?}", t.elapsed());
    assert!(page.len() < 200_000, "the page is {} bytes", page.len());
    assert!(
        page.contains(&format!("/jobs/{id}")),
        "the newest job is shown"
    );
    let hidden = added as usize + 1 - PAGE_FINISHED_JOBS;
    assert!(
        page.contains(&format!("{hidden} older finished jobs")),
        "{}",
        &page[page.len() - 2000..]
    );
    let live = get("/jobs.json");
    assert!(live.len() < 200_000, "jobs.json is {} bytes", live.len());
}

#[test]
fn the_memory_budget_queues_jobs_that_do_not_fit_and_refuses_impossible_ones() {
    // One 160x120 job is charged about 185 MiB (frames and video encoder):
    // one fits, two do not.
    let c = Coordinator::start_with(&["--max-memory", "200MiB"]);
    let first = submit(&c, "first", 2, &[]);
    let second = submit(&c, "second", 2, &[]);
    wait_for("the first to run", || state(&c, &first) == "running");
    assert_eq!(state(&c, &second), "queued");
    assert!(
        c.status(&second).contains("waiting for memory"),
        "{}",
        c.status(&second)
    );
    let (out, _, stderr) = run(c.client(
        "submit",
        &[
            "--input",
            "assets/astronaut.png",
            "--size",
            "1024x1024",
            "--frames",
            "1",
        ],
    ));
    assert!(!out.status.success());
    assert!(stderr.contains("more than its whole budget"), "{stderr}");
    let _worker = c.worker("w");
    for id in [&first, &second] {
        c.wait_done(id, LIMIT);
    }
    assert!(c.fetch_frames(&second) == reference()[..2]);
}

/// The chaos schedule's dice (splitmix64): a seed gives the same schedule.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    fn within(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }
}

#[test]
fn chaos_kills_and_network_faults_cost_no_frames() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut dice = Dice(seed);
    let frames = REFERENCE_FRAMES;
    let reference = reference();
    let mut c = Coordinator::start();
    // Workers reach the coordinator through a faulty link.
    let proxy = FaultProxy::start(c.addr());
    for d in [Direction::ToTarget, Direction::FromTarget] {
        proxy.set_latency(d, Duration::from_millis(dice.within(2..15)));
    }
    let mut started = 0;
    // Two workers in three serve their changes, as Kubernetes workers do:
    // the frames after a first go by regions among them, dreamed and
    // exchanged while workers are killed, links reset and the coordinator
    // restarted; the third takes tiles.
    let mut worker = |c: &Coordinator| {
        started += 1;
        let serving: &[&str] = match started % 3 {
            0 => &[],
            _ => &["--change-listen", "127.0.0.1:0"],
        };
        c.worker_via_with(&format!("w{started}"), &proxy.url(), serving)
    };
    let mut pool: Vec<Worker> = (0..3).map(|_| worker(&c)).collect();
    let id = submit(&c, "chaos", frames, &[]);
    // The coordinator dies at three moments spread over the job.
    let mut kill_at: Vec<usize> = (0..3)
        .map(|i| dice.within(1 + 6 * i..6 + 6 * i) as usize)
        .collect();
    // Between the kills: worker kills, resets mid-stream and latency
    // changes, in an order the seed shuffles.
    let mut bag: Vec<u8> = [[0u8; 3].as_slice(), &[1; 5], &[2; 4]].concat();
    for i in (1..bag.len()).rev() {
        bag.swap(i, dice.within(0..i as u64 + 1) as usize);
    }
    let mut log = Vec::new();
    let start = Instant::now();
    let mut next_fault = start + Duration::from_millis(dice.within(1500..4000));
    let mut fault_frame = 0;
    loop {
        // Looked at often, so that each coordinator kill comes at its
        // frame however fast the machine renders them.
        std::thread::sleep(Duration::from_millis(100));
        let on_disk = frames_on_disk(&c, &id);
        if on_disk == frames as usize && state(&c, &id) == "done" {
            break;
        }
        assert!(
            start.elapsed() < 2 * LIMIT,
            "seed {seed}: the job did not finish: {}; chaos so far: {log:?}",
            c.status(&id)
        );
        if kill_at.first().is_some_and(|&f| on_disk >= f) {
            kill_at.remove(0);
            c.kill();
            std::thread::sleep(Duration::from_millis(dice.within(0..1500)));
            c.restart();
            log.push(format!("coordinator killed at frame {on_disk}"));
            continue;
        }
        // A fault with each new frame, or after a few seconds without one:
        // as many faults on a fast machine as on a slow one.
        if on_disk == fault_frame && Instant::now() < next_fault {
            continue;
        }
        fault_frame = on_disk;
        next_fault = Instant::now() + Duration::from_millis(dice.within(1500..4000));
        match bag.pop() {
            Some(0) => {
                let victim = dice.within(0..pool.len() as u64) as usize;
                drop(pool.swap_remove(victim));
                pool.push(worker(&c));
                log.push(format!("a worker killed at frame {on_disk}"));
            }
            Some(1) => {
                let d = [Direction::ToTarget, Direction::FromTarget][dice.within(0..2) as usize];
                let bytes = dice.within(1_000..400_000);
                proxy.reset_after(d, bytes);
                log.push(format!(
                    "a reset after {bytes} bytes {d:?} at frame {on_disk}"
                ));
            }
            Some(_) => {
                let ms = dice.within(0..30);
                for d in [Direction::ToTarget, Direction::FromTarget] {
                    proxy.set_latency(d, Duration::from_millis(ms));
                }
                log.push(format!("latency {ms} ms at frame {on_disk}"));
            }
            None => {}
        }
    }
    assert!(
        kill_at.is_empty(),
        "seed {seed}: not every kill happened: {log:?}"
    );
    assert!(
        c.fetch_frames(&id) == reference[..frames as usize],
        "seed {seed}: frames differ after {log:?}"
    );
    assert!(
        c.metric("dreamfarm_regions_completed_total") > 0.0,
        "seed {seed}: no frame went by regions since the last restart: {log:?}"
    );
    let events = events(&c, &id);
    let count = |kind: &str| {
        events
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(kind))
            .count()
    };
    assert!(count("restarted") >= 3, "{events}");
    // A kill between a frame's file and its event loses only the event.
    let logged = count("frame");
    assert!(
        logged <= frames as usize && logged + count("restarted") >= frames as usize,
        "{events}"
    );
    assert_eq!(count("done"), 1, "{events}");
    // A reset cuts a worker's session: it leaves (and comes back).
    if proxy.resets() > 0 {
        assert!(count("worker-left") >= 1, "{events}");
    }
    eprintln!("seed {seed}: {log:?}; {} resets fired", proxy.resets());
}
