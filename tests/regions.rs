//! Frames computed region by region on workers that exchange their tiles'
//! changes over real gRPC on loopback are the frame loop's bits
//! (docs/frame-loop-on-workers.md, step 4): one frame against
//! `dream_frame`, a job on a real coordinator against the same job by
//! tiles, and jobs on real `dreamfarm worker`s with real models (one of
//! them killed mid-frame) against the single-machine render.

use std::sync::Arc;
use std::time::Duration;

use dreamfarm_common::objective::FrameObjective;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::region_plan::RegionPlan;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::resample::SpareImages;
use dreamfarm_common::work::TileWork;
use dreamfarm_coordinator::TileExecutor;
use dreamfarm_coordinator::frame_loop::{FramePlan, dream_frame};
use dreamfarm_coordinator::tile_executor::{InOrder, TileError, TileKey};
use dreamfarm_proto::auth::{AttachToken, CheckToken};
use dreamfarm_proto::change_channels::Channels;
use dreamfarm_proto::change_exchange::{ChangeServer, Changes, TrafficCounts};
use dreamfarm_proto::pb::change_service_server::ChangeServiceServer;
use dreamfarm_proto::region_worker::{Holders, RegionWork, run_region};
use dreamfarm_tests::cluster::{self, Coordinator, Worker};
use dreamfarm_tests::fault_proxy::FaultProxy;
use dreamfarm_tests::http::get;
use dreamfarm_tests::small_job::{JOB, LIMIT, job, reference, rendered};
use dreamfarm_tests::synthetic_worker::SyntheticPool;
use dreamfarm_tests::{dreamfarm, frames, run_ok, run_refused, wait_for};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

/// A stand-in dream that reads every pixel of a tile's input: its change
/// is a fifth of the distance to grey plus the tile's mean brightness
/// less a half, so a wrong pixel anywhere in a tile's input shows.
fn dream(w: &TileWork) -> Planar {
    let (o, p) = (w.output, &w.pixels);
    let tile_rows = w.tile_height();
    let (width, height) = w.change_size();
    let mut change = Planar::zeros(width, height);
    for k in 0..w.tiles as usize {
        let mut sum = 0.0f32;
        for c in 0..3 {
            let first = (c * p.height + k * tile_rows) * p.width;
            sum += p.data[first..first + tile_rows * p.width]
                .iter()
                .sum::<f32>();
        }
        let mean = sum / (3 * tile_rows * p.width) as f32;
        for c in 0..3 {
            for y in 0..o.height {
                let row = (c * p.height + k * tile_rows + y + o.y as usize) * p.width;
                let out = (c * height + k * o.height + y) * width;
                for x in 0..o.width {
                    let v = p.data[row + x + o.x as usize];
                    change.data[out + x] = 0.2 * (0.5 - v) + 0.04 * (mean - 0.5);
                }
            }
        }
    }
    change
}

/// The frame loop's executor for [`dream`].
#[derive(Default)]
struct Dreaming(InOrder);

impl TileExecutor for Dreaming {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        self.0.submit(work);
        Ok(())
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        self.0.next(|w| Ok(dream(&w)))
    }
}

/// The cluster's token, which the change services ask for.
const TOKEN: &str = "regions-test-token";

/// A worker's change service on a loopback port of its own, behind the
/// cluster's token, and its address.
async fn change_worker() -> (Arc<Changes>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("its address");
    let changes = Arc::new(Changes::default());
    let service = InterceptedService::new(
        ChangeServiceServer::new(ChangeServer(changes.clone())),
        CheckToken::new(Some(TOKEN)),
    );
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (changes, address.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_computed_by_regions_on_workers_that_exchange_changes_is_the_frame_loops() {
    // Octaves of 1.3 on a 150x101 frame, tiles of 32 in batches of two,
    // passes of two steps and one, held by three workers round the
    // regions.
    let settings = DreamSettings {
        octaves: 3,
        octave_scale: 1.3,
        iterations: 3.0.into(),
        iterations_per_lease: 2,
        tile_size: 32,
        tile_batch: 2,
        tile_margin: 10,
        blend_band: 5,
        ..Default::default()
    };
    let (w, h, min_side) = (150, 101, 32);
    let mut input = Planar::zeros(w, h);
    for (i, v) in input.data.iter_mut().enumerate() {
        *v = ((i * 7919) % 1000) as f32 / 999.0;
    }
    let objective = Arc::new(FrameObjective::at(&settings, 0, 1, 0, None).expect("objective"));
    let plan = FramePlan {
        frame: 0,
        objective: objective.clone(),
        jitter: 3,
    };
    let mut executor = Dreaming::default();
    let whole = dream_frame(
        &settings,
        min_side,
        &plan,
        &input,
        &mut executor,
        &mut SpareImages::default(),
    )
    .expect("dreamed");

    let sizes = settings.octave_sizes(w, h, min_side);
    let regions = Arc::new(RegionPlan::new(
        &settings,
        plan.jitter,
        objective.iterations,
        &sizes,
    ));
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(change_worker().await);
    }
    let (tell, addresses) = tokio::sync::watch::channel(Vec::new());
    let token = AttachToken::new(Some(TOKEN)).expect("a token");
    let fetched = Arc::default();
    let holders = Holders::new(addresses, Channels::default(), token, Arc::clone(&fetched));
    let mut running = tokio::task::JoinSet::new();
    for (r, region) in regions.regions.iter().enumerate() {
        let part = dreamfarm_common::tiling::extract(
            &input,
            dreamfarm_common::tiling::Rect {
                x: region.input.columns.start as i64,
                y: region.input.rows.start as i64,
                width: region.input.columns.len(),
                height: region.input.rows.len(),
            },
        );
        let (regions, holders, objective) = (regions.clone(), holders.clone(), objective.clone());
        let changes = workers[r % 3].0.clone();
        running.spawn(async move {
            let work = RegionWork {
                plan: &regions,
                region: r,
                job: "j".into(),
                frame: 0,
                objective,
                input: part,
            };
            let cell = run_region(work, &changes, &holders, |tile| async move {
                // Other regions get ahead meanwhile.
                tokio::task::yield_now().await;
                Ok(dream(&tile))
            })
            .await;
            (r, cell)
        });
    }
    // The holders are told once the regions have started, as a
    // coordinator tells them as it leases them.
    tokio::task::yield_now().await;
    let _ = tell.send(
        (0..regions.regions.len())
            .map(|r| workers[r % 3].1.clone())
            .collect(),
    );
    let mut frame = Planar::zeros(w, h);
    while let Some(done) = running.join_next().await {
        let (r, cell) = done.expect("a region's task");
        let cell = cell.expect("the region computed");
        let area = &regions.regions[r].cell;
        let cw = area.columns.len();
        for c in 0..3 {
            for (k, y) in area.rows.clone().enumerate() {
                let from = &cell.data[(c * area.rows.len() + k) * cw..][..cw];
                frame.data[(c * h + y) * w + area.columns.start..][..cw].copy_from_slice(from);
            }
        }
    }
    assert!(
        frame == whole,
        "the regions' frame differs from the frame loop's"
    );
    assert!(whole != input, "the dream changed the frame");
    // What the services served is what the regions fetched, and counted.
    let served: Vec<_> = workers.iter().map(|(c, _)| c.traffic().read()).collect();
    let fetched = fetched.read();
    let sum = |of: fn(&TrafficCounts) -> u64| served.iter().map(of).sum::<u64>();
    assert!(fetched.fetched_parts > 0, "no part was fetched");
    assert_eq!(
        (sum(|t| t.served_parts), sum(|t| t.served_bytes)),
        (fetched.fetched_parts, fetched.fetched_bytes),
        "parts and bytes served against those fetched"
    );
    assert!(
        served.iter().all(|t| t.waited_seconds > 0.0),
        "each worker's regions waited for their neighbours: {served:?}"
    );
}

#[test]
fn a_job_dreamed_by_regions_on_workers_gives_the_frames_tiles_give() {
    // Synthetic workers dream every tile as no change. Serving changes,
    // they are given the frames after the first as regions (12 of them,
    // the top octave's tiles of 96); not serving any, as tiles through
    // the coordinator's frame loop: the frames must be the same bits.
    // Without colour keeping, with all of it (coherence to frame 0,
    // contrast, sharpening: learned by the coordinator from the whole
    // moved frame, applied by each region's worker to its part), which
    // with no dream is all that changes a frame besides the camera, and
    // with sharpening alone (learned without moving the frame).
    let plain = [
        "--input",
        "assets/astronaut.png",
        "--size",
        "320x240",
        "--frames",
        "4",
        "--tile-size",
        "96",
        "--rotate",
        "2",
        "--name",
        "regions",
    ];
    let colour = ["--color-coherence", "lab", "--color-strength", "0.8"];
    let colour = [&colour[..], &["--contrast", "1.3", "--sharpen", "0.5"]].concat();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let job = |regions: bool, flags: &[&str]| {
        let coordinator = Coordinator::start();
        let pool =
            SyntheticPool::start_with(&runtime, &coordinator.url, 3, Duration::ZERO, regions);
        let id = coordinator.submit(flags);
        coordinator.wait_done(&id, Duration::from_secs(120));
        pool.assert_working();
        let pixels: Vec<Vec<u8>> = frames(&coordinator.frames_dir(&id))
            .iter()
            .map(|p| image::open(p).expect("a frame").to_rgb8().into_raw())
            .collect();
        (pixels, pool.regions_done())
    };
    let mut kept = Vec::new();
    for extra in [&[][..], &colour, &["--sharpen", "0.5"]] {
        let flags = [&plain[..], extra].concat();
        let (by_regions, regions) = job(true, &flags);
        let (by_tiles, none) = job(false, &flags);
        assert!(
            regions >= 3 * 12 && none == 0,
            "{extra:?}: frames 1 to 3 went by regions: {regions} regions came back ({none} without)"
        );
        assert_eq!((by_regions.len(), by_tiles.len()), (4, 4));
        for (n, (a, b)) in by_regions.iter().zip(&by_tiles).enumerate() {
            assert!(
                a == b,
                "{extra:?}: frame {n} by regions differs from the one by tiles"
            );
        }
        assert!(by_tiles[3] != by_tiles[2], "the camera moved");
        kept.push(by_tiles);
    }
    assert!(kept[0][3] != kept[1][3], "the colours were kept");
    assert!(kept[0][3] != kept[2][3], "the frames were sharpened");
}

#[test]
fn real_workers_dreaming_regions_give_the_single_machine_frames() {
    // Two `dreamfarm worker`s with real models serve their changes on
    // loopback: frames 1 and 2 of the small job go by regions (its top
    // octave has six tiles, three columns of two), frame 0 by tiles.
    let c = Coordinator::start();
    let started = std::time::Instant::now();
    let pool: Vec<_> = (0..2)
        .map(|i| c.worker_serving_changes(&format!("w{i}"), &["--health-listen", "127.0.0.1:0"]))
        .collect();
    let id = c.submit(&job("regions"));
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames dreamed by regions differ from the single-machine render"
    );
    let regions = c.metric("dreamfarm_regions_completed_total");
    assert!(regions >= 2.0 * 6.0, "{regions} regions answered");

    // The workers' /metrics count the regions the coordinator took, and
    // the traffic between them that it never sees: every part a worker
    // served, a neighbour fetched.
    let sum = |name: &str| pool.iter().map(|w| w.metric(name)).sum::<f64>();
    assert_eq!(
        sum("dreamfarm_worker_regions_total{outcome=\"done\"}"),
        regions,
        "regions the workers computed against those the coordinator took"
    );
    let parts = sum("dreamfarm_worker_change_parts_total{way=\"served\"}");
    let bytes = sum("dreamfarm_worker_change_bytes_total{way=\"served\"}");
    assert!(
        parts > 0.0 && bytes >= parts * 12.0,
        "{parts} parts of {bytes} bytes served"
    );
    assert_eq!(
        (
            sum("dreamfarm_worker_change_parts_total{way=\"fetched\"}"),
            sum("dreamfarm_worker_change_bytes_total{way=\"fetched\"}")
        ),
        (parts, bytes),
        "parts and bytes fetched against those served"
    );
    // Each worker was given regions beside its own, so more of the
    // changes stay in a worker's memory than cross between them (1.23
    // times. Given out in queue order, the split hung on the order the
    // workers asked in: in one run of two, every other region, 0.56).
    let local = sum("dreamfarm_worker_change_bytes_total{way=\"local\"}");
    assert!(
        local > bytes,
        "{local} bytes of changes taken locally against {bytes} fetched"
    );
    // Each worker is carried each frame's input once for all its
    // regions, so never more than the frame: 213,570 bytes came with the
    // leases of the two frames by regions and 142,116 were taken from what
    // a session had carried; each region's part sent whole was 355,686,
    // over the 294,912 of two workers sent both 192x128 frames whole.
    let input = |way: &str| {
        sum(&format!(
            "dreamfarm_worker_region_input_bytes_total{{way=\"{way}\"}}"
        ))
    };
    let (received, held) = (input("received"), input("held"));
    let most = (pool.len() * 2 * 192 * 128 * 3) as f64;
    assert!(
        received > 0.0 && received <= most && held > 0.0,
        "{received} bytes of the regions' parts received with their leases (at most {most}), {held} held"
    );
    for w in &pool {
        let threads = w.metric("dreamfarm_worker_compute_threads");
        let busy = w.metric("dreamfarm_worker_busy_seconds_total");
        let most = started.elapsed().as_secs_f64() * threads;
        assert!(
            w.metric("dreamfarm_worker_tiles_total") > 0.0 && busy > 0.0 && busy <= most,
            "busy {busy} s on {threads} threads in {most} thread-seconds"
        );
        assert!(
            w.metric("dreamfarm_worker_change_wait_seconds_total") > 0.0,
            "no wait for a neighbour's change was counted"
        );
    }
    // The last frame is whole: every worker drops its changes (they were
    // kept an hour after a job's last frame before the coordinator said).
    wait_for(
        "the workers to drop the last frame's changes",
        Duration::from_secs(30),
        || sum("dreamfarm_worker_changes_held_bytes") == 0.0,
    );
}

#[test]
fn a_worker_holding_neighbouring_regions_takes_their_changes_without_the_network() {
    // One `dreamfarm worker` serving changes holds every region of frames
    // 1 and 2: each part a region cross-fades is its own worker's, read
    // from memory, and none crosses the network.
    let c = Coordinator::start();
    let alone = c.worker_serving_changes("alone", &["--health-listen", "127.0.0.1:0"]);
    let id = c.submit(&job("alone"));
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames of regions whose changes were taken locally differ from the single-machine render"
    );
    let regions = c.metric("dreamfarm_regions_completed_total");
    assert!(regions >= 2.0 * 6.0, "{regions} regions answered");
    let count = |way: &str, what: &str| {
        alone.metric(&format!(
            "dreamfarm_worker_change_{what}_total{{way=\"{way}\"}}"
        ))
    };
    let (parts, bytes) = (count("local", "parts"), count("local", "bytes"));
    assert!(
        parts > 0.0 && bytes >= parts * 12.0,
        "{parts} parts of {bytes} bytes taken locally"
    );
    assert_eq!(
        (count("fetched", "parts"), count("served", "parts")),
        (0.0, 0.0),
        "parts over the network with one worker"
    );
}

#[test]
fn real_workers_keep_the_colours_of_regions_as_the_single_machine_render_does() {
    // The small job with colour coherence, contrast and sharpening, which
    // read the whole moved frame: the coordinator learns them from it and
    // each region's worker applies them to its part (with the margin the
    // unsharp mask reads), so frames 1 and 2 still go by regions.
    let colour = [
        "--color-coherence",
        "hsv",
        "--contrast",
        "1.2",
        "--sharpen",
        "0.3",
    ];
    let coloured = [JOB, &colour[..]].concat();
    let c = Coordinator::start();
    let _pool: Vec<_> = (0..2)
        .map(|i| c.worker_serving_changes(&format!("w{i}"), &[]))
        .collect();
    let id = c.submit(&[&coloured[..], &["--name", "colours"]].concat());
    c.wait_done(&id, LIMIT);
    let regions = c.metric("dreamfarm_regions_completed_total");
    assert!(regions >= 2.0 * 6.0, "{regions} regions answered");
    assert!(
        c.fetch_frames(&id) == rendered(&coloured),
        "frames whose colours regions kept differ from the single-machine render"
    );
}

#[test]
fn a_worker_killed_mid_frame_leaves_its_regions_to_the_others_and_the_frames_unchanged() {
    // The first worker to finish a region is killed (-9) once its cell is
    // in: with regions of the frame in hand, or finished ones whose
    // changes its neighbours may still fetch. Both are leased again, and
    // the frames stay the same bits.
    let mut longer = JOB.to_vec();
    longer.extend(["--frames", "5"]);
    let reference = rendered(&longer);
    let c = Coordinator::start();
    let pool: Vec<_> = (0..3)
        .map(|i| c.worker_serving_changes(&format!("w{i}"), &[]))
        .collect();
    longer.extend(["--name", "killed"]);
    let id = c.submit(&longer);
    // Killed once its cell is in, so that its region is finished.
    let done = |w: &Worker| w.log().matches("region done").count() as f64;
    let mut first = None;
    wait_for("a region done", LIMIT, || {
        first = pool.iter().position(|w| done(w) > 0.0);
        let all: f64 = pool.iter().map(done).sum();
        first.is_some() && c.metric("dreamfarm_regions_completed_total") >= all
    });
    let first = first.expect("a worker finished a region");
    pool[first].signal(libc::SIGKILL);
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference,
        "frames differ from the single-machine render after a worker was killed"
    );
    // Its regions in hand went back to the queue; a finished one whose
    // frame was still being dreamed was leased again (the scheduler's
    // tests check that case on its own: here it depends on timing).
    let log = c.log();
    assert!(
        log.contains("requeued: its worker left") || log.contains("leasing it again"),
        "nothing of the killed worker's was leased again: {log}"
    );
}

/// Three workers serving changes, the first, `w0`, behind a fault proxy
/// (its neighbours dial the proxy; the coordinator hears from it
/// directly), `partitioned` from the start or not: the pool, the proxy
/// and the address `w0` announces.
fn pool_with_one_behind_a_proxy(
    c: &Coordinator,
    partitioned: bool,
) -> (Vec<Worker>, FaultProxy, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into());
    if partitioned {
        proxy.partition();
    }
    let listen = format!("127.0.0.1:{port}");
    let behind = proxy.addr().to_string();
    let pool = vec![
        c.worker_with(
            "w0",
            &["--change-listen", &listen, "--change-address", &behind],
        ),
        c.worker_serving_changes("w1", &[]),
        c.worker_serving_changes("w2", &[]),
    ];
    (pool, proxy, behind)
}

/// Job `id`'s events as `dreamfarm events` prints them, and its lines of
/// `kind`.
fn events_of_kind(c: &Coordinator, id: &str, kind: &str) -> (String, Vec<String>) {
    let events = run_ok(c.client("events", &[id]));
    let said = events
        .lines()
        .filter(|l| l.contains(kind))
        .map(str::to_string)
        .collect();
    (events, said)
}

#[test]
fn workers_that_cannot_reach_a_neighbour_dream_the_frames_by_tiles_instead() {
    // The workers reach each other when they join; then the link to one
    // of them carries nothing any more, as a network policy applied later
    // that drops the port between worker pods does: fetches from it
    // connect and then hear nothing. The frame whose regions need it is
    // given up by regions once a fetch's pings go unanswered, and it and
    // the next go by tiles through the coordinator: the same frames,
    // nobody blocked, the cause and its fix said once.
    let c = Coordinator::start();
    let (_pool, proxy, behind) = pool_with_one_behind_a_proxy(&c, false);
    // The third worker to join was checked both ways, and every check
    // reached its service.
    wait_for("the workers to check each other", LIMIT, || {
        let log = c.log();
        let third = log.match_indices("worker joined").nth(2).map(|(at, _)| at);
        third.is_some_and(|at| log[at..].contains("reach each other's change services"))
    });
    proxy.partition();
    let id = c.submit(&job("cut-off"));
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ from the single-machine render after regions were given up"
    );
    assert!(proxy.connections() > 0, "nobody tried the cut-off worker");
    assert_eq!(c.metric("dreamfarm_region_exchange_failures_total"), 1.0);
    let (events, said) = events_of_kind(&c, &id, "exchange-failed");
    assert!(
        said.len() == 1 && said[0].contains(&behind) && said[0].contains("port 7072"),
        "{events}"
    );
    assert!(!events.contains("worker-blocked"), "{events}");
    assert!(!events.contains("exchange-unreachable"), "{events}");
    // The pool's page says that frames go by tiles for now, and where each
    // worker said its neighbours would find its changes.
    let auth = format!("Bearer {}", cluster::TOKEN);
    let page = get(&c.metrics, "/workers", &[("Authorization", &auth)]).text();
    assert!(
        page.contains("class=\"warning regions-paused\"")
            && page.contains("Frames go by tiles through the coordinator for ")
            && page.contains(&format!("<code>{behind}</code>")),
        "{page}"
    );
}

#[test]
fn workers_that_cannot_reach_a_neighbour_are_found_when_they_join() {
    // The link to one worker's change service carries nothing from the
    // start. Its neighbours find that when they join, before any frame
    // goes by regions: every frame goes by tiles, none waits on a fetch
    // or is given up, and the pool's page and each job's events say which
    // worker cannot reach which address, with the fix.
    let c = Coordinator::start();
    let (mut pool, proxy, behind) = pool_with_one_behind_a_proxy(&c, true);
    let unreachable = |log: &str| {
        log.lines()
            .filter(|l| l.contains("cannot reach worker w0/"))
            .count()
    };
    wait_for("w1 and w2 to find w0 unreachable", LIMIT, || {
        unreachable(&c.log()) == 2
    });
    let auth = format!("Bearer {}", cluster::TOKEN);
    let page = get(&c.metrics, "/workers", &[("Authorization", &auth)]).text();
    assert!(
        page.matches("class=\"warning unreachable\"").count() == 2
            && page.contains("worker w1/")
            && page.contains("cannot reach worker w0/")
            && page.contains(&format!("change service at {behind}"))
            && page.contains("port 7072"),
        "{page}"
    );
    assert_eq!(c.metric("dreamfarm_exchange_unreachable"), 2.0);
    let id = c.submit(&job("found-at-join"));
    c.wait_done(&id, LIMIT);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames differ from the single-machine render"
    );
    assert_eq!(c.metric("dreamfarm_regions_completed_total"), 0.0);
    assert_eq!(c.metric("dreamfarm_region_exchange_failures_total"), 0.0);
    let (events, said) = events_of_kind(&c, &id, "exchange-unreachable");
    assert!(
        said.len() == 2
            && said
                .iter()
                .all(|l| l.contains(&behind) && l.contains("port 7072")),
        "{events}"
    );
    assert!(!events.contains("exchange-failed"), "{events}");
    // Once the worker nobody reaches leaves, the others go by regions.
    pool.remove(0).signal(libc::SIGKILL);
    drop(proxy);
    wait_for("the coordinator to see w0 go", LIMIT, || {
        c.metric("dreamfarm_exchange_unreachable") == 0.0
    });
    let id = c.submit(&job("after-it-left"));
    c.wait_done(&id, LIMIT);
    assert!(c.metric("dreamfarm_regions_completed_total") > 0.0);
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames by regions differ"
    );
}

#[test]
fn a_change_service_neighbours_cannot_reach_is_refused_at_start() {
    let refusal = |extra: &[&str]| {
        let mut args = vec!["worker", "--device", "cpu", "--coordinator"];
        args.extend_from_slice(extra);
        run_refused(dreamfarm(&args))
    };
    let said = refusal(&["http://127.0.0.1:1", "--change-listen", "0.0.0.0:0"]);
    assert!(
        said.contains("names no address other workers can dial")
            && said.contains("--change-address"),
        "{said}"
    );
    let said = refusal(&["http://127.0.0.1:1", "--change-address", "10.0.0.7"]);
    assert!(said.contains("--change-listen"), "{said}");
}
