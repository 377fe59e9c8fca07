//! A lease from the wire: its head checked before any byte is kept, its
//! pixels collected chunk by chunk, and the whole decoded into tile work
//! whose geometry is checked before any pixel is touched.

use std::collections::HashMap;

use std::sync::Arc;

use dreamfarm_common::digest::is_sha256_hex;
use dreamfarm_common::objective::MAX_ITERATIONS;
use dreamfarm_common::params::NetworkPrecision;
use dreamfarm_common::tiling::Rect;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::WireError;
use dreamfarm_proto::chunks::Assembler;
use dreamfarm_proto::pb::{Chunk, LeaseStart, PixelFormat, RegionLeaseStart, WorkerMessage};
use dreamfarm_proto::region_parts::RegionArrivals;
use dreamfarm_proto::{objective, pixels};
use tokio::sync::mpsc;

/// A decoded lease ready to compute.
pub(super) struct Lease {
    /// The coordinator's id of the lease.
    pub(super) id: u64,
    /// Which try this is; the result names it back.
    pub(super) attempt: u32,
    /// The lease's pixel format, which its result uses too.
    pub(super) format: PixelFormat,
    /// What dreams it.
    pub(super) model: JobModel,
    /// The checked tile work.
    pub(super) work: TileWork,
    /// The session the lease came in; results of older ones are dropped.
    pub(super) session: u64,
    /// That session's stream up to the coordinator.
    pub(super) up: mpsc::Sender<WorkerMessage>,
}

/// What dreams a job's tiles: its model, weights, precision and seed.
#[derive(Debug, Clone)]
pub(super) struct JobModel {
    /// The job.
    pub(super) job: String,
    /// The job's model: a built-in name, checked when loaded.
    pub(super) model: String,
    /// The SHA-256 of the weights file the job uploaded, if it did.
    pub(super) weights_sha256: Option<String>,
    /// The number format the job's network runs in.
    pub(super) precision: NetworkPrecision,
    /// The job's seed.
    pub(super) seed: u64,
}

impl JobModel {
    /// A lease's model fields, checked: a known precision (none: f32) and
    /// a weights digest (none: the pinned weights) that can only name a
    /// file in the worker's cache.
    pub(super) fn from_wire(
        job: String,
        model: String,
        weights_sha256: String,
        precision: &str,
        seed: u64,
    ) -> Result<Self, WireError> {
        let precision = match precision {
            "" => NetworkPrecision::F32,
            name => name.parse().map_err(WireError::Protocol)?,
        };
        let weights_sha256 = Some(weights_sha256).filter(|w| !w.is_empty());
        if let Some(bad) = weights_sha256.as_ref().filter(|w| !is_sha256_hex(w)) {
            return Err(WireError::Protocol(format!(
                "weights digest {bad:?} is not a SHA-256 in lower-case hex"
            )));
        }
        Ok(Self {
            job,
            model,
            weights_sha256,
            precision,
            seed,
        })
    }
}

/// Leases whose head has arrived and whose pixels are still arriving.
#[derive(Debug, Default)]
pub(super) struct Arriving {
    /// Each tile lease's head and the pixels so far, by lease id.
    leases: HashMap<u64, (LeaseStart, Assembler)>,
    /// Region leases arriving, and the last frames' pieces this session
    /// carried for them.
    regions: RegionArrivals,
}

/// A lease whose every byte has arrived.
pub(super) enum Arrived {
    /// A tile lease: its head and pixels.
    Tile(LeaseStart, Assembler),
    /// A region lease: its head and the last frame's 8-bit part.
    Region(RegionLeaseStart, Vec<u8>),
}

impl Arriving {
    /// Accepts a lease's head once its sizes add up.
    pub(super) fn start(&mut self, start: LeaseStart) -> Result<(), WireError> {
        let format = pixels::format_of(start.format)?;
        let want = pixels::payload_bytes("lease", start.width, start.height, format)?;
        if start.pixels_bytes != want {
            return Err(WireError::Length {
                expected: want,
                got: start.pixels_bytes,
            });
        }
        self.leases
            .insert(start.lease_id, (start, Assembler::new(want)));
        Ok(())
    }

    /// Accepts a region lease's head once its part adds up
    /// ([`RegionArrivals::start`]); the lease when no byte is to come.
    pub(super) fn start_region(
        &mut self,
        start: RegionLeaseStart,
    ) -> Result<Option<Arrived>, WireError> {
        Ok(self
            .regions
            .start(start)?
            .map(|(start, rgb)| Arrived::Region(start, rgb)))
    }

    /// Drops the pieces of `job`'s frame `frame` this session carried:
    /// it is whole.
    pub(super) fn forget_frame(&mut self, job: &str, frame: u64) {
        self.regions.forget(job, frame);
    }

    /// Adds a piece of a lease's pixels; returns the lease once all have
    /// arrived.
    pub(super) fn chunk(
        &mut self,
        Chunk { lease_id, data }: Chunk,
    ) -> Result<Option<Arrived>, WireError> {
        if let Some((_, bytes)) = self.leases.get_mut(&lease_id) {
            bytes.push(&data)?;
            return Ok(bytes
                .is_complete()
                .then(|| self.leases.remove(&lease_id))
                .flatten()
                .map(|(start, bytes)| Arrived::Tile(start, bytes)));
        }
        Ok(self
            .regions
            .chunk(Chunk { lease_id, data })?
            .map(|(start, rgb)| Arrived::Region(start, rgb)))
    }

    /// Forgets a lease still arriving; whether it was one.
    pub(super) fn cancel(&mut self, lease_id: u64) -> bool {
        self.leases.remove(&lease_id).is_some() || self.regions.cancel(lease_id)
    }

    /// The ids of the leases still arriving.
    pub(super) fn into_ids(self) -> Vec<u64> {
        self.leases
            .into_keys()
            .chain(self.regions.into_ids())
            .collect()
    }
}

/// Builds the tile work of a fully received lease, checking its geometry;
/// a refusal names the lease, for the coordinator.
pub(super) fn lease_from_wire(
    start: LeaseStart,
    bytes: Assembler,
    session: u64,
    up: mpsc::Sender<WorkerMessage>,
) -> Result<Lease, (u64, WireError)> {
    let id = start.lease_id;
    let fail = |e: WireError| (id, e);
    let format = pixels::format_of(start.format).map_err(fail)?;
    let model = JobModel::from_wire(
        start.job_id,
        start.model,
        start.weights_sha256,
        &start.precision,
        start.seed,
    )
    .map_err(fail)?;
    let data = bytes.finish().map_err(fail)?;
    let image = pixels::decode(&data, start.width, start.height, format).map_err(fail)?;
    let o = start.output.ok_or_else(|| {
        fail(WireError::Protocol(
            "lease without an output rectangle".into(),
        ))
    })?;
    if !(1..=MAX_ITERATIONS).contains(&start.iterations) {
        return Err(fail(WireError::Protocol(format!(
            "{} iterations is out of range (1 to {MAX_ITERATIONS})",
            start.iterations
        ))));
    }
    let objective = start
        .objective
        .ok_or_else(|| fail(WireError::Protocol("lease without an objective".into())))
        .and_then(|o| objective::from_wire(o).map_err(fail))?;
    let work = TileWork {
        frame: start.frame,
        octave: start.octave,
        tile: start.tile,
        objective: Arc::new(objective),
        first_iteration: start.first_iteration,
        iterations: start.iterations,
        jitter: start.jitter,
        pixels: image,
        output: Rect {
            x: i64::from(o.x),
            y: i64::from(o.y),
            width: o.width as usize,
            height: o.height as usize,
        },
        tiles: start.tiles.max(1),
    };
    work.check().map_err(|e| fail(WireError::Protocol(e)))?;
    Ok(Lease {
        id,
        attempt: start.attempt,
        format,
        model,
        work,
        session,
        up,
    })
}

#[cfg(test)]
mod tests {
    use dreamfarm_common::objective::FrameObjective;
    use dreamfarm_common::params::DreamSettings;
    use dreamfarm_proto::CHUNK_BYTES;
    use dreamfarm_proto::pb::Rect as WireRect;

    use super::*;

    /// A 40×30 f32 lease with jitter 4 whose output is its 32×22 middle.
    fn head(id: u64) -> LeaseStart {
        LeaseStart {
            lease_id: id,
            width: 40,
            height: 30,
            format: PixelFormat::F32 as i32,
            pixels_bytes: 3 * 40 * 30 * 4,
            iterations: 3,
            jitter: 4,
            output: Some(WireRect {
                x: 4,
                y: 4,
                width: 32,
                height: 22,
            }),
            objective: Some(objective::to_wire(
                &FrameObjective::at(&DreamSettings::default(), 0, 1, 0, None).expect("objective"),
            )),
            ..LeaseStart::default()
        }
    }

    /// `start`'s pixels, all 0.5, in pieces of at most a chunk.
    fn pixels_of(start: &LeaseStart) -> Vec<Chunk> {
        let bytes: Vec<u8> = (0..start.pixels_bytes / 4)
            .flat_map(|_| 0.5f32.to_le_bytes())
            .collect();
        bytes
            .chunks(CHUNK_BYTES)
            .map(|data| Chunk {
                lease_id: start.lease_id,
                data: data.to_vec().into(),
            })
            .collect()
    }

    /// Receives `start` and its pixels, then decodes the lease.
    fn receive(start: LeaseStart) -> Result<Lease, (u64, WireError)> {
        let pieces = pixels_of(&start);
        receive_pieces(start, pieces)
    }

    /// Receives `start` and then `pieces` as its pixels, then decodes the
    /// lease.
    fn receive_pieces(start: LeaseStart, pieces: Vec<Chunk>) -> Result<Lease, (u64, WireError)> {
        let mut arriving = Arriving::default();
        arriving.start(start).expect("a good head");
        let mut complete = None;
        for piece in pieces {
            complete = arriving.chunk(piece).expect("a good piece");
        }
        let Some(Arrived::Tile(start, bytes)) = complete else {
            panic!("every byte of a tile lease arrived");
        };
        let (up, _down) = mpsc::channel(1);
        lease_from_wire(start, bytes, 1, up)
    }

    #[test]
    fn a_good_lease_decodes_into_its_tile_work() {
        let lease = receive(head(9)).unwrap_or_else(|(_, e)| panic!("{e}"));
        assert_eq!(lease.id, 9);
        assert_eq!(
            (lease.work.pixels.width, lease.work.pixels.height),
            (40, 30)
        );
        assert!(lease.work.pixels.data.iter().all(|&v| v == 0.5));
        assert_eq!(
            lease.work.output,
            Rect {
                x: 4,
                y: 4,
                width: 32,
                height: 22
            }
        );
    }

    #[test]
    fn the_precision_comes_with_the_lease_and_an_unknown_one_is_refused() {
        let of = |name: &str| {
            receive(LeaseStart {
                precision: name.into(),
                ..head(3)
            })
            .map(|l| l.model.precision)
            .map_err(|(_, e)| e.to_string())
        };
        assert_eq!(of(""), Ok(NetworkPrecision::F32), "an older coordinator");
        assert_eq!(of("bf16"), Ok(NetworkPrecision::Bf16));
        assert_eq!(of("f16"), Ok(NetworkPrecision::F16));
        let e = of("f8").expect_err("refused");
        assert!(e.contains("unknown precision \"f8\""), "{e}");
    }

    #[test]
    fn uploaded_weights_come_named_by_a_digest_and_nothing_else_passes() {
        let of = |digest: &str| {
            receive(LeaseStart {
                job_id: "job-1".into(),
                weights_sha256: digest.into(),
                ..head(3)
            })
            .map(|l| (l.model.job, l.model.weights_sha256))
            .map_err(|(_, e)| e.to_string())
        };
        assert_eq!(of(""), Ok(("job-1".into(), None)), "the pinned weights");
        let digest = "0123456789abcdef".repeat(4);
        assert_eq!(of(&digest), Ok(("job-1".into(), Some(digest))));
        // The digest names a file in the worker's cache.
        for bad in ["../../etc/passwd", &"A".repeat(64), &"a".repeat(65)] {
            let e = of(bad).expect_err("refused");
            assert!(e.contains("is not a SHA-256 in lower-case hex"), "{e}");
        }
    }

    #[test]
    fn a_batch_comes_with_the_lease_and_one_that_does_not_stack_is_refused() {
        let of = |tiles: u32, height: u32, y: u32| {
            let mut start = LeaseStart {
                tiles,
                height,
                pixels_bytes: u64::from(3 * 40 * height * 4),
                ..head(5)
            };
            if let Some(o) = start.output.as_mut() {
                (o.y, o.height) = (y, 6);
            }
            receive(start)
                .map(|l| l.work.tiles)
                .map_err(|(_, e)| e.to_string())
        };
        assert_eq!(of(0, 30, 4), Ok(1), "an older coordinator: one tile");
        assert_eq!(of(3, 30, 2), Ok(3), "three 40x10 tiles");
        let e = of(4, 30, 2).expect_err("30 rows are not 4 tiles");
        assert!(e.contains("4 tiles cannot be stacked in 30 rows"), "{e}");
        let e = of(3, 30, 5).expect_err("the output leaves a 10-row tile");
        assert!(e.contains("lies outside the 40x10 tile"), "{e}");
    }

    #[test]
    fn a_head_announcing_the_wrong_byte_count_is_refused() {
        let mut start = head(1);
        start.pixels_bytes -= 4;
        assert_eq!(
            Arriving::default().start(start),
            Err(WireError::Length {
                expected: 3 * 40 * 30 * 4,
                got: 3 * 40 * 30 * 4 - 4
            })
        );
    }

    #[test]
    fn a_head_with_bad_dimensions_or_format_is_refused() {
        let mut start = head(1);
        start.width = 0;
        assert!(matches!(
            Arriving::default().start(start),
            Err(WireError::Size { .. })
        ));
        let mut start = head(1);
        start.format = PixelFormat::Unspecified as i32;
        assert_eq!(Arriving::default().start(start), Err(WireError::Format(0)));
    }

    #[test]
    fn pixels_beyond_the_announced_length_or_for_no_lease_are_refused() {
        let mut arriving = Arriving::default();
        assert!(matches!(
            arriving.chunk(Chunk {
                lease_id: 5,
                data: vec![0; 4].into()
            }),
            Err(WireError::Protocol(_))
        ));
        let start = head(5);
        arriving.start(start.clone()).expect("a good head");
        let mut pieces = pixels_of(&start);
        pieces[0].data = [&pieces[0].data[..], &[0; 4]].concat().into();
        assert!(matches!(
            arriving.chunk(pieces.remove(0)),
            Err(WireError::Length { .. })
        ));
    }

    #[test]
    fn a_cancelled_lease_takes_no_more_pixels() {
        let mut arriving = Arriving::default();
        arriving.start(head(3)).expect("a good head");
        assert!(arriving.cancel(3));
        assert!(!arriving.cancel(3));
        assert!(arriving.into_ids().is_empty());
    }

    #[test]
    fn an_output_rectangle_outside_the_tile_is_refused() {
        let mut start = head(2);
        start.output = Some(WireRect {
            x: 10,
            y: 4,
            width: 32,
            height: 22,
        });
        let (id, e) = receive(start).err().expect("refused");
        assert_eq!(id, 2, "the refusal names the lease");
        assert!(e.to_string().contains("outside the 40x30 tile"), "{e}");
        let mut start = head(2);
        start.output = None;
        let (_, e) = receive(start).err().expect("refused");
        assert!(e.to_string().contains("without an output rectangle"), "{e}");
    }

    #[test]
    fn out_of_range_iterations_are_refused() {
        for iterations in [0, MAX_ITERATIONS + 1] {
            let mut start = head(4);
            start.iterations = iterations;
            let (_, e) = receive(start).err().expect("refused");
            assert!(e.to_string().contains("out of range"), "{e}");
        }
        let mut start = head(4);
        start.iterations = MAX_ITERATIONS;
        assert!(receive(start).is_ok());
    }

    #[test]
    fn a_lease_without_a_sane_objective_is_refused() {
        let mut start = head(5);
        start.objective = None;
        let (_, e) = receive(start).err().expect("refused");
        assert!(e.to_string().contains("without an objective"), "{e}");
        let mut start = head(5);
        if let Some(o) = &mut start.objective {
            o.step_size = f64::NAN;
        }
        let (_, e) = receive(start).err().expect("refused");
        assert!(e.to_string().contains("step size NaN"), "{e}");
    }

    #[test]
    fn a_tile_with_no_room_for_its_jitter_is_refused() {
        let mut start = head(6);
        start.jitter = 20;
        let (_, e) = receive(start).err().expect("refused");
        assert!(e.to_string().contains("no room for jitter"), "{e}");
    }

    #[test]
    fn non_finite_pixels_are_refused() {
        let start = head(8);
        let mut pieces = pixels_of(&start);
        let mut first = pieces[0].data.to_vec();
        first[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        pieces[0].data = first.into();
        let (_, e) = receive_pieces(start, pieces).err().expect("refused");
        assert!(e.to_string().contains("NaN"), "{e}");
    }
}
