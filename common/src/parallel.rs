//! Host image work split across the machine's cores.
//!
//! The frame loop's host work (resizes between octaves, the camera warp,
//! stitching tiles, extracting their pixels) is on one job's critical path:
//! while it runs, the job has no tiles out and its workers wait. Every
//! output sample here is computed by the same arithmetic whichever thread
//! computes it, so splitting the work never changes a frame.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many samples a job runs on the calling thread: starting
/// threads costs more than it saves.
const MIN_PARALLEL_SAMPLES: usize = 1 << 18;

/// The threads host work is split into; 0 until decided.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// `DREAMFARM_HOST_THREADS`, a bench's knob (1 turns splitting off).
fn host_threads_env() -> Option<usize> {
    std::env::var("DREAMFARM_HOST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
}

/// Threads host work is split into: the CPUs this process may use (its
/// affinity and its cgroup's CPU limit, as [`std::thread::available_parallelism`]
/// reads them), the count [`set_threads`] gave, or
/// `DREAMFARM_HOST_THREADS` over either.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = host_threads_env().unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
            });
            THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// The most threads `--threads` takes: more is a typo, not a machine.
const MAX_THREADS: usize = 1024;

/// Reads a `--threads` value (`render`, `dream`, `worker`, `coordinator`):
/// a count of CPU threads from 1 to 1024.
pub fn parse_threads(value: &str) -> Result<NonZeroUsize, String> {
    value
        .parse::<NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= MAX_THREADS)
        .ok_or_else(|| format!("a count of CPU threads from 1 to {MAX_THREADS}, not {value:?}"))
}

/// Splits host work into `n` threads from now on (a process's `--threads`),
/// unless `DREAMFARM_HOST_THREADS` says otherwise. Which threads compute a
/// sample never changes it, so this changes no frame.
pub fn set_threads(n: NonZeroUsize) {
    THREADS.store(host_threads_env().unwrap_or(n.get()), Ordering::Relaxed);
}

/// Threads for a job touching `samples` samples: 1 when it is too small
/// to be worth splitting, else [`threads`].
pub fn threads_for(samples: usize) -> usize {
    if samples < MIN_PARALLEL_SAMPLES {
        1
    } else {
        threads()
    }
}

/// Calls `f(i, piece)` for every `piece_len`-sized piece `i` of `data`
/// (the last may be shorter), the pieces shared out in contiguous runs
/// across [`threads`].
pub fn for_each_piece<T: Send>(
    data: &mut [T],
    piece_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    split(data, piece_len, threads_for(data.len()), f);
}

/// [`for_each_piece`] on at most `threads` threads.
fn split<T: Send>(
    data: &mut [T],
    piece_len: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let piece_len = piece_len.max(1);
    let pieces = data.len().div_ceil(piece_len);
    let threads = threads.min(pieces);
    if threads <= 1 {
        for (i, piece) in data.chunks_mut(piece_len).enumerate() {
            f(i, piece);
        }
        return;
    }
    let per_thread = pieces.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, run) in data.chunks_mut(per_thread * piece_len).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (i, piece) in run.chunks_mut(piece_len).enumerate() {
                    f(t * per_thread + i, piece);
                }
            });
        }
    });
}

/// `f(i)` for `i` in `0..n`, in parallel when `work` (samples touched in
/// all) is large enough, the results in order.
pub fn map<R: Send>(n: usize, work: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    if work < MIN_PARALLEL_SAMPLES {
        return (0..n).map(f).collect();
    }
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    split(&mut out, 1, threads(), |i, slot| slot[0] = Some(f(i)));
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_visited_once_with_its_index() {
        let mut data: Vec<usize> = vec![0; 3 * MIN_PARALLEL_SAMPLES + 5];
        for_each_piece(&mut data, 1000, |i, piece| {
            for v in piece.iter_mut() {
                *v += i + 1;
            }
        });
        for (k, &v) in data.iter().enumerate() {
            assert_eq!(v, k / 1000 + 1, "sample {k}");
        }
    }

    #[test]
    fn a_thread_count_is_1_to_1024() {
        assert_eq!(parse_threads("3").map(NonZeroUsize::get), Ok(3));
        assert_eq!(parse_threads("1024").map(NonZeroUsize::get), Ok(1024));
        for bad in ["0", "1025", "-1", "two", ""] {
            assert!(parse_threads(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn map_keeps_the_order() {
        let squares = map(1000, usize::MAX, |i| i * i);
        assert_eq!(squares, (0..1000).map(|i| i * i).collect::<Vec<_>>());
    }
}
