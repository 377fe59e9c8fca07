//! Hostile workers speaking the wire protocol directly to a real
//! coordinator process: a session without Hello, a wrong protocol version,
//! results for leases never held, oversized, truncated and over-long
//! payloads, messages said to be compressed. Each gets a clear gRPC
//! status; the coordinator keeps running and the job, finished by an
//! honest worker, has the right frames.

use std::time::Duration;

use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::{
    Chunk, Heartbeat, Hello, LeaseStart, PixelFormat, ResultStart, WorkerMessage,
};
use dreamfarm_proto::{CHUNK_BYTES, PROTOCOL_VERSION, up};
use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::{dreamfarm, frame_bytes, run_ok};
use tonic::Code;

use dreamfarm_tests::cluster::RawSession as Raw;

fn hello(version: u32) -> WorkerMessage {
    up(Up::Hello(Hello {
        protocol_version: version,
        name: "hostile".into(),
        concurrency: 1,
        device: "none".into(),
        ..Default::default()
    }))
}

async fn open(url: &str, first: WorkerMessage) -> Result<Raw, tonic::Status> {
    Raw::open(url, first).await
}

/// The error status the session ends with.
async fn ends_with(raw: &mut Raw) -> tonic::Status {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), raw.down.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("session ended without a status"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("no status within 20 s"),
        }
    }
}

/// Waits for a whole lease: its head and how many bytes it announced.
async fn next_lease(raw: &mut Raw) -> LeaseStart {
    let mut start = None;
    let mut got = 0u64;
    loop {
        let m = raw.down.message().await.expect("stream").expect("message");
        match m.body {
            Some(Down::LeaseStart(s)) => start = Some(s),
            Some(Down::LeaseChunk(c)) => got += c.data.len() as u64,
            _ => continue,
        }
        if let Some(s) = &start
            && got == s.pixels_bytes
        {
            return s.clone();
        }
    }
}

fn result_bytes(lease: &LeaseStart) -> u64 {
    let o = lease.output.expect("output");
    3 * 4 * u64::from(o.width) * u64::from(o.height)
}

async fn start_result(raw: &Raw, lease: &LeaseStart, bytes: u64) {
    let head = ResultStart {
        lease_id: lease.lease_id,
        attempt: lease.attempt,
        format: PixelFormat::F32 as i32,
        pixels_bytes: bytes,
    };
    raw.up.send(up(Up::ResultStart(head))).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_workers_get_clear_statuses_and_corrupt_nothing() {
    let mut c = Coordinator::start();
    let url = c.url.clone();

    // No Hello first.
    let mut raw = open(&url, up(Up::Heartbeat(Heartbeat {}))).await;
    let status = match &mut raw {
        Ok(r) => ends_with(r).await,
        Err(s) => s.clone(),
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Hello"), "{status:?}");

    // Another protocol version.
    let status = match open(&url, hello(PROTOCOL_VERSION + 98)).await {
        Ok(mut r) => ends_with(&mut r).await,
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("protocol"), "{status:?}");

    // A result for a lease never granted.
    let mut raw = open(&url, hello(PROTOCOL_VERSION)).await.expect("session");
    let fake = LeaseStart {
        lease_id: 424_242,
        output: Some(Default::default()),
        ..Default::default()
    };
    start_result(&raw, &fake, 12).await;
    let status = ends_with(&mut raw).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("not held"), "{status:?}");

    // Now real leases of a real job.
    let mut args = vec![
        "--input",
        "assets/astronaut.png",
        "--size",
        "192x128",
        "--frames",
        "2",
    ];
    args.extend([
        "--octaves",
        "2",
        "--iterations",
        "2",
        "--tile-size",
        "64",
        "--tile-margin",
        "16",
    ]);
    args.extend(["--blend-band", "8", "--jitter", "4", "--name", "wire"]);
    let job = c.submit(&args);

    // An oversized result.
    let mut raw = open(&url, hello(PROTOCOL_VERSION)).await.expect("session");
    let lease = next_lease(&mut raw).await;
    start_result(&raw, &lease, result_bytes(&lease) * 1000).await;
    let status = ends_with(&mut raw).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("announced"), "{status:?}");

    // An over-long chunk.
    let mut raw = open(&url, hello(PROTOCOL_VERSION)).await.expect("session");
    let lease = next_lease(&mut raw).await;
    start_result(&raw, &lease, result_bytes(&lease)).await;
    let chunk = Chunk {
        lease_id: lease.lease_id,
        data: vec![0; CHUNK_BYTES + 1].into(),
    };
    raw.up.send(up(Up::ResultChunk(chunk))).await.expect("send");
    let status = ends_with(&mut raw).await;
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
        ),
        "{status:?}"
    );

    // A truncated result: half the bytes, then the worker vanishes.
    let mut raw = open(&url, hello(PROTOCOL_VERSION)).await.expect("session");
    let lease = next_lease(&mut raw).await;
    let half = result_bytes(&lease) / 2;
    start_result(&raw, &lease, result_bytes(&lease)).await;
    let chunk = Chunk {
        lease_id: lease.lease_id,
        data: vec![0; half as usize].into(),
    };
    raw.up.send(up(Up::ResultChunk(chunk))).await.expect("send");
    drop(raw);

    // NaN pixels.
    let mut raw = open(&url, hello(PROTOCOL_VERSION)).await.expect("session");
    let lease = next_lease(&mut raw).await;
    start_result(&raw, &lease, result_bytes(&lease)).await;
    let chunk = Chunk {
        lease_id: lease.lease_id,
        data: f32::NAN
            .to_le_bytes()
            .repeat(result_bytes(&lease) as usize / 4)
            .into(),
    };
    raw.up.send(up(Up::ResultChunk(chunk))).await.expect("send");
    let status = ends_with(&mut raw).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The coordinator is still up; an honest worker finishes the job and
    // its frames equal a single-machine render.
    assert!(c.alive());
    // Each of the four sessions' leases goes back to the queue as its
    // session is torn down, which may finish just after the status.
    dreamfarm_tests::wait_for("the four leases' retries", Duration::from_secs(10), || {
        c.metric("dreamfarm_lease_retries_total") >= 4.0
    });
    assert!(c.metric("dreamfarm_rejected_total") >= 3.0);
    let _honest = c.worker("honest");
    let done = tokio::task::spawn_blocking(move || {
        c.wait_done(&job, Duration::from_secs(240));
        let dir = tempfile::tempdir().expect("temp");
        c.fetch(&job, dir.path());
        let frames = frame_bytes(dir.path());
        assert!(c.alive());
        frames
    })
    .await
    .expect("join");
    let reference = tempfile::tempdir().expect("temp");
    let out = reference.path().to_str().expect("UTF-8").to_string();
    let mut render = vec!["render", "--device", "cpu", "--output", &out];
    render.extend(args.iter().take(args.len() - 2));
    run_ok(dreamfarm(&render));
    assert!(
        done == frame_bytes(reference.path()),
        "frames differ after hostile workers"
    );
}

/// A worker must answer in its lease's pixel format: an f16 result for an
/// f32 lease would quietly cost the frames their exactness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_in_another_pixel_format_is_refused() {
    let c = Coordinator::start();
    c.submit(&[
        "--input",
        "assets/astronaut.png",
        "--size",
        "192x128",
        "--frames",
        "1",
        "--tile-size",
        "64",
        "--name",
        "format",
    ]);
    let mut raw = open(&c.url, hello(PROTOCOL_VERSION))
        .await
        .expect("session");
    let lease = next_lease(&mut raw).await;
    assert_eq!(lease.format, PixelFormat::F32 as i32);
    let head = ResultStart {
        lease_id: lease.lease_id,
        attempt: lease.attempt,
        format: PixelFormat::F16 as i32,
        pixels_bytes: result_bytes(&lease) / 2,
    };
    raw.up.send(up(Up::ResultStart(head))).await.expect("send");
    let status = ends_with(&mut raw).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("format"), "{status:?}");
    // The lease goes back to the queue once the session is torn down.
    let start = std::time::Instant::now();
    while c.metric("dreamfarm_lease_retries_total") < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "lease not retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.metric("dreamfarm_rejected_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_compressed_messages_is_refused() {
    let c = Coordinator::start();
    // The coordinator takes no compressed messages; a peer that says it
    // sends them is told so before anything is read.
    let gzip = [("grpc-encoding", "gzip")];
    let status = match Raw::open_with_headers(&c.url, hello(PROTOCOL_VERSION), &gzip).await {
        Ok(mut raw) => ends_with(&mut raw).await,
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("uncompressed"), "{status:?}");
}
