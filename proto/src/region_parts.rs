//! The last frame's parts a worker's session carries for region leases.
//!
//! A worker holding several regions of a frame needs the union of their
//! inputs, which overlap (the lower octaves' bases most), so each region
//! lease's head names the pieces of its part that follow, and the worker
//! takes the rest from what the same session carried for the same frame
//! of the job. Both ends keep the same record by the same rules, applied
//! in the order of the session's stream: a job's record starts again at a
//! region lease of another of its frames, is dropped when its frame is
//! told whole, and only the last [`KEEP_JOBS`] jobs leased keep theirs. A
//! new session starts with none, at both ends.

use std::collections::HashMap;

use dreamfarm_common::area::{Area, copy_rgb8, uncovered};
use dreamfarm_common::params::MAX_SIDE;

use crate::chunks::Assembler;
use crate::{WireError, pb};

/// Jobs whose parts a session keeps, the most recently leased.
pub const KEEP_JOBS: usize = 4;

/// Most pieces a region lease's head may name: far more than the
/// difference of one part and the others of a frame gives.
const MAX_PIECES: usize = 4096;

/// What one end of a session knows the worker holds of the last frames:
/// for each job, the frame and its pieces, each with `P` (nothing at the
/// coordinator, the pixels at the worker).
#[derive(Debug)]
pub struct SessionParts<P> {
    /// The jobs, the most recently leased last.
    jobs: Vec<JobParts<P>>,
}

impl<P> Default for SessionParts<P> {
    fn default() -> Self {
        Self { jobs: Vec::new() }
    }
}

/// One job's pieces of one frame.
#[derive(Debug)]
struct JobParts<P> {
    job: String,
    frame: u64,
    pieces: Vec<(Area, P)>,
}

impl<P> SessionParts<P> {
    /// The pieces held of `job`'s frame `frame` as a region lease of it
    /// comes: the job's other frame's dropped, the job made the most
    /// recent, the oldest beyond [`KEEP_JOBS`] dropped.
    fn leased(&mut self, job: &str, frame: u64) -> &mut Vec<(Area, P)> {
        let kept = match self.jobs.iter().position(|j| j.job == job) {
            Some(at) => Some(self.jobs.remove(at)).filter(|j| j.frame == frame),
            None => None,
        };
        self.jobs.push(kept.unwrap_or_else(|| JobParts {
            job: job.to_string(),
            frame,
            pieces: Vec::new(),
        }));
        if self.jobs.len() > KEEP_JOBS {
            self.jobs.remove(0);
        }
        let last = self.jobs.len() - 1;
        &mut self.jobs[last].pieces
    }

    /// Drops `job`'s pieces of frame `frame`, which was told whole.
    pub fn forget(&mut self, job: &str, frame: u64) {
        self.jobs.retain(|j| j.job != job || j.frame != frame);
    }
}

/// The coordinator's record of a session: which pieces it carried.
pub type PartsSent = SessionParts<()>;

impl PartsSent {
    /// The pieces of `part` that a region lease of `job`'s frame `frame`
    /// sends: those the session has not carried yet. The whole part is
    /// carried from then on.
    pub fn to_send(&mut self, job: &str, frame: u64, part: &Area) -> Vec<Area> {
        let held = self.leased(job, frame);
        let pieces = uncovered(part, held.iter().map(|(a, ())| a));
        held.extend(pieces.iter().map(|a| (a.clone(), ())));
        pieces
    }
}

/// An area on the wire.
pub fn to_wire(area: &Area) -> pb::Rect {
    pb::Rect {
        x: area.columns.start as u32,
        y: area.rows.start as u32,
        width: area.columns.len() as u32,
        height: area.rows.len() as u32,
    }
}

/// An area from the wire.
pub fn from_wire(rect: &pb::Rect) -> Area {
    let (x, y) = (rect.x as usize, rect.y as usize);
    Area {
        columns: x..x + rect.width as usize,
        rows: y..y + rect.height as usize,
    }
}

/// Region leases arriving down a worker's session, and the last frames'
/// pieces the session carried.
#[derive(Debug, Default)]
pub struct RegionArrivals {
    /// Each lease's head, its part and its pieces, and their bytes so far.
    arriving: HashMap<u64, (Arrival, Assembler)>,
    /// The pieces carried, with their pixels.
    held: SessionParts<Vec<u8>>,
}

/// A region lease's head with its part and pieces read from it.
#[derive(Debug)]
struct Arrival {
    start: pb::RegionLeaseStart,
    part: Area,
    pieces: Vec<Area>,
}

impl RegionArrivals {
    /// Takes a region lease's head: its part no wider or taller than a
    /// frame may be, its pieces inside it, their bytes what `part_bytes`
    /// says and the rest of the part held from the frame's earlier
    /// leases. The lease with its part's 8-bit RGB when no byte is to
    /// come.
    pub fn start(
        &mut self,
        start: pb::RegionLeaseStart,
    ) -> Result<Option<(pb::RegionLeaseStart, Vec<u8>)>, WireError> {
        let id = start.lease_id;
        let bad = |what: String| WireError::Protocol(format!("region lease {id}: {what}"));
        let wire = start.part.unwrap_or_default();
        if wire.width > MAX_SIDE || wire.height > MAX_SIDE {
            return Err(bad(format!(
                "a {}x{} part is larger than any frame",
                wire.width, wire.height
            )));
        }
        let part = from_wire(&wire);
        if start.pieces.len() > MAX_PIECES {
            return Err(bad(format!(
                "{} pieces of its part (at most {MAX_PIECES})",
                start.pieces.len()
            )));
        }
        let pieces: Vec<Area> = start.pieces.iter().map(from_wire).collect();
        if let Some(outside) = pieces.iter().find(|p| p.is_empty() || !part.holds(p)) {
            return Err(bad(format!(
                "piece {outside:?} is not inside its part {part:?}"
            )));
        }
        let want: u64 = pieces.iter().map(|p| 3 * p.pixels() as u64).sum();
        if start.part_bytes != want {
            return Err(WireError::Length {
                expected: want,
                got: start.part_bytes,
            });
        }
        let held = self.held.leased(&start.job_id, start.frame);
        let missing: usize = uncovered(&part, held.iter().map(|(a, _)| a).chain(&pieces))
            .iter()
            .map(Area::pixels)
            .sum();
        if missing > 0 {
            return Err(bad(format!(
                "{missing} pixels of its part are neither sent nor held from frame {} of job {} on this session",
                start.frame, start.job_id
            )));
        }
        let arrival = Arrival {
            start,
            part,
            pieces,
        };
        if want == 0 {
            return Ok(Some(self.assemble(arrival, &[])));
        }
        self.arriving.insert(id, (arrival, Assembler::new(want)));
        Ok(None)
    }

    /// Whether lease `lease_id` is a region lease still arriving.
    pub fn has(&self, lease_id: u64) -> bool {
        self.arriving.contains_key(&lease_id)
    }

    /// Adds a piece of a region lease's bytes; the lease with its part's
    /// 8-bit RGB once all have arrived.
    pub fn chunk(
        &mut self,
        pb::Chunk { lease_id, data }: pb::Chunk,
    ) -> Result<Option<(pb::RegionLeaseStart, Vec<u8>)>, WireError> {
        let (_, bytes) = self
            .arriving
            .get_mut(&lease_id)
            .ok_or_else(|| WireError::Protocol(format!("pixels for unknown lease {lease_id}")))?;
        bytes.push(&data)?;
        if !bytes.is_complete() {
            return Ok(None);
        }
        let Some((arrival, bytes)) = self.arriving.remove(&lease_id) else {
            return Ok(None);
        };
        Ok(Some(self.assemble(arrival, &bytes.finish()?)))
    }

    /// Forgets a region lease still arriving; whether it was one.
    pub fn cancel(&mut self, lease_id: u64) -> bool {
        self.arriving.remove(&lease_id).is_some()
    }

    /// The ids of the region leases still arriving.
    pub fn into_ids(self) -> impl Iterator<Item = u64> {
        self.arriving.into_keys()
    }

    /// Drops `job`'s pieces of frame `frame`, which was told whole.
    pub fn forget(&mut self, job: &str, frame: u64) {
        self.held.forget(job, frame);
    }

    /// The part's 8-bit RGB of a lease whose pieces' `bytes` all came,
    /// from them and the pieces held; keeps its pieces.
    fn assemble(&mut self, arrival: Arrival, bytes: &[u8]) -> (pb::RegionLeaseStart, Vec<u8>) {
        let Arrival {
            start,
            part,
            pieces,
        } = arrival;
        let held = self.held.leased(&start.job_id, start.frame);
        let mut at = 0;
        for piece in pieces {
            let n = 3 * piece.pixels();
            held.push((piece, bytes[at..at + n].to_vec()));
            at += n;
        }
        let mut rgb = vec![0u8; 3 * part.pixels()];
        for (piece, pixels) in held.iter() {
            let over = piece.intersection(&part);
            if !over.is_empty() {
                copy_rgb8((piece, pixels), (&part, &mut rgb), &over);
            }
        }
        (start, rgb)
    }
}

#[cfg(test)]
mod tests {
    use dreamfarm_common::area::Rgb8Area;
    use dreamfarm_common::seed::derive;

    use super::*;
    use crate::CHUNK_BYTES;

    /// A `width`×`height` frame whose every byte differs from its
    /// neighbours'.
    fn frame(width: usize, height: usize, seed: u64) -> Rgb8Area {
        Rgb8Area {
            area: Area {
                columns: 0..width,
                rows: 0..height,
            },
            rgb: std::sync::Arc::new(
                (0..3 * width * height)
                    .map(|i| derive(seed, &[i as u64]) as u8)
                    .collect(),
            ),
        }
    }

    /// `area` of `frame`.
    fn part_of(frame: &Rgb8Area, area: &Area) -> Vec<u8> {
        frame.cut(std::slice::from_ref(area))
    }

    /// The head and chunks the coordinator sends for a region lease of
    /// `area` of `job`'s frame `n`.
    fn lease(
        sent: &mut PartsSent,
        (job, n, id): (&str, u64, u64),
        frame: &Rgb8Area,
        area: &Area,
    ) -> (pb::RegionLeaseStart, Vec<pb::Chunk>) {
        let pieces = sent.to_send(job, n, area);
        let bytes = frame.cut(&pieces);
        let start = pb::RegionLeaseStart {
            lease_id: id,
            job_id: job.into(),
            frame: n,
            part: Some(to_wire(area)),
            pieces: pieces.iter().map(to_wire).collect(),
            part_bytes: bytes.len() as u64,
            ..Default::default()
        };
        let chunks = bytes
            .chunks(CHUNK_BYTES)
            .map(|c| pb::Chunk {
                lease_id: id,
                data: c.to_vec().into(),
            })
            .collect();
        (start, chunks)
    }

    /// The worker's side of a lease: its part's RGB once it arrived.
    fn receive(
        arrivals: &mut RegionArrivals,
        (start, chunks): (pb::RegionLeaseStart, Vec<pb::Chunk>),
    ) -> Vec<u8> {
        let mut done = arrivals.start(start).expect("a good head");
        for chunk in chunks {
            assert!(done.is_none(), "arrived before its last byte");
            done = arrivals.chunk(chunk).expect("a good chunk");
        }
        done.expect("arrived whole").1
    }

    #[test]
    fn a_worker_assembles_every_part_from_fewer_bytes_than_the_parts() {
        let (width, height) = (96, 64);
        let frames: Vec<Rgb8Area> = (0..3).map(|n| frame(width, height, n)).collect();
        let (mut sent, mut arrivals) = (PartsSent::default(), RegionArrivals::default());
        let (mut parts_bytes, mut wire_bytes) = (0, 0);
        for case in 0..300u64 {
            let r = |k: u64, n: usize| derive(case, &[k]) as usize % n;
            let (x, y) = (r(0, width), r(1, height));
            let area = Area {
                columns: x..x + 1 + r(2, width - x),
                rows: y..y + 1 + r(3, height - y),
            };
            // Five jobs (one more than kept), frames moving on, some told
            // whole.
            let job = ["a", "b", "c", "d", "e"][r(4, 5)];
            let n = (case / 50) as usize % frames.len();
            if r(5, 20) == 0 {
                sent.forget(job, n as u64);
                arrivals.forget(job, n as u64);
            }
            let wire = lease(&mut sent, (job, n as u64, case), &frames[n], &area);
            wire_bytes += wire.0.part_bytes;
            parts_bytes += 3 * area.pixels() as u64;
            assert_eq!(
                receive(&mut arrivals, wire),
                part_of(&frames[n], &area),
                "case {case}: {job} frame {n} {area:?}"
            );
        }
        assert!(
            wire_bytes < parts_bytes,
            "{wire_bytes} bytes sent for {parts_bytes} of parts"
        );
    }

    #[test]
    fn a_4k_frames_regions_on_two_workers_carry_the_union_of_their_inputs() {
        // The default recipe's 4K plan, its regions split into the
        // frame's left and right halves: each worker is carried its
        // half's inputs once, not each region's input whole (0.36 of the
        // inputs' pixels; the frame is 0.29).
        let settings = dreamfarm_common::params::DreamSettings {
            tile_size: 1024,
            ..Default::default()
        };
        let sizes = settings.octave_sizes(3840, 2160, 64);
        let plan = dreamfarm_common::region_plan::RegionPlan::new(&settings, 4, 10, &sizes);
        let mut workers = [PartsSent::default(), PartsSent::default()];
        let (mut parts, mut sent) = (0, 0);
        for region in &plan.regions {
            let worker = &mut workers[usize::from(region.cell.columns.start >= 1920)];
            parts += region.input.pixels();
            sent += worker
                .to_send("j", 1, &region.input)
                .iter()
                .map(Area::pixels)
                .sum::<usize>();
        }
        assert!(
            5 * sent < 2 * parts && sent >= 3840 * 2160,
            "{sent} pixels sent for {parts} of the regions' inputs"
        );
    }

    #[test]
    fn a_head_naming_pixels_the_session_does_not_hold_is_refused() {
        let (width, height) = (40, 30);
        let image = frame(width, height, 7);
        let area = |x: std::ops::Range<usize>| Area {
            columns: x,
            rows: 0..height,
        };
        let (mut sent, mut arrivals) = (PartsSent::default(), RegionArrivals::default());
        let first = lease(&mut sent, ("j", 3, 1), &image, &area(0..20));
        let _ = receive(&mut arrivals, first);
        // The coordinator sends only columns 20..30 of the next; had the
        // worker dropped the frame (another session, say), it says so.
        let next = lease(&mut sent, ("j", 3, 2), &image, &area(10..30));
        assert_eq!(next.0.pieces, [to_wire(&area(20..30))]);
        let mut other = RegionArrivals::default();
        let e = other.start(next.0.clone()).expect_err("not held");
        assert!(
            e.to_string().contains(
                "region lease 2: 300 pixels of its part are neither sent nor held from frame 3 of job j"
            ),
            "{e}"
        );
        // A lease of a part already carried comes with no bytes at all.
        let again = lease(&mut sent, ("j", 3, 3), &image, &area(5..15));
        assert_eq!(again.0.part_bytes, 0);
        let (_, rgb) = arrivals
            .start(again.0)
            .expect("a good head")
            .expect("no byte to come");
        assert_eq!(rgb, part_of(&image, &area(5..15)));
        // Pieces outside the part, or bytes that do not add up.
        let mut outside = next.0.clone();
        outside.pieces = vec![to_wire(&area(30..41))];
        let e = arrivals.start(outside).expect_err("outside");
        assert!(e.to_string().contains("is not inside its part"), "{e}");
        let mut short = next.0;
        short.part_bytes -= 1;
        assert!(matches!(
            arrivals.start(short),
            Err(WireError::Length { .. })
        ));
        let huge = pb::RegionLeaseStart {
            part: Some(pb::Rect {
                width: MAX_SIDE + 1,
                height: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = arrivals.start(huge).expect_err("larger than a frame");
        assert!(e.to_string().contains("larger than any frame"), "{e}");
    }

    #[test]
    fn both_ends_drop_a_jobs_parts_at_another_frame_and_beyond_the_jobs_kept() {
        let mut sent = PartsSent::default();
        let all = || Area {
            columns: 0..4,
            rows: 0..4,
        };
        assert_eq!(sent.to_send("a", 1, &all()), [all()]);
        assert!(sent.to_send("a", 1, &all()).is_empty(), "carried");
        assert_eq!(sent.to_send("a", 2, &all()), [all()], "another frame");
        for job in ["b", "c", "d"] {
            let _ = sent.to_send(job, 1, &all());
        }
        assert!(sent.to_send("a", 2, &all()).is_empty(), "four jobs kept");
        let _ = sent.to_send("e", 1, &all());
        assert_eq!(sent.to_send("b", 1, &all()), [all()], "the oldest dropped");
        sent.forget("e", 1);
        assert_eq!(sent.to_send("e", 1, &all()), [all()], "told whole");
    }
}
