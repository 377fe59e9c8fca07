//! The embedded workers of a render on several devices (`--device
//! cuda:0,cuda:1`, or `all`): a thread per device, each with its own copy
//! of the model, taking the frame's tiles off one queue as the frame loop
//! makes them ready. Changes come back in whatever order they finish and
//! the frame loop places each where it belongs, so the frames are the same
//! bits as with one device (or a cluster).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_worker::dream::DreamError;
use tch::Device;

use crate::local_worker::LocalWorker;
use crate::tile_executor::{TileError, TileExecutor, TileKey};

/// Why the embedded workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A device's model did not load.
    #[error(transparent)]
    Dream(#[from] DreamError),
    /// The operating system refused a thread.
    #[error("cannot start a thread for the embedded worker on {device:?}: {source}")]
    Thread {
        /// The worker's device.
        device: Device,
        /// What the system said.
        source: std::io::Error,
    },
}

/// What a render computes its tiles with.
pub struct Embedded {
    /// The worker, or the pool of them.
    pub executor: Box<dyn TileExecutor>,
    /// The smallest image side the job's model accepts.
    pub min_side: usize,
}

/// The job's model loaded on each of `devices` (at least one; a lone
/// device runs in this thread, as it always has).
pub fn embedded(
    settings: &DreamSettings,
    seed: u64,
    devices: &[Device],
) -> Result<Embedded, PoolError> {
    match devices {
        [] | [_] => {
            let device = devices.first().copied().unwrap_or(Device::Cpu);
            let worker = LocalWorker::load(settings, seed, device)?;
            Ok(Embedded {
                min_side: worker.min_side(),
                executor: Box::new(worker),
            })
        }
        several => {
            let pool = LocalPool::start(settings, seed, several)?;
            Ok(Embedded {
                min_side: pool.min_side,
                executor: Box::new(pool),
            })
        }
    }
}

/// A change, or why its tile failed.
type Done = Result<(TileKey, Planar), TileError>;

/// Several embedded workers sharing one queue of tiles.
struct LocalPool {
    /// Tiles for the workers; dropped to end them.
    queue: mpsc::Sender<TileWork>,
    /// Their changes, as they finish.
    done: mpsc::Receiver<Done>,
    /// Set when the render stops: workers leave the queue's tiles alone.
    stopped: Arc<AtomicBool>,
    /// Tiles each worker has dreamed, logged at the end.
    dreamed: Arc<[AtomicU64]>,
    /// The workers' devices, in the order of `dreamed`.
    devices: Vec<Device>,
    min_side: usize,
}

impl LocalPool {
    /// Loads the model on every device, each in its own thread, and waits
    /// until all are ready (the first failure is returned).
    fn start(settings: &DreamSettings, seed: u64, devices: &[Device]) -> Result<Self, PoolError> {
        let (queue, tiles) = mpsc::channel::<TileWork>();
        let tiles = Arc::new(Mutex::new(tiles));
        let (done_tx, done) = mpsc::channel::<Done>();
        let (loaded_tx, loaded) = mpsc::channel::<Result<usize, DreamError>>();
        let stopped = Arc::new(AtomicBool::new(false));
        let dreamed: Arc<[AtomicU64]> = devices.iter().map(|_| AtomicU64::new(0)).collect();
        for (i, &device) in devices.iter().enumerate() {
            let (settings, tiles, done_tx, loaded_tx, stopped, dreamed) = (
                settings.clone(),
                tiles.clone(),
                done_tx.clone(),
                loaded_tx.clone(),
                stopped.clone(),
                dreamed.clone(),
            );
            std::thread::Builder::new()
                .name(format!("embedded worker {i}"))
                .spawn(move || {
                    dreamfarm_worker::cpu_threads::enter_compute_thread();
                    match LocalWorker::load(&settings, seed, device) {
                        Ok(worker) => {
                            let _ = loaded_tx.send(Ok(worker.min_side()));
                            // The pool is ready once every worker has said so.
                            drop(loaded_tx);
                            work(worker, &tiles, &done_tx, &stopped, &dreamed[i]);
                        }
                        Err(e) => {
                            let _ = loaded_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|source| PoolError::Thread { device, source })?;
        }
        drop(loaded_tx);
        let mut min_side = 1;
        for ready in loaded {
            min_side = ready?;
        }
        tracing::info!(workers = devices.len(), ?devices, "embedded workers ready");
        Ok(Self {
            queue,
            done,
            stopped,
            dreamed,
            devices: devices.to_vec(),
            min_side,
        })
    }
}

/// An embedded worker's thread: dreams the queue's tiles one at a time
/// until the queue or the pool goes.
fn work(
    mut worker: LocalWorker,
    tiles: &Mutex<mpsc::Receiver<TileWork>>,
    done: &mpsc::Sender<Done>,
    stopped: &AtomicBool,
    dreamed: &AtomicU64,
) {
    loop {
        let next = tiles.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(tile) = next else { return };
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        let key = TileKey::of(&tile);
        let change = worker.compute(tile);
        dreamed.fetch_add(1, Ordering::Relaxed);
        if done.send(change.map(|change| (key, change))).is_err() {
            return;
        }
    }
}

/// What the frame loop hears if every worker thread has gone (only a bug
/// can do that: their failures come back as tile errors).
fn workers_gone(frame: u64, octave: u32, tile: u32) -> TileError {
    TileError {
        frame,
        octave,
        tile,
        reason: "every embedded worker has stopped (a dreamfarm bug: please report it)".into(),
    }
}

impl TileExecutor for LocalPool {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        for tile in work {
            let (frame, octave, index) = (tile.frame, tile.octave, tile.tile);
            self.queue
                .send(tile)
                .map_err(|_| workers_gone(frame, octave, index))?;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        self.done.recv().map_err(|_| workers_gone(0, 0, 0))?
    }
}

impl Drop for LocalPool {
    /// Workers finish the tile in hand and leave the rest: a render that
    /// failed does not wait for tiles it will not use.
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        let tiles: Vec<u64> = self
            .dreamed
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        tracing::info!(devices = ?self.devices, ?tiles, "embedded workers done");
    }
}
