//! A job's files for `dreamfarm fetch`: every frame, the video, the files
//! the job was submitted with and a job file naming them beside it, less
//! those the client already holds as they are here (and a
//! job's weights file for a worker, the same way), each read
//! from disk a piece at a time so that a video of many gigabytes never
//! sits in the coordinator's memory.
//!
//! Whether a client's copy is current is judged as rsync's quick check
//! does: same size and same modification time. Frames never change once
//! written, and a fetched file is given the coordinator's modification time,
//! so a second fetch of a long render sends only its new frames and the
//! video.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dreamfarm_proto::CHUNK_BYTES;
use dreamfarm_proto::pb::FileChunk;
use tokio::sync::mpsc;
use tonic::Status;

use super::metrics::Metrics;
use crate::output::MANIFEST;
use crate::store::JobRecord;

/// What the quick check compares: a file's length and its modification time
/// in whole milliseconds since 1970 (file systems keep at least that, and a
/// client's copy is stamped with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, milliseconds since 1970.
    pub modified_ms: i64,
}

impl FileStamp {
    /// The stamp of a file whose metadata is `meta`; `None` when the file
    /// system keeps no modification time (then no copy is ever current).
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        let modified = meta.modified().ok()?;
        let ms = match modified.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).ok()?,
            Err(before) => -i64::try_from(before.duration().as_millis()).ok()?,
        };
        Some(Self {
            size: meta.len(),
            modified_ms: ms,
        })
    }

    /// The modification time as a `SystemTime`, to stamp a copy with.
    pub fn modified(&self) -> SystemTime {
        let ms = Duration::from_millis(self.modified_ms.unsigned_abs());
        if self.modified_ms >= 0 {
            UNIX_EPOCH + ms
        } else {
            UNIX_EPOCH - ms
        }
    }
}

/// What a fetching client holds of a job's files: each one's stamp, by
/// name. Only the job's own files are kept, so a client's list costs no
/// more memory than the job's listing, however long it is.
#[derive(Debug, Default)]
pub struct Held {
    /// The job's files, with the stamp of the client's copy if it has one.
    stamps: HashMap<String, Option<FileStamp>>,
}

impl Held {
    /// Ready to hear of copies of `files` (what a fetch offers).
    pub fn of(files: &[Offer]) -> Self {
        Self {
            stamps: files.iter().map(|f| (f.name().to_string(), None)).collect(),
        }
    }

    /// Adds files the client says it holds, by name; other names than the
    /// job's files' are ignored.
    pub fn add(&mut self, held: impl IntoIterator<Item = (String, FileStamp)>) {
        for (name, held) in held {
            if let Some(stamp) = self.stamps.get_mut(&name) {
                *stamp = Some(held);
            }
        }
    }

    /// The stamp of the client's copy of `name`, if it holds one.
    fn get(&self, name: &str) -> Option<&FileStamp> {
        self.stamps.get(name).and_then(Option::as_ref)
    }
}

/// A file a fetch offers: one on disk, or one made for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A file on disk, offered under its own name.
    Disk(PathBuf),
    /// Bytes made for the client (a job file written for its folder), with
    /// the stamp the client's copy gets, so that the quick check holds.
    Made {
        /// Its name in the client's folder.
        name: String,
        /// Its bytes.
        bytes: Vec<u8>,
        /// Its length and the time it last changed.
        stamp: FileStamp,
    },
}

impl Offer {
    /// Its name in the client's folder.
    pub fn name(&self) -> &str {
        match self {
            Self::Disk(path) => path.file_name().and_then(OsStr::to_str).unwrap_or_default(),
            Self::Made { name, .. } => name,
        }
    }

    /// Its bytes to read from the start, and its stamp when there is one.
    fn open(&self) -> std::io::Result<(Box<dyn Read + '_>, Option<FileStamp>)> {
        match self {
            Self::Disk(path) => {
                let file = std::fs::File::open(path)?;
                let stamp = FileStamp::of(&file.metadata()?);
                Ok((Box::new(file), stamp))
            }
            Self::Made { bytes, stamp, .. } => Ok((Box::new(&bytes[..]), Some(*stamp))),
        }
    }
}

/// What `dreamfarm fetch` offers of the job `record`, kept in the folder
/// `dir`: its job file, then the files uploaded with it (its input, guide,
/// colour reference, weights), then its frames and video. The job file is
/// the record's, whose uploaded files are named by their names in `dir`,
/// and those files come under the same names: the client's folder holds
/// a job file `dreamfarm render --job` can continue from anywhere. (The
/// job file among the frames names the coordinator's own paths.)
pub fn job_files(dir: &Path, record: &JobRecord) -> std::io::Result<Vec<Offer>> {
    let text = toml::to_string(&record.spec).map_err(std::io::Error::other)?;
    let mut offers = vec![Offer::Made {
        name: MANIFEST.to_string(),
        stamp: FileStamp {
            size: text.len() as u64,
            // The text is the record's: it changes only with the record.
            modified_ms: record.updated_ms,
        },
        bytes: text.into_bytes(),
    }];
    for path in record.spec.paths() {
        // Jobs stored before their uploads were kept by name name their
        // coordinator's paths; those are not offered.
        let bare = path.components().count() == 1 && path.file_name().is_some();
        if bare && dir.join(&path).is_file() {
            offers.push(Offer::Disk(dir.join(path)));
        }
    }
    let frames = fetchable_files(&dir.join(FRAMES))?;
    offers.extend(
        frames
            .into_iter()
            .filter(|p| p.file_name() != Some(OsStr::new(MANIFEST)))
            .map(Offer::Disk),
    );
    Ok(offers)
}

/// The folder of a job's frames and video inside the job's folder.
pub const FRAMES: &str = "frames";

/// A piece of a file for a fetching client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePiece {
    /// The file's name in the job's folder.
    pub name: String,
    /// Its bytes from where the last piece ended (empty when `unchanged`).
    pub data: Vec<u8>,
    /// The whole file's stamp, when the file system keeps one.
    pub stamp: Option<FileStamp>,
    /// The client holds this file as it is: no data follows.
    pub unchanged: bool,
}

/// Why the files stopped coming before the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A file could not be read (the reason names it).
    Unreadable(String),
    /// The coordinator is shutting down.
    ShuttingDown,
}

/// What [`send_files`] sends: pieces, or why no more come.
pub type Sent = Result<FilePiece, Stop>;

/// Files of a job's folder a client may fetch, the job file first, then the
/// frames and the video; not the hidden files of frames and a video being
/// written.
pub fn fetchable_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
            })
            .collect(),
        // A job that never started has no frames yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    // The job file first: a client checks it against its folder before
    // any frame is written there.
    files.sort_by_key(|p| (p.file_name() != Some(OsStr::new(MANIFEST)), p.clone()));
    Ok(files)
}

/// A piece [`send_files`] sent, on the wire; `stopped` is what the
/// receiver hears when the coordinator shuts down.
pub fn wire_chunk(sent: Sent, stopped: &str) -> Result<FileChunk, Status> {
    let piece = sent.map_err(|stop| match stop {
        Stop::Unreadable(why) => Status::internal(why),
        Stop::ShuttingDown => Status::unavailable(stopped),
    })?;
    Ok(FileChunk {
        path: piece.name,
        data: piece.data,
        size: piece.stamp.map(|s| s.size),
        modified_unix_ms: piece.stamp.map(|s| s.modified_ms),
        unchanged: piece.unchanged,
    })
}

/// Sends `files` into `tx` as chunks, in order: a file whose stamp equals
/// the one `held` gives for its name as one `unchanged` chunk, any other
/// as its bytes in pieces of at most [`CHUNK_BYTES`] (one empty piece for
/// an empty file), each piece carrying the file's stamp. Blocks on the
/// disk and on the client, so it runs on a thread of its own; stops
/// quietly when the client goes away, and with a [`Stop`] when a file
/// cannot be read or once `stopping` says the coordinator is shutting
/// down.
pub fn send_files(
    files: Vec<Offer>,
    held: &Held,
    tx: mpsc::Sender<Sent>,
    metrics: &Metrics,
    stopping: &dyn Fn() -> bool,
) {
    for file in files {
        let name = file.name();
        match send_file(&file, held.get(name), &tx, metrics, stopping) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let why = format!("cannot read {name} of the job: {e}");
                let _ = tx.blocking_send(Err(Stop::Unreadable(why)));
                return;
            }
        }
    }
}

/// Sends one file (see [`send_files`]); `Ok(false)` when the client has
/// gone away, or once `stopping` says so (the client is told).
fn send_file(
    file: &Offer,
    held: Option<&FileStamp>,
    tx: &mpsc::Sender<Sent>,
    metrics: &Metrics,
    stopping: &dyn Fn() -> bool,
) -> std::io::Result<bool> {
    let (reader, stamp) = file.open()?;
    let chunk = |data: Vec<u8>, unchanged: bool| FilePiece {
        name: file.name().to_string(),
        data,
        stamp,
        unchanged,
    };
    if stamp.is_some() && held == stamp.as_ref() {
        return Ok(tx.blocking_send(Ok(chunk(Vec::new(), true))).is_ok());
    }
    let mut reader = reader.take(u64::MAX);
    let mut total = 0u64;
    loop {
        if stopping() {
            let _ = tx.blocking_send(Err(Stop::ShuttingDown));
            return Ok(false);
        }
        let mut piece = Vec::with_capacity(CHUNK_BYTES);
        reader.set_limit(CHUNK_BYTES as u64);
        reader.read_to_end(&mut piece)?;
        if piece.is_empty() && total > 0 {
            break;
        }
        let last = piece.len() < CHUNK_BYTES;
        total += piece.len() as u64;
        metrics.sent(piece.len());
        if tx.blocking_send(Ok(chunk(piece, false))).is_err() {
            return Ok(false);
        }
        if last {
            break;
        }
    }
    match stamp {
        Some(s) if s.size != total => Err(std::io::Error::other(format!(
            "it changed while being sent ({} bytes, then {total}); fetch again",
            s.size
        ))),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk `send_files` sends for `files`, given that the client
    /// holds `held`.
    fn chunks(files: Vec<PathBuf>, held: &[(&str, FileStamp)]) -> Vec<FilePiece> {
        let files: Vec<Offer> = files.into_iter().map(Offer::Disk).collect();
        let mut holds = Held::of(&files);
        holds.add(held.iter().map(|&(name, s)| (name.to_string(), s)));
        let (tx, mut rx) = mpsc::channel(4);
        let sender = std::thread::spawn(move || {
            send_files(files, &holds, tx, &Metrics::default(), &|| false)
        });
        let mut got = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            got.push(c.expect("no error"));
        }
        sender.join().expect("sender");
        got
    }

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(&std::fs::metadata(path).expect("metadata")).expect("a modification time")
    }

    #[test]
    fn files_go_in_pieces_and_held_copies_are_only_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big: Vec<u8> = (0..2 * CHUNK_BYTES + 3).map(|i| (i % 251) as u8).collect();
        let exact = vec![7u8; CHUNK_BYTES];
        for (name, data) in [("a.mp4", &big[..]), ("b.png", &exact), ("job.toml", &[])] {
            std::fs::write(dir.path().join(name), data).expect("write");
        }
        std::fs::write(dir.path().join(".partial.mp4"), b"x").expect("write");
        let files = fetchable_files(dir.path()).expect("list");
        assert_eq!(files.len(), 3, "hidden files are not fetchable");

        let all = chunks(files.clone(), &[]);
        let sizes: Vec<(String, usize)> =
            all.iter().map(|c| (c.name.clone(), c.data.len())).collect();
        assert_eq!(
            sizes,
            [
                ("job.toml".into(), 0),
                ("a.mp4".into(), CHUNK_BYTES),
                ("a.mp4".into(), CHUNK_BYTES),
                ("a.mp4".into(), 3),
                ("b.png".into(), CHUNK_BYTES),
            ]
        );
        let a: Vec<u8> = all[1..4].iter().flat_map(|c| c.data.clone()).collect();
        assert!(a == big);
        let a_stamp = stamp(&dir.path().join("a.mp4"));
        assert!(
            all[1..4]
                .iter()
                .all(|c| c.stamp == Some(a_stamp) && !c.unchanged)
        );

        // The client holds a.mp4 as it is, b.png with another time, and a
        // file the job does not have.
        let mut b_stamp = stamp(&dir.path().join("b.png"));
        b_stamp.modified_ms -= 1;
        let held = [
            ("a.mp4", a_stamp),
            ("b.png", b_stamp),
            ("notes.txt", a_stamp),
        ];
        let some = chunks(files, &held);
        let sizes: Vec<(String, usize, bool)> = some
            .iter()
            .map(|c| (c.name.clone(), c.data.len(), c.unchanged))
            .collect();
        assert_eq!(
            sizes,
            [
                ("job.toml".into(), 0, false),
                ("a.mp4".into(), 0, true),
                ("b.png".into(), CHUNK_BYTES, false),
            ]
        );
    }

    /// A job kept in a folder: its input and colour reference uploaded,
    /// two frames, a video and the frames' own job file.
    fn kept_job() -> (tempfile::TempDir, JobRecord) {
        let dir = tempfile::tempdir().expect("temp dir");
        let frames = dir.path().join(FRAMES);
        std::fs::create_dir(&frames).expect("frames");
        for file in ["input.png", "color-reference.jpg"] {
            std::fs::write(dir.path().join(file), b"upload").expect("upload");
        }
        for file in [MANIFEST, "000000.png", "000001.png", "trip.mp4"] {
            std::fs::write(frames.join(file), b"made").expect("made");
        }
        let mut spec = dreamfarm_common::params::JobSpec::new("input.png".into(), 2);
        spec.color.reference = Some("color-reference.jpg".into());
        let record = JobRecord {
            id: "trip-1".into(),
            name: "trip".into(),
            spec,
            state: crate::store::JobState::Done,
            priority: 0,
            submitted_ms: 1,
            updated_ms: 1_764_633_600_123,
            frames_done: 2,
            reason: String::new(),
        };
        (dir, record)
    }

    #[test]
    fn a_job_is_fetched_with_a_job_file_naming_its_uploads_beside_it() {
        let (dir, record) = kept_job();
        let offers = job_files(dir.path(), &record).expect("offers");
        let names: Vec<&str> = offers.iter().map(Offer::name).collect();
        assert_eq!(
            names,
            [
                MANIFEST,
                "input.png",
                "color-reference.jpg",
                "000000.png",
                "000001.png",
                "trip.mp4"
            ]
        );
        let Offer::Made { bytes, stamp, .. } = &offers[0] else {
            panic!("the job file is made, not the frames' own: {:?}", offers[0]);
        };
        let spec: dreamfarm_common::params::JobSpec = toml::from_slice(bytes).expect("a job file");
        assert_eq!(spec, record.spec);
        assert_eq!(stamp.size, bytes.len() as u64);
        assert_eq!(stamp.modified_ms, record.updated_ms);
        assert_eq!(offers[1], Offer::Disk(dir.path().join("input.png")));
    }

    #[test]
    fn uploads_a_job_names_by_another_path_are_not_offered() {
        let (dir, mut record) = kept_job();
        // Stored before uploads were kept by name; and one not uploaded.
        record.spec.input = dir.path().join("input.png");
        record.spec.color.reference = Some("missing.jpg".into());
        let offers = job_files(dir.path(), &record).expect("offers");
        let names: Vec<&str> = offers.iter().map(Offer::name).collect();
        assert_eq!(names, [MANIFEST, "000000.png", "000001.png", "trip.mp4"]);
    }

    #[test]
    fn a_stamp_gives_back_its_time() {
        for ms in [0, 1_764_633_600_123, -5_000] {
            let s = FileStamp {
                size: 1,
                modified_ms: ms,
            };
            let back = s.modified().duration_since(UNIX_EPOCH);
            match back {
                Ok(d) => assert_eq!(d.as_millis() as i64, ms),
                Err(e) => assert_eq!(-(e.duration().as_millis() as i64), ms),
            }
        }
    }
}
