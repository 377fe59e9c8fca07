//! The files a render folder's frames were made from (input, guide, colour
//! reference, weights, TorchScript model), recorded beside them by SHA-256
//! in `sources.sha256`.
//!
//! The folder's job file names those files by path, and a path names the
//! same file after it has been edited in place (a retouched photo saved
//! over the old one, other weights downloaded to the same name). Resuming
//! then would continue frames made from the old contents with frames made
//! from the new ones; the recorded digests show the change, so the render
//! stops and says so instead. The record is in `sha256sum`'s format, its
//! paths as the job file names them: `sha256sum -c sources.sha256` in the
//! folder checks it too.

use std::path::{Path, PathBuf};

use dreamfarm_common::digest::{is_sha256_hex, sha256_hex};
use dreamfarm_common::params::JobSpec;

use crate::output::{OutputDir, portable};

/// The record's file name in a render folder.
pub const SOURCES: &str = "sources.sha256";

/// Why a render may not go on with the files its job names.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file holds other bytes than when the folder's frames were made.
    #[error(
        "{file} has changed since the frames in {folder} were made from it ({done} of them; its SHA-256 is {now}, {SOURCES} there records {then}), so frames made from it now would not follow from them. Fix: put back the file the render began with to continue it, or render the changed file into another --name/--output (dreamfarm never deletes frames)"
    )]
    Changed {
        /// The file, as this command names it.
        file: PathBuf,
        /// The render folder.
        folder: PathBuf,
        /// Frames in the folder.
        done: u64,
        /// Its SHA-256 now.
        now: String,
        /// The SHA-256 recorded when the frames were made.
        then: String,
    },
    /// The record cannot be read as one.
    #[error(
        "{path} is damaged: {reason}. Fix: delete it if the files the job names are the ones its frames were made from (the render then records them again), or render into another --name/--output"
    )]
    Damaged {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The record cannot be written.
    #[error(
        "cannot write {path}: {source}. Fix: make room on that disk or make the folder writable, then run the same command again: it continues after the last frame"
    )]
    Unwritable {
        /// The record.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The files a render is about to make frames from, checked against the
/// folder's record and to be recorded once the folder is open.
#[derive(Debug)]
pub struct Sources {
    /// The files with their SHA-256, or none when one cannot be read.
    files: Option<Vec<(PathBuf, String)>>,
    /// The record as it was.
    old: Option<Vec<u8>>,
}

impl Sources {
    /// Checks that the files `spec` names hold the bytes the frames in the
    /// folder `dir` were made from, as recorded beside them; reads only.
    /// The folder must hold no frames or the same job's
    /// ([`OutputDir::check_job`]), so the record and the job list the same
    /// files in one order.
    ///
    /// A folder without frames takes the files as they are, and one whose
    /// render predates the record has them recorded from now on. When a
    /// file cannot be read nothing is checked or recorded: the render reads
    /// the files next and says which is missing.
    pub fn check(dir: &Path, spec: &JobSpec) -> Result<Self, SourceError> {
        let files: std::io::Result<Vec<_>> = spec
            .paths()
            .into_iter()
            .map(|p| Ok((p.clone(), sha256_hex(std::fs::File::open(&p)?)?)))
            .collect();
        let Ok(files) = files else {
            return Ok(Self {
                files: None,
                old: None,
            });
        };
        let record = dir.join(SOURCES);
        let old = match std::fs::read(&record) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(damaged(&record, e.to_string())),
        };
        let done = OutputDir::existing(dir).frames_done();
        if let (Some(old), true) = (&old, done > 0) {
            let recorded = recorded_digests(old).map_err(|reason| damaged(&record, reason))?;
            if recorded.len() != files.len() {
                return Err(damaged(
                    &record,
                    format!(
                        "it lists {} files where the job names {}",
                        recorded.len(),
                        files.len()
                    ),
                ));
            }
            let changed = files
                .iter()
                .zip(recorded)
                .find(|((_, now), then)| now != then);
            if let Some(((file, now), then)) = changed {
                return Err(SourceError::Changed {
                    file: file.clone(),
                    folder: dir.to_path_buf(),
                    done,
                    now: now.clone(),
                    then,
                });
            }
        }
        Ok(Self {
            files: Some(files),
            old,
        })
    }

    /// Records the files in `out`, the folder opened for the job
    /// ([`OutputDir::open_checked`]), named as its job file names them; a record
    /// that says the same already is left as it is.
    pub fn record(&self, out: &OutputDir) -> Result<(), SourceError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let dir = out.dir();
        let text: String = files
            .iter()
            .map(|(path, digest)| sha256sum_line(digest, &portable(dir, path)))
            .collect();
        if self.old.as_deref() == Some(text.as_bytes()) {
            return Ok(());
        }
        crate::whole_file::replace(dir, SOURCES, text.as_bytes()).map_err(|source| {
            SourceError::Unwritable {
                path: dir.join(SOURCES),
                source,
            }
        })
    }
}

/// The record at `path` is damaged, `reason` saying how.
fn damaged(path: &Path, reason: String) -> SourceError {
    SourceError::Damaged {
        path: path.to_path_buf(),
        reason,
    }
}

/// `sha256sum`'s line for `path`: a name holding a newline or a backslash
/// has them escaped and the line marked with a leading backslash, as GNU
/// coreutils writes and reads it.
fn sha256sum_line(digest: &str, path: &Path) -> String {
    let name = path.to_string_lossy();
    if name.contains(['\\', '\n']) {
        let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{digest}  {escaped}\n")
    } else {
        format!("{digest}  {name}\n")
    }
}

/// The digests of a record, in its order.
fn recorded_digests(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not text".to_string())?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_prefix('\\').unwrap_or(line);
            match line.split_once("  ") {
                Some((digest, name)) if is_sha256_hex(digest) && !name.is_empty() => {
                    Ok(digest.to_string())
                }
                _ => Err(format!(
                    "line {} is not a SHA-256 and a file name: {line:?}",
                    i + 1
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::FileMatch;

    /// A render folder in a temporary folder, opened for a job whose input
    /// is `photo.png` there.
    struct Folder {
        tmp: tempfile::TempDir,
        input: PathBuf,
        out: OutputDir,
        spec: JobSpec,
    }

    impl Folder {
        /// The folder, its input holding `bytes`, with `frames` (empty)
        /// frames.
        fn new(bytes: &[u8], frames: u64) -> Self {
            let tmp = tempfile::tempdir().expect("temp dir");
            let input = tmp.path().join("photo.png");
            let spec = JobSpec::new(input.clone(), 10);
            let out = OutputDir::open(&tmp.path().join("frames"), &spec).expect("folder opens");
            let folder = Self {
                tmp,
                input,
                out,
                spec,
            };
            folder.edit(bytes);
            folder.frames(frames);
            folder
        }

        /// Writes the input.
        fn edit(&self, bytes: &[u8]) {
            std::fs::write(&self.input, bytes).expect("input");
        }

        /// Makes frames `0..n`.
        fn frames(&self, n: u64) {
            for n in 0..n {
                std::fs::write(self.out.frame_path(n), b"").expect("frame");
            }
        }

        /// What a render does: check the job, then its files, open the
        /// folder, record.
        fn check_and_record(&self) -> Result<(), SourceError> {
            OutputDir::check_job(self.out.dir(), &self.spec, FileMatch::SameFile)
                .expect("the same job");
            let sources = Sources::check(self.out.dir(), &self.spec)?;
            OutputDir::open_checked(self.out.dir(), &self.spec).expect("the folder opens");
            sources.record(&self.out)
        }

        fn record(&self) -> String {
            std::fs::read_to_string(self.out.dir().join(SOURCES)).expect("the record")
        }
    }

    #[test]
    fn a_file_changed_in_place_stops_the_resumed_render_until_it_is_put_back() {
        let f = Folder::new(b"the photo the frames were made from", 0);
        f.check_and_record().expect("a new folder takes its files");
        f.frames(2);
        f.check_and_record().expect("the same bytes go on");

        f.edit(b"the photo retouched, saved over it");
        let before = f.record();
        let error = f.check_and_record().expect_err("a changed input went on");
        assert!(
            matches!(&error, SourceError::Changed { file, done: 2, .. } if *file == f.input),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("photo.png has changed since the frames in"),
            "{message}"
        );
        assert!(
            message.contains("put back the file the render began with"),
            "{message}"
        );
        assert_eq!(f.record(), before, "the record took the changed file");

        f.edit(b"the photo the frames were made from");
        f.check_and_record().expect("the file put back goes on");
    }

    #[test]
    fn a_copy_at_another_path_is_the_same_source_and_the_record_names_it() {
        let mut f = Folder::new(b"pixels", 0);
        f.check_and_record().expect("recorded");
        f.frames(1);

        let copy = f.tmp.path().join("frames").join("photo.png");
        std::fs::copy(&f.input, &copy).expect("copied into the folder");
        f.spec = JobSpec::new(copy, 10);
        f.check_and_record().expect("the same bytes");
        let digest = sha256_hex(&b"pixels"[..]).expect("digest");
        assert_eq!(f.record(), format!("{digest}  photo.png\n"));
    }

    #[test]
    fn without_frames_or_a_record_the_files_are_taken_as_they_are() {
        let f = Folder::new(b"first", 0);
        f.check_and_record().expect("recorded");
        f.edit(b"second");
        f.check_and_record()
            .expect("no frame was made from the first");
        assert!(
            f.record()
                .starts_with(&sha256_hex(&b"second"[..]).expect("digest"))
        );

        // Frames an earlier release made, which recorded nothing: recorded
        // from now on.
        std::fs::remove_file(f.out.dir().join(SOURCES)).expect("no record");
        f.frames(1);
        f.check_and_record().expect("nothing to compare with");
        f.edit(b"third");
        assert!(matches!(
            f.check_and_record(),
            Err(SourceError::Changed { .. })
        ));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_left_to_the_render_to_name() {
        let f = Folder::new(b"pixels", 1);
        f.check_and_record().expect("recorded");
        let before = f.record();
        std::fs::remove_file(&f.input).expect("gone");
        f.check_and_record().expect("left to the render");
        assert_eq!(f.record(), before);
    }

    #[test]
    fn a_damaged_record_is_named_with_what_to_do() {
        let f = Folder::new(b"pixels", 1);
        let digest = sha256_hex(&b"pixels"[..]).expect("digest");
        for (bytes, reason) in [
            (
                b"not a digest  photo.png\n".to_vec(),
                "line 1 is not a SHA-256",
            ),
            (
                format!("{digest} photo.png\n").into_bytes(),
                "line 1 is not",
            ),
            (
                format!("{digest}  a.png\n{digest}  b.png\n").into_bytes(),
                "it lists 2 files where the job names 1",
            ),
            (vec![0xff, 0xfe], "it is not text"),
        ] {
            let record = f.out.dir().join(SOURCES);
            std::fs::write(&record, &bytes).expect("damage");
            let error = f.check_and_record().expect_err("a damaged record passed");
            let message = error.to_string();
            assert!(message.contains(reason), "{message}");
            assert!(message.contains("Fix: delete it"), "{message}");
            assert_eq!(std::fs::read(&record).expect("kept"), bytes);
        }
    }

    #[test]
    fn names_are_escaped_as_sha256sum_writes_them() {
        let digest = "0".repeat(64);
        assert_eq!(
            sha256sum_line(&digest, Path::new("a b.png")),
            format!("{digest}  a b.png\n")
        );
        let odd = sha256sum_line(&digest, Path::new("a\\b\nc.png"));
        assert_eq!(odd, format!("\\{digest}  a\\\\b\\nc.png\n"));
        assert_eq!(recorded_digests(odd.as_bytes()), Ok(vec![digest]));
    }
}
