//! `dreamfarm fetch`: a job's frames, job file, video and uploaded files
//! (input, guide, colour reference, weights) into a folder, which then
//! holds all `dreamfarm render --job FOLDER/job.toml` needs to continue it.
//! Files the folder already holds as they are on the coordinator are not
//! sent again (same size and modification time; a fetched file is given
//! the coordinator's), so fetching a long render as it goes costs only its
//! new frames and the video each time. Files appear only whole.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use dreamfarm_common::params::JobSpec;
use dreamfarm_coordinator::cluster::fetch::{FileStamp, fetchable_files};
use dreamfarm_coordinator::cluster::memory_budget::human;
use dreamfarm_coordinator::output::{FileMatch, FolderLock, MANIFEST, OutputDir, OutputError};
use dreamfarm_coordinator::whole_file::{remove_leftovers, temp_file_in};
use dreamfarm_proto::pb::{FetchRequest, FileChunk, HeldFile};

use super::cluster_client::{ClientArgs, block_on};

/// Arguments of `dreamfarm fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id.
    job: String,
    /// Folder to write the frames and video into [default: dream/JOB].
    // `--output` as in `render`; `--out`, its first name, still works.
    #[arg(long = "output", visible_alias = "out", value_name = "FOLDER")]
    out: Option<PathBuf>,
}

/// Runs `dreamfarm fetch`.
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("dream").join(&args.job));
    prepare_folder(&out)?;
    // Held to the end: a render or another fetch into the same folder
    // would race this one's files.
    let _claim = FolderLock::claim(&out)?;
    remove_leftovers(&out, PARTIAL.0, PARTIAL.1);
    let held = held_files(&out)?;
    block_on(async move {
        let mut client = args.client.client().await?;
        let requests = tokio_stream::iter(requests(args.job.clone(), held));
        let mut stream = args.client.call(client.fetch(requests)).await?.into_inner();
        let (mut fetched, mut bytes, mut unchanged) = (0u64, 0, 0u64);
        let mut current: Option<Incoming> = None;
        while let Some(chunk) = args.client.call(stream.message()).await? {
            let name = &chunk.path;
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                bail!("the coordinator sent a bad file name {name:?}");
            }
            // A chunk of another file ends the one arriving.
            let another = chunk.unchanged || current.as_ref().is_some_and(|c| c.name != *name);
            if another && let Some(done) = current.take() {
                bytes += done.finish(&out, &args.job)?;
                fetched += 1;
            }
            if chunk.unchanged {
                unchanged += 1;
                continue;
            }
            let incoming = match &mut current {
                Some(c) => c,
                None => current.insert(Incoming::new(&out, &chunk)?),
            };
            std::io::Write::write_all(&mut incoming.file, &chunk.data)
                .with_context(|| format!("cannot write {name} into {}", out.display()))?;
            incoming.written += chunk.data.len() as u64;
        }
        if let Some(done) = current.take() {
            bytes += done.finish(&out, &args.job)?;
            fetched += 1;
        }
        let files = |n: u64| {
            if n == 1 {
                "1 file".to_string()
            } else {
                format!("{n} files")
            }
        };
        let (out, fetched) = (out.display(), files(fetched));
        match unchanged {
            0 => println!("fetched {fetched} ({}) into {out}", human(bytes)),
            n => println!(
                "fetched {fetched} ({}) into {out}; {} already there, unchanged",
                human(bytes),
                files(n)
            ),
        }
        Ok(())
    })
}

/// Files of the folder named per request: however long a name, a request
/// stays well within the protocol's message size.
const HELD_PER_REQUEST: usize = 10_000;

/// The requests of a fetch of `job` into a folder holding `held`: the job,
/// then the files, a batch a request.
fn requests(job: String, held: Vec<HeldFile>) -> Vec<FetchRequest> {
    let mut requests = vec![FetchRequest {
        job_id: job,
        held: Vec::new(),
    }];
    let mut held = held.into_iter().peekable();
    while held.peek().is_some() {
        requests.push(FetchRequest {
            job_id: String::new(),
            held: held.by_ref().take(HELD_PER_REQUEST).collect(),
        });
    }
    requests
}

/// Makes the folder `out` and checks that a file can be written in it,
/// so that a folder the user cannot write to fails before anything is
/// downloaded.
fn prepare_folder(out: &Path) -> anyhow::Result<()> {
    let fix = "Fix: pass --output a folder you can write to, or fix its permissions";
    dreamfarm_coordinator::folder::create(out)
        .and_then(|()| temp_file_in(out, PARTIAL.0, PARTIAL.1).map(drop))
        .map_err(|e| anyhow::anyhow!("cannot write into the folder {}: {e}. {fix}", out.display()))
}

/// Prefix and suffix of a file being fetched, before it takes its name.
const PARTIAL: (&str, &str) = (".fetch-", ".part");

/// The files `out` holds, as the coordinator's quick check compares them:
/// the same files it would offer from a folder (not hidden ones).
fn held_files(out: &Path) -> anyhow::Result<Vec<HeldFile>> {
    let files = fetchable_files(out).with_context(|| format!("cannot read {}", out.display()))?;
    Ok(files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let stamp = FileStamp::of(&std::fs::metadata(&path).ok()?)?;
            Some(HeldFile {
                name,
                size: stamp.size,
                modified_unix_ms: stamp.modified_ms,
            })
        })
        .collect())
}

/// A file arriving: written to a hidden temporary file that takes its name
/// once complete.
struct Incoming {
    /// The file's name in the job's folder.
    name: String,
    /// Where its bytes go until it is whole.
    file: tempfile::NamedTempFile,
    /// Bytes written so far.
    written: u64,
    /// Its size and modification time on the coordinator (coordinators
    /// before these were sent send neither).
    stamp: Option<FileStamp>,
}

impl Incoming {
    /// Starts the file whose first chunk is `chunk`.
    fn new(out: &Path, chunk: &FileChunk) -> anyhow::Result<Self> {
        let stamp = match (chunk.size, chunk.modified_unix_ms) {
            (Some(size), Some(modified_ms)) => Some(FileStamp { size, modified_ms }),
            _ => None,
        };
        Ok(Self {
            name: chunk.path.clone(),
            file: temp_file_in(out, PARTIAL.0, PARTIAL.1)?,
            written: 0,
            stamp,
        })
    }

    /// Checks the file is whole (and a job file that the folder may take
    /// the job `job`'s frames), gives it the coordinator's modification
    /// time and its name; returns its size.
    fn finish(self, out: &Path, job: &str) -> anyhow::Result<u64> {
        let Self {
            name,
            file,
            written,
            stamp,
        } = self;
        if let Some(stamp) = stamp {
            if written != stamp.size {
                bail!(
                    "{name} came incomplete ({written} of its {} bytes); run the same fetch again",
                    stamp.size
                );
            }
            file.as_file()
                .set_modified(stamp.modified())
                .with_context(|| format!("cannot set the time of {name}"))?;
        }
        if name == MANIFEST {
            check_folder(out, file.path(), job)?;
        }
        file.persist(out.join(&name))
            .with_context(|| format!("cannot write {name} into {}", out.display()))?;
        Ok(written)
    }
}

/// Checks that `out` may take the frames of the job `job`, whose job file
/// arrived as `manifest` (before any frame, so a folder holding another
/// job's frames, a render's say, is refused before one is replaced).
fn check_folder(out: &Path, manifest: &Path, job: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest).context("cannot read the job file it sent")?;
    let mut spec: JobSpec = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the coordinator sent a job file that does not parse: {e}"))?;
    // Its files come beside it, as a job file's paths are read.
    spec.relative_to(out);
    let fix = "Fix: fetch into another --output (fetch never replaces another job's frames)";
    match OutputDir::check_job(out, &spec, FileMatch::SameFileOrName) {
        Ok(()) => Ok(()),
        Err(OutputError::DifferentJob { differences, .. }) => bail!(
            "{} holds frames of another job ({}). {fix}",
            out.display(),
            differences.against(&format!("job {job}"))
        ),
        Err(OutputError::UnknownJob { .. }) => bail!(
            "{} holds frames but no job.toml saying which job made them. {fix}",
            out.display()
        ),
        Err(e) => Err(e.into()),
    }
}
