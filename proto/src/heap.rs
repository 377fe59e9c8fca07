//! How a coordinator, render or worker process asks glibc's allocator to
//! reuse memory.
//!
//! A coordinator allocates and frees frame-sized buffers all the time (a
//! 4K RGB f32 frame is 100 MB: octave images, stitching sums, warps), and
//! a network's activations and gradients on the CPU are freed and made
//! again every step. By default glibc serves each with a fresh `mmap`, so
//! every buffer costs a page fault per 4 KiB and an `munmap`: a third of
//! the coordinator's CPU in the capacity bench, the page faults of a 4K
//! `render --dry-run` as much again, and 5% of an InceptionV3 step at
//! 1024×1024 on the CPU. Keeping freed memory in one heap lets the next
//! frame or step reuse those pages. The heap then stays at its peak size,
//! which a long-running server, worker or render can afford, except where
//! memory is hard-limited and a failed allocation must leave room for the
//! next ones.

/// Serve large allocations from one heap that is never trimmed, unless the
/// process's memory is hard-limited (see `hard_limit`). Call it before
/// any thread starts: other threads' arenas cannot hold blocks over 64 MiB
/// and would fall back to `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    if let Some(limit) = hard_limit() {
        tracing::info!("memory is limited by {limit}: freed memory goes back to the system");
        return;
    }
    // SAFETY: mallopt only sets allocator parameters; called before the
    // process has other threads.
    let applied = unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    };
    if !applied {
        tracing::warn!("glibc refused the allocator settings; frame buffers will be mmapped");
    }
}

/// What limits the address space the process may allocate, if anything
/// does: a data or address-space limit (`ulimit -d`, `ulimit -v`), or the
/// kernel's strict overcommit. Under one, allocations fail rather than the
/// process being killed, and a heap that never shrinks would keep the
/// space a tile that ran out of memory grew it to: every allocation after
/// it would fail as well, oneDNN's code buffers among them (unchecked
/// there: the worker crashed in its next kernel instead of going on).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn hard_limit() -> Option<&'static str> {
    let limited = |resource| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        unsafe {
            libc::getrlimit(resource, &mut limit) == 0 && limit.rlim_cur != libc::RLIM_INFINITY
        }
    };
    if limited(libc::RLIMIT_DATA) {
        Some("RLIMIT_DATA (ulimit -d)")
    } else if limited(libc::RLIMIT_AS) {
        Some("RLIMIT_AS (ulimit -v)")
    } else if std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .is_ok_and(|m| m.trim() == "2")
    {
        Some("strict overcommit (vm.overcommit_memory = 2)")
    } else {
        None
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// Bytes the heap holds free for reuse: resident (the pass that freed them
/// touched them) but not in use, since [`keep_freed_memory`] never gives
/// them back. What the process uses is its resident memory less these.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn free_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks as u64
}

/// Other allocators: nothing known.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn free_bytes() -> u64 {
    0
}
