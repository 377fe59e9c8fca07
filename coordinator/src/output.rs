//! The output folder of a render: numbered PNG frames written atomically, the
//! job they belong to (`job.toml`), and where a resumed render continues.
//!
//! A frame file exists only once it is complete (temporary file + rename),
//! so after a crash every frame on disk is good and the render resumes after
//! the last one. Frames are never overwritten.

use std::io::Read;
use std::path::{Path, PathBuf};

use dreamfarm_common::job_name::check_job_name;
use dreamfarm_common::params::{JobSpec, ParamError};

/// Why the output folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder cannot be created or written.
    #[error(
        "cannot write to output folder {path}: {source}. Fix: choose a writable folder with --output, or fix its permissions"
    )]
    Unwritable {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The folder holds frames of another job.
    #[error(
        "{path} holds frames of a different job ({}). Fix: re-run with the job's original settings to resume it, or render into another --name/--output",
        differences.against("this command")
    )]
    DifferentJob {
        /// The folder.
        path: PathBuf,
        /// The settings that differ.
        differences: Differences,
    },
    /// The folder holds frames but no `job.toml` saying whose they are.
    #[error(
        "{path} holds frames but no job.toml saying which job made them, so they cannot be resumed. Fix: put its job.toml back, or render into another --name/--output (dreamfarm never deletes frames)"
    )]
    UnknownJob {
        /// The folder.
        path: PathBuf,
    },
    /// The folder holds more frames than the command asks for.
    #[error(
        "{path} already holds {done} frames of this job, more than the {asked} asked for, and dreamfarm never deletes frames. Fix: pass --frames {done} (or more) to keep them, or render into another --name/--output"
    )]
    MoreFrames {
        /// The folder.
        path: PathBuf,
        /// Frames on disk.
        done: u64,
        /// Frames the command asks for.
        asked: u64,
    },
    /// `job.toml` is unreadable.
    #[error(
        "{path} is not a dreamfarm job file: {reason}. Fix: render into another --name/--output (dreamfarm never deletes frames)"
    )]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// Writing a frame failed (a full disk, say); the frames before it
    /// are whole, so running the command again continues from this one.
    #[error(
        "cannot write frame {path}: {reason}. The frames before it are complete. Fix: make room on that disk (or fix what the error names), then run the same command again: it continues from this frame"
    )]
    Frame {
        /// The frame file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A frame on disk cannot be read back.
    #[error(
        "cannot read frame {path}: {reason}. Fix: delete it and the frames after it, then run the same command: they are made again"
    )]
    Unreadable {
        /// The frame file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process is rendering or fetching into the folder.
    #[error(
        "another dreamfarm render or fetch is writing into {path} (it holds {LOCK_FILE} there). Fix: wait for it to end or stop it, then run this command again; or write into another --name/--output"
    )]
    Busy {
        /// The folder.
        path: PathBuf,
    },
    /// The job names a file by a path its job file cannot hold.
    #[error("{path} cannot record this job: {reason}")]
    Unrecordable {
        /// The folder.
        path: PathBuf,
        /// Which path, and what to do.
        reason: ParamError,
    },
    /// The thread writing frames ended without saying why (it panicked).
    #[error(
        "the frame writing thread stopped unexpectedly; the frames on disk are complete, resume the render"
    )]
    WriterGone,
}

/// The output folder of one job.
#[derive(Debug, Clone)]
pub struct OutputDir {
    dir: PathBuf,
}

/// The job file of a frames folder: the settings that made its frames.
pub const MANIFEST: &str = "job.toml";

/// The file a render holds locked while it writes into its folder.
const LOCK_FILE: &str = ".dreamfarm.lock";

/// A render's claim on its output folder: while it is held, another
/// render of the same folder stops at once instead of computing the same
/// frames, deleting the other's half-written ones and racing it for the
/// video. The lock goes with the process, however it ends; a render that
/// ends removes the file too, leaving only frames, job.toml, the record of
/// the files they were made from (`sources.sha256`) and video.
#[derive(Debug)]
pub struct FolderLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FolderLock {
    /// Creates `dir` if needed and claims it.
    pub fn claim(dir: &Path) -> Result<Self, OutputError> {
        use std::os::unix::fs::MetadataExt;
        let unwritable = |source| OutputError::Unwritable {
            path: dir.to_path_buf(),
            source,
        };
        crate::folder::create(dir).map_err(unwritable)?;
        let path = dir.join(LOCK_FILE);
        loop {
            let file = std::fs::File::create(&path).map_err(unwritable)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OutputError::Busy {
                        path: dir.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(unwritable(source)),
            }
            // A render that just ended removed the file this one locked:
            // the claim must be on the file that is there now.
            let locked = file.metadata().map_err(unwritable)?.ino();
            if std::fs::metadata(&path).is_ok_and(|m| m.ino() == locked) {
                return Ok(Self { file, path });
            }
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other render can hold it then.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Name prefix of frames being written.
const PARTIAL_PREFIX: &str = ".frame-";

impl OutputDir {
    /// Opens (creating) `dir` for `spec`: a new folder gets `spec` as its
    /// manifest; an existing one must hold the same job, except that the
    /// frame count may grow (extending a finished video).
    pub fn open(dir: &Path, spec: &JobSpec) -> Result<Self, OutputError> {
        Self::check_job(dir, spec, FileMatch::SameFile)?;
        Self::open_checked(dir, spec)
    }

    /// [`OutputDir::open`] for a job [`OutputDir::check_job`] has just
    /// passed (`FileMatch::SameFile`), for a caller with checks of its own
    /// to make between the two (a render's source files).
    pub fn open_checked(dir: &Path, spec: &JobSpec) -> Result<Self, OutputError> {
        spec.check_paths_are_text()
            .map_err(|reason| OutputError::Unrecordable {
                path: dir.to_path_buf(),
                reason,
            })?;
        let unwritable = |source| OutputError::Unwritable {
            path: dir.to_path_buf(),
            source,
        };
        crate::folder::create(dir).map_err(unwritable)?;
        let out = Self {
            dir: dir.to_path_buf(),
        };
        let done = out.frames_done();
        if done > u64::from(spec.frames) {
            return Err(OutputError::MoreFrames {
                path: dir.to_path_buf(),
                done,
                asked: u64::from(spec.frames),
            });
        }
        out.remove_partial_frames();
        let mut manifest_spec = spec.clone();
        manifest_spec.map_paths(|path| portable(dir, path));
        let text = toml::to_string(&manifest_spec)
            .expect("a job spec whose paths are text serialises, and portable keeps them text");
        // On disk before it has its name, as the frames are: after a power
        // cut the frames are never left beside an empty job.toml.
        crate::whole_file::replace(dir, MANIFEST, text.as_bytes()).map_err(unwritable)?;
        Ok(out)
    }

    /// Checks that the folder `dir` may take `spec`'s frames: it holds no
    /// frames, or frames its job file says are the same job's (the frame
    /// count aside; the files both name compared as `files` says). Reads
    /// only.
    pub fn check_job(dir: &Path, spec: &JobSpec, files: FileMatch) -> Result<(), OutputError> {
        let out = Self::existing(dir);
        let manifest = dir.join(MANIFEST);
        if manifest.exists() {
            let text =
                std::fs::read_to_string(&manifest).map_err(|source| OutputError::Unwritable {
                    path: dir.to_path_buf(),
                    source,
                })?;
            let old: JobSpec = toml::from_str(&text).map_err(|e| OutputError::BadManifest {
                path: manifest.clone(),
                reason: e.to_string(),
            })?;
            if let Some(differences) = difference(dir, &old, spec, files) {
                // A job that stopped before its first frame (a typo in a
                // setting, Ctrl-C) left nothing to lose: the corrected
                // command takes the folder over.
                if out.holds_frames() {
                    return Err(OutputError::DifferentJob {
                        path: dir.to_path_buf(),
                        differences,
                    });
                }
                tracing::info!(folder = %dir.display(), differences = %differences.against("this job"), "the folder's job made no frames; this one replaces it");
            }
        } else if out.holds_frames() {
            return Err(OutputError::UnknownJob {
                path: dir.to_path_buf(),
            });
        }
        Ok(())
    }

    /// The folder `dir` as it is, to count its frames (nothing is checked or
    /// written).
    pub fn existing(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The name of the folder's video, `NAME.mp4`, when it holds one and
    /// only one video with a job's name: a render continuing the folder
    /// continues that video rather than starting a second one.
    pub fn video_name(&self) -> Option<String> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
        let mut names = entries.filter_map(Result::ok).filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".mp4")?;
            check_job_name(stem).is_ok().then(|| stem.to_string())
        });
        let name = names.next()?;
        names.next().is_none().then_some(name)
    }

    /// Whether any frame is in the folder, counting those after a gap.
    fn holds_frames(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".png")
                .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    /// Removes the temporary files of frames a killed render left half
    /// written (they never have a frame's name, so nothing else is lost).
    fn remove_partial_frames(&self) {
        crate::whole_file::remove_leftovers(&self.dir, PARTIAL_PREFIX, "");
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of frame `n`.
    pub fn frame_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:06}.png"))
    }

    /// The ffmpeg input pattern of the frames.
    pub fn frame_pattern(&self) -> PathBuf {
        self.dir.join("%06d.png")
    }

    /// Frames `0..n` that exist without a gap.
    pub fn frames_done(&self) -> u64 {
        (0..).take_while(|&n| self.frame_path(n).exists()).count() as u64
    }

    /// Writes frame `n` (8-bit RGB), never replacing an existing one.
    pub fn write_frame(
        &self,
        n: u64,
        width: u32,
        height: u32,
        rgb: &[u8],
    ) -> Result<(), OutputError> {
        let path = self.frame_path(n);
        let fail = |reason: String| OutputError::Frame {
            path: path.clone(),
            reason,
        };
        if path.exists() {
            return Err(fail(
                "it already exists and frames are never overwritten".into(),
            ));
        }
        if rgb.len() as u64 != 3 * u64::from(width) * u64::from(height) {
            return Err(fail("wrong pixel count".into()));
        }
        let tmp = crate::whole_file::temp_file_in(&self.dir, PARTIAL_PREFIX, ".png")
            .map_err(|e| fail(e.to_string()))?;
        image::save_buffer_with_format(
            tmp.path(),
            rgb,
            width,
            height,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| fail(e.to_string()))?;
        // On disk before it has its name: a frame that exists is complete
        // even after a power cut.
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        tmp.persist_noclobber(&path)
            .map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    }

    /// Frame `n` as written: `width`×`height` 8-bit RGB.
    pub fn read_frame(&self, n: u64, width: u32, height: u32) -> Result<Vec<u8>, OutputError> {
        let path = self.frame_path(n);
        let fail = |reason: String| OutputError::Unreadable {
            path: path.clone(),
            // The message goes on with ". Fix: …"; the image crate's
            // reasons end with their own full stop.
            reason: reason.trim_end_matches('.').to_string(),
        };
        let rgb = image::open(&path)
            .map_err(|e| fail(e.to_string()))?
            .to_rgb8();
        if rgb.dimensions() != (width, height) {
            return Err(fail(format!(
                "it is {}x{}, the job's frames are {width}x{height}",
                rgb.width(),
                rgb.height()
            )));
        }
        Ok(rgb.into_raw())
    }
}

/// How the files a folder's job file names are matched with a job's
/// (the input, guide, colour reference, weights, TorchScript model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMatch {
    /// The same path, or the same file on disk: a job file's relative
    /// paths are read from its folder first (where a fetched job keeps its
    /// files and this release writes them), then from the working
    /// directory (where earlier releases left them).
    SameFile,
    /// As [`FileMatch::SameFile`], or the same file name where either file
    /// is missing: a fetch compares the job file a coordinator sends (its
    /// files named as they arrive beside it) with the one an earlier
    /// release's fetch wrote (the coordinator's own paths).
    SameFileOrName,
}

/// The settings in which the job `new` (its paths relative to the working
/// directory) differs from `old`, the job file of the folder `dir`, other
/// than the frame count; `None` when it is the same job.
fn difference(dir: &Path, old: &JobSpec, new: &JobSpec, files: FileMatch) -> Option<Differences> {
    let mut new_paths = new.paths().into_iter();
    // Files that match take the new job's paths; any other difference,
    // a file named in one and not the other included, stays.
    let mut old = old.clone();
    old.map_paths(|path| match new_paths.next() {
        Some(named) if same_file(dir, path, &named, files) => named,
        _ => path.to_path_buf(),
    });
    old.frames = new.frames;
    if old == *new {
        return None;
    }
    let as_toml = |spec: &JobSpec| toml::Value::try_from(spec).ok();
    let mut differences = Differences::default();
    if let (Some(a), Some(b)) = (as_toml(&old), as_toml(new)) {
        differing_keys("", Some(&a), Some(&b), &mut differences.0);
    }
    Some(differences)
}

/// The settings in which a folder's job and another differ, each as its
/// job file's dotted key with the folder's value and the other's: the
/// user learns which flag to change, and to what.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Differences(Vec<(String, String, String)>);

impl Differences {
    /// For people, the other job called `other` ("this command"): up to
    /// three settings with both values, then how many more.
    pub fn against(&self, other: &str) -> String {
        const SHOWN: usize = 3;
        if self.0.is_empty() {
            // Equal as TOML, unequal as settings: not expected; still said.
            return format!("its settings differ from {other}'s");
        }
        let mut said: Vec<String> = self
            .0
            .iter()
            .take(SHOWN)
            .map(|(key, folder, theirs)| {
                format!("{key}: {folder} in the folder's job, {theirs} in {other}")
            })
            .collect();
        if self.0.len() > SHOWN {
            said.push(format!("{} more", self.0.len() - SHOWN));
        }
        said.join("; ")
    }
}

/// Each setting (a job file's dotted key, in key order) whose value differs
/// between the folder's job `a` and another `b`, with both values.
fn differing_keys(
    key: &str,
    a: Option<&toml::Value>,
    b: Option<&toml::Value>,
    out: &mut Vec<(String, String, String)>,
) {
    match (a, b) {
        (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for k in keys {
                let dotted = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                differing_keys(&dotted, a.get(k), b.get(k), out);
            }
        }
        _ if a != b => {
            let shown = |v: Option<&toml::Value>| v.map_or("unset".into(), ToString::to_string);
            out.push((key.to_string(), shown(a), shown(b)));
        }
        _ => {}
    }
}

/// Whether `old`, a path in the job file of the folder `dir`, and `new`,
/// one relative to the working directory, name the same file (see
/// [`FileMatch`]). Files on disk are compared as files: the same relative
/// path read from the folder and from the working directory may name two,
/// and a copy of the file at another path (the input moved, the weights
/// on another disk) renders the same frames.
fn same_file(dir: &Path, old: &Path, new: &Path, files: FileMatch) -> bool {
    let old_file = [dir.join(old), old.to_path_buf()]
        .iter()
        .find_map(|p| std::fs::canonicalize(p).ok());
    match (old_file, std::fs::canonicalize(new).ok()) {
        (Some(a), Some(b)) => a == b || same_bytes(&a, &b),
        _ => {
            old == new || (files == FileMatch::SameFileOrName && old.file_name() == new.file_name())
        }
    }
}

/// Whether the files `a` and `b` hold the same bytes, read block by block
/// (a model's weights run to hundreds of megabytes); a file that cannot be
/// read is not the same.
fn same_bytes(a: &Path, b: &Path) -> bool {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    match (size(a), size(b)) {
        (Some(x), Some(y)) if x == y => {}
        _ => return false,
    }
    let (Ok(mut a), Ok(mut b)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let read = |f: &mut std::fs::File, block: &mut Vec<u8>| {
        block.clear();
        f.by_ref().take(COMPARE_BLOCK).read_to_end(block)
    };
    let (mut block_a, mut block_b) = (Vec::new(), Vec::new());
    loop {
        match (read(&mut a, &mut block_a), read(&mut b, &mut block_b)) {
            (Ok(0), Ok(0)) => return true,
            (Ok(_), Ok(_)) if block_a == block_b => {}
            _ => return false,
        }
    }
}

/// Bytes [`same_bytes`] compares at a time.
const COMPARE_BLOCK: u64 = 1 << 20;

/// How the job file of the folder `dir` names `path`, a file a command
/// named: relative to the folder when the file is inside it (a fetched
/// job's input, say, so the folder can move), otherwise absolute, so that
/// `render --job DIR/job.toml` finds it from any working directory. A
/// path that names no file stays as it is. A job file holds only UTF-8, so
/// a file reached through a link into a folder whose name is not is named
/// by the link (as the command gave it where even that is not text).
pub(crate) fn portable(dir: &Path, path: &Path) -> PathBuf {
    let (Ok(file), Ok(dir)) = (std::fs::canonicalize(path), std::fs::canonicalize(dir)) else {
        return path.to_path_buf();
    };
    [Ok(file), std::path::absolute(path)]
        .into_iter()
        .flatten()
        .map(|file| {
            file.strip_prefix(&dir)
                .map(Path::to_path_buf)
                .unwrap_or(file)
        })
        .find(|named| named.to_str().is_some())
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder holding `files` (empty), and a job file naming `input`.
    fn folder(files: &[&str], input: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("frames");
        std::fs::create_dir(&dir).expect("folder");
        for file in files {
            std::fs::write(dir.join(file), b"").expect("file");
        }
        let old = JobSpec::new(input.into(), 3);
        std::fs::write(dir.join(MANIFEST), toml::to_string(&old).expect("toml")).expect("job");
        std::fs::write(dir.join("000000.png"), b"").expect("frame");
        (tmp, dir)
    }

    #[test]
    fn a_frame_reads_back_as_written_and_is_never_overwritten() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let out = OutputDir {
            dir: tmp.path().to_path_buf(),
        };
        let (width, height) = (97, 61);
        // Every byte its own, as in a dreamed frame's fine texture (xorshift).
        let mut x = 0x2545_f491_u32;
        let rgb: Vec<u8> = (0..3 * width * height)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        out.write_frame(0, width, height, &rgb).expect("written");
        assert_eq!(out.read_frame(0, width, height).expect("read"), rgb);
        assert!(
            out.write_frame(0, width, height, &[0; 3 * 97 * 61])
                .is_err()
        );
        assert_eq!(out.read_frame(0, width, height).expect("read"), rgb);
    }

    fn check(dir: &Path, input: &Path, files: FileMatch) -> Result<(), OutputError> {
        OutputDir::check_job(dir, &JobSpec::new(input.to_path_buf(), 5), files)
    }

    #[test]
    fn another_jobs_folder_is_refused_naming_each_setting_that_differs() {
        use dreamfarm_common::params::DreamSettings;
        let (_tmp, dir) = folder(&["input.png"], "input.png");
        let mut spec = JobSpec::new(dir.join("input.png"), 5);
        spec.seed = 4;
        spec.dream.octaves = 2;
        let said = OutputDir::check_job(&dir, &spec, FileMatch::SameFile)
            .expect_err("another job")
            .to_string();
        assert!(
            said.contains(
                "(dream.octaves: 4 in the folder's job, 2 in this command; seed: 0 in the folder's job, 4 in this command)"
            ),
            "{said}"
        );
        // Settings set in one and not the other, and a long list cut short.
        spec.size = Some([64, 48]);
        spec.dream.jitter = 3.0.into();
        spec.dream.tile_size = 512;
        let said = OutputDir::check_job(&dir, &spec, FileMatch::SameFile)
            .expect_err("another job")
            .to_string();
        assert!(said.contains("; 2 more)"), "{said}");
        spec.dream.octaves = 4;
        spec.dream.jitter = DreamSettings::default().jitter;
        spec.dream.tile_size = DreamSettings::default().tile_size;
        let said = OutputDir::check_job(&dir, &spec, FileMatch::SameFile)
            .expect_err("another job")
            .to_string();
        assert!(
            said.contains("(seed: 0 in the folder's job, 4 in this command; size: unset in the folder's job, [64, 48] in this command)"),
            "{said}"
        );
    }

    #[test]
    fn a_job_file_names_files_beside_it_by_name_and_others_by_their_whole_path() {
        let (tmp, dir) = folder(&["input.png"], "input.png");
        std::fs::write(tmp.path().join("mine.png"), b"").expect("file");
        let inside = portable(&dir, &dir.join("input.png"));
        assert_eq!(inside, Path::new("input.png"));
        let outside = portable(&dir, &dir.join("../mine.png"));
        assert!(outside.is_absolute() && outside.ends_with("mine.png"));
        assert!(!outside.to_string_lossy().contains(".."), "{outside:?}");
        // No such file: as the command named it (the render then says so).
        assert_eq!(portable(&dir, Path::new("gone.png")), Path::new("gone.png"));
    }

    /// A path whose bytes are not UTF-8 (Linux allows any but `/` and NUL).
    fn not_text(path: &Path, name: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        path.join(std::ffi::OsStr::from_bytes(name))
    }

    #[test]
    fn a_job_naming_a_path_that_is_not_text_is_refused_before_the_folder_is_made() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let input = not_text(tmp.path(), b"a\xffb.png");
        std::fs::write(&input, b"").expect("file");
        let dir = tmp.path().join("frames");
        let Err(refused) = OutputDir::open(&dir, &JobSpec::new(input, 5)) else {
            panic!("a path that is not text was taken");
        };
        let said = refused.to_string();
        assert!(said.contains(r#"a\xFFb.png" is not UTF-8 text"#), "{said}");
        assert!(said.contains("Fix: rename the file"), "{said}");
        assert!(!dir.exists(), "a refused job left its folder behind");
    }

    #[test]
    fn a_file_reached_through_a_name_that_is_not_text_keeps_a_text_path() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let odd = not_text(tmp.path(), b"\xff");
        std::fs::create_dir(&odd).expect("folder");
        std::fs::write(odd.join("photo.png"), b"").expect("file");
        let link = tmp.path().join("photo.png");
        std::os::unix::fs::symlink(odd.join("photo.png"), &link).expect("link");
        let dir = tmp.path().join("frames");
        let out = OutputDir::open(&dir, &JobSpec::new(link.clone(), 5)).expect("opens");
        let recorded = std::fs::read_to_string(out.dir().join(MANIFEST)).expect("job file");
        let old: JobSpec = toml::from_str(&recorded).expect("a job file");
        assert_eq!(old.input, link);
        // Inside the folder, through a link, it is still named by its name.
        std::os::unix::fs::symlink(odd.join("photo.png"), dir.join("input.png")).expect("link");
        assert_eq!(
            portable(&dir, &dir.join("input.png")),
            Path::new("input.png")
        );
    }

    #[test]
    fn a_folder_takes_a_job_naming_the_same_files_by_any_path() {
        let (tmp, dir) = folder(&["input.png"], "input.png");
        // Relative to the folder's job file, named from anywhere.
        for same in [
            dir.join("input.png"),
            tmp.path().join("frames/../frames/input.png"),
        ] {
            check(&dir, &same, FileMatch::SameFile).expect("the same file");
        }
        // Another file of the same name is another input, unless it holds
        // the same bytes: a copy renders the same frames.
        std::fs::write(tmp.path().join("input.png"), b"").expect("file");
        for files in [FileMatch::SameFile, FileMatch::SameFileOrName] {
            check(&dir, &tmp.path().join("input.png"), files).expect("a copy");
        }
        std::fs::write(tmp.path().join("input.png"), b"other").expect("file");
        for files in [FileMatch::SameFile, FileMatch::SameFileOrName] {
            let other = check(&dir, &tmp.path().join("input.png"), files);
            assert!(
                matches!(&other, Err(OutputError::DifferentJob { differences, .. })
                    if differences.against("it").starts_with("input: ")),
                "{other:?}"
            );
        }
        // So is the same relative path read from the working directory (a
        // test's is its package's folder, which holds a Cargo.toml).
        std::fs::write(dir.join("Cargo.toml"), b"").expect("file");
        let relative = Path::new("Cargo.toml");
        assert!(relative.is_file(), "the tests run in the package's folder");
        assert!(!same_file(&dir, relative, relative, FileMatch::SameFile));
        assert!(same_file(
            &dir,
            relative,
            &dir.join(relative),
            FileMatch::SameFile
        ));
    }

    #[test]
    fn files_are_the_same_when_every_block_is() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = |name: &str, bytes: &[u8]| {
            let path = tmp.path().join(name);
            std::fs::write(&path, bytes).expect("file");
            path
        };
        let bytes: Vec<u8> = (0..3 * COMPARE_BLOCK as usize + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let a = file("a", &bytes);
        assert!(same_bytes(&a, &file("copy", &bytes)));
        let mut last = bytes.clone();
        *last.last_mut().expect("bytes") ^= 1;
        assert!(!same_bytes(&a, &file("last byte", &last)));
        assert!(!same_bytes(&a, &file("shorter", &bytes[1..])));
        assert!(!same_bytes(&a, &tmp.path().join("missing")));
    }

    #[test]
    fn a_fetch_matches_files_missing_here_by_name() {
        // An earlier fetch's job file names the coordinator's path.
        let (_tmp, dir) = folder(&[], "/srv/dreamfarm/data/trip-1/input.png");
        let arriving = dir.join("input.png");
        check(&dir, &arriving, FileMatch::SameFileOrName).expect("the same name");
        let render = check(&dir, &arriving, FileMatch::SameFile);
        assert!(
            matches!(render, Err(OutputError::DifferentJob { .. })),
            "{render:?}"
        );
        let renamed = check(&dir, &dir.join("other.png"), FileMatch::SameFileOrName);
        assert!(
            matches!(renamed, Err(OutputError::DifferentJob { .. })),
            "{renamed:?}"
        );
    }

    #[test]
    fn a_folder_names_its_video_when_it_holds_one() {
        let (_tmp, dir) = folder(&[".trip.000500.segment.mp4", "notes.txt"], "input.png");
        let out = OutputDir::existing(&dir);
        assert_eq!(out.video_name(), None);
        std::fs::write(dir.join("trip.mp4"), b"").expect("video");
        assert_eq!(out.video_name().as_deref(), Some("trip"));
        std::fs::write(dir.join("other.mp4"), b"").expect("video");
        assert_eq!(out.video_name(), None, "two videos name no one");
    }
}
