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
//! which a long-running server, worker or render can afford.

/// Serve large allocations from one heap that is never trimmed. Call it
/// before any thread starts: other threads' arenas cannot hold blocks over
/// 64 MiB and would fall back to `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
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

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
