//! The output folder of a render: numbered PNG frames written atomically, the
//! job they belong to (`job.toml`), and where a resumed render continues.
//!
//! A frame file exists only once it is complete (temporary file + rename),
//! so after a crash every frame on disk is good and the render resumes after
//! the last one. Frames are never overwritten.

use std::path::{Path, PathBuf};

use dreamfarm_common::params::JobSpec;

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
        "{path} holds frames of a different job ({what} differs from this command). Fix: re-run with the job's original settings to resume it, or render into another --name/--output"
    )]
    DifferentJob {
        /// The folder.
        path: PathBuf,
        /// The setting that differs.
        what: String,
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
/// ends removes the file too, leaving only frames, job.toml and video.
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
        std::fs::create_dir_all(dir).map_err(unwritable)?;
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
        let unwritable = |source| OutputError::Unwritable {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(unwritable)?;
        Self::check_job(dir, spec)?;
        let out = Self {
            dir: dir.to_path_buf(),
        };
        let manifest = dir.join(MANIFEST);
        let done = out.frames_done();
        if done > u64::from(spec.frames) {
            return Err(OutputError::MoreFrames {
                path: dir.to_path_buf(),
                done,
                asked: u64::from(spec.frames),
            });
        }
        out.remove_partial_frames();
        let text = toml::to_string(spec).expect("a job spec always serialises");
        out.write_atomically(&manifest, text.as_bytes())
            .map_err(unwritable)?;
        Ok(out)
    }

    /// Checks that the folder `dir` may take `spec`'s frames: it holds no
    /// frames, or frames its job file says are the same job's (the frame
    /// count aside). Reads only.
    pub fn check_job(dir: &Path, spec: &JobSpec) -> Result<(), OutputError> {
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
            if let Some(what) = difference(&old, spec) {
                // A job that stopped before its first frame (a typo in a
                // setting, Ctrl-C) left nothing to lose: the corrected
                // command takes the folder over.
                if out.holds_frames() {
                    return Err(OutputError::DifferentJob {
                        path: dir.to_path_buf(),
                        what,
                    });
                }
                tracing::info!(folder = %dir.display(), %what, "the folder's job made no frames; this one replaces it");
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

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut tmp = crate::whole_file::temp_file_in(&self.dir, ".job-", ".toml")?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        // On disk before it has its name, as the frames are: after a power
        // cut the frames are never left beside an empty job.toml.
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The first setting in which two jobs differ, other than the frame count.
fn difference(old: &JobSpec, new: &JobSpec) -> Option<String> {
    let same_but_frames = JobSpec {
        frames: new.frames,
        ..old.clone()
    };
    if same_but_frames == *new {
        return None;
    }
    let fields = [
        ("input", old.input != new.input),
        ("seed", old.seed != new.seed),
        ("size", old.size != new.size),
        ("the dream settings", old.dream != new.dream),
        ("the zoom settings", old.zoom != new.zoom),
        ("the colour settings", old.color != new.color),
        ("the video settings", old.video != new.video),
    ];
    fields.iter().find(|(_, d)| *d).map(|(n, _)| n.to_string())
}
