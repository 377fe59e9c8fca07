//! The weights files jobs upload (`submit --weights`), as a worker holds
//! them: fetched from the coordinator the first time a lease names them,
//! checked against the SHA-256 the lease gave, and kept under that name,
//! so that every later job with the same file loads it from disk. The
//! newest few are kept; older ones are deleted as new ones arrive.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use dreamfarm_common::digest::sha256_hex;
use dreamfarm_proto::MAX_MESSAGE_BYTES;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::connect::connect;
use dreamfarm_proto::pb::WeightsRequest;
use dreamfarm_proto::pb::worker_service_client::WorkerServiceClient;
use tokio::runtime::Handle;

use super::{RemoteConfig, RemoteError};
use crate::weights::persist;

/// Uploaded weights files kept in the folder.
const KEPT: usize = 8;

/// A worker's folder of uploaded weights, and how to fetch more.
pub(super) struct UploadedWeights {
    /// Where they are kept, each as `SHA256.safetensors`.
    dir: PathBuf,
    /// The coordinator's URL.
    coordinator: String,
    /// The CA certificate that signed its TLS certificate.
    tls_ca: Option<PathBuf>,
    /// The cluster's token.
    token: AttachToken,
    /// The worker's runtime, which the compute threads block on to fetch.
    runtime: Handle,
    /// Held while a file is looked for or fetched: a second thread that
    /// needs the same file waits, then finds it.
    busy: Mutex<()>,
}

impl UploadedWeights {
    /// The folder `config` names (made now, so that an unusable one stops
    /// the worker at its start), fetching from `config`'s coordinator on
    /// `runtime`.
    pub(super) fn open(
        config: &RemoteConfig,
        token: AttachToken,
        runtime: Handle,
    ) -> Result<Self, RemoteError> {
        let dir = config.weights_cache.clone();
        std::fs::create_dir_all(&dir).map_err(|source| RemoteError::WeightsCache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            coordinator: config.coordinator.clone(),
            tls_ca: config.tls_ca.clone(),
            token,
            runtime,
            busy: Mutex::new(()),
        })
    }

    /// The path of the weights whose SHA-256 is `sha256` (checked as one
    /// when the lease arrived), which job `job` uploaded: the kept copy,
    /// or one fetched now. Blocks; run on a compute thread.
    pub(super) fn path(&self, job: &str, sha256: &str) -> Result<PathBuf, String> {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(format!("{sha256}.safetensors"));
        if let Ok(file) = File::options().append(true).open(&path) {
            // Used now: the last to be deleted.
            let _ = file.set_modified(SystemTime::now());
            return Ok(path);
        }
        let started = std::time::Instant::now();
        let cannot = |e: std::io::Error| {
            format!(
                "cannot keep job {job}'s weights in {}: {e}. Fix: point --weights-cache (DREAMFARM_WEIGHTS_CACHE) at a writable folder with room",
                self.dir.display()
            )
        };
        let mut part = tempfile::NamedTempFile::new_in(&self.dir).map_err(cannot)?;
        let bytes = self
            .runtime
            .block_on(self.fetch(job, sha256, part.as_file_mut()))?;
        part.as_file_mut().sync_all().map_err(cannot)?;
        let got = File::open(part.path())
            .and_then(sha256_hex)
            .map_err(cannot)?;
        if got != sha256 {
            return Err(format!(
                "job {job}'s weights arrived with SHA-256 {got}, not {sha256} (damaged on the way); the lease is tried again"
            ));
        }
        persist(part, &path).map_err(|e| e.to_string())?;
        tracing::info!(
            job,
            sha256,
            bytes,
            seconds = started.elapsed().as_secs_f64(),
            "fetched the job's weights"
        );
        self.forget_old(&path);
        Ok(path)
    }

    /// Writes job `job`'s weights into `file`; returns their length.
    async fn fetch(&self, job: &str, sha256: &str, file: &mut File) -> Result<u64, String> {
        let failed = |e: &dyn std::fmt::Display| format!("cannot fetch job {job}'s weights: {e}");
        let channel = connect(&self.coordinator, self.tls_ca.as_deref())
            .await
            .map_err(|e| failed(&e))?;
        let mut client = WorkerServiceClient::with_interceptor(channel, self.token.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let request = WeightsRequest {
            job_id: job.to_string(),
            sha256: sha256.to_string(),
        };
        let mut pieces = client
            .weights(request)
            .await
            .map_err(|s| failed(&s.message()))?
            .into_inner();
        let mut bytes = 0;
        while let Some(piece) = pieces.message().await.map_err(|s| failed(&s.message()))? {
            file.write_all(&piece.data).map_err(|e| failed(&e))?;
            bytes += piece.data.len() as u64;
        }
        Ok(bytes)
    }

    /// Deletes all but the [`KEPT`] most recently used files (never
    /// `keep`, just fetched).
    fn forget_old(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p != keep && p.extension().is_some_and(|x| x == "safetensors"))
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .collect();
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        for (_, old) in kept.into_iter().skip(KEPT - 1) {
            if let Err(e) = std::fs::remove_file(&old) {
                tracing::warn!("cannot delete old weights {}: {e}", old.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A cache in `dir` whose coordinator cannot be reached, and the
    /// runtime it fetches on (driven by a thread of its own, as the
    /// worker's is, so that a compute thread can block on it).
    fn cache(dir: &Path) -> (UploadedWeights, tokio::runtime::Runtime) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let weights = UploadedWeights {
            dir: dir.to_path_buf(),
            coordinator: "http://127.0.0.1:1".into(),
            tls_ca: None,
            token: AttachToken::new(None).expect("no token"),
            runtime: runtime.handle().clone(),
            busy: Mutex::new(()),
        };
        (weights, runtime)
    }

    /// Writes `name` in `dir`, last modified `age` seconds ago.
    fn file(dir: &Path, name: &str, age: u64) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, name).expect("written");
        let then = SystemTime::now() - Duration::from_secs(age);
        File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(then))
            .expect("dated");
        path
    }

    #[test]
    fn a_kept_file_is_used_without_a_fetch_and_becomes_the_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cache, _runtime) = cache(dir.path());
        let digest = "ab".repeat(32);
        let kept = file(dir.path(), &format!("{digest}.safetensors"), 3600);
        assert_eq!(cache.path("job", &digest), Ok(kept.clone()));
        let age = kept
            .metadata()
            .and_then(|m| m.modified())
            .expect("dated")
            .elapsed()
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "not touched: {age:?}");
    }

    #[test]
    fn a_failed_fetch_says_why_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cache, _runtime) = cache(dir.path());
        let e = cache
            .path("job-7", &"cd".repeat(32))
            .expect_err("unreachable");
        assert!(e.starts_with("cannot fetch job job-7's weights: "), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn only_the_most_recently_used_files_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cache, _runtime) = cache(dir.path());
        let old: Vec<PathBuf> = (0..10)
            .map(|i| file(dir.path(), &format!("{i:064}.safetensors"), 100 - i))
            .collect();
        let other = file(dir.path(), "notes.txt", 1000);
        // The oldest file was fetched again just now.
        cache.forget_old(&old[0]);
        let left = |p: &PathBuf| p.exists();
        assert!(left(&old[0]) && left(&other));
        assert!(!left(&old[1]) && !left(&old[2]), "the two oldest go");
        assert!(old[3..].iter().all(left), "the 7 newest others stay");
    }
}
