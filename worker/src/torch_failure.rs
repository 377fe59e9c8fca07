//! libtorch's failures as errors. `tch`'s methods without the `f_`
//! prefix panic when libtorch throws, and memory can run out in any of
//! them: a tile too big for the GPU or the machine. Caught here, the tile
//! fails with one clear error and the thread that dreamed it lives on.
//! Uncaught, the panic printed libtorch's C++ stack and ended `render`,
//! and it ended a cluster worker's compute thread while the worker went on
//! taking leases it would never answer.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// What went wrong inside a [`catch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorchFailure {
    /// An allocation failed, in libtorch's words (how much it asked for,
    /// and on a GPU how much was free).
    #[error("out of memory ({0})")]
    OutOfMemory(String),
    /// libtorch threw something else: its message, without its C++ stack.
    #[error("libtorch failed: {0}")]
    Torch(String),
    /// The Rust code panicked: a dreamfarm bug (the panic is printed where
    /// it happened, as any other).
    #[error("internal error: {0} (a dreamfarm bug, please report it)")]
    Bug(String),
}

thread_local! {
    /// Whether this thread is inside [`catch`], which reports libtorch's
    /// panics as errors instead of printing them.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// The text `tch` panics with when libtorch throws: the `Debug` of its
/// `TchError::Torch`.
const TORCH_PANIC: &str = "Torch(\"";

/// Runs `f` and returns what it returns, or what libtorch threw (or a bug
/// panicked with) inside it. Panics out of libtorch are not printed; the
/// caller reports the error.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, TorchFailure> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let print = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let from_torch = message(info.payload()).is_some_and(|m| m.contains(TORCH_PANIC));
            if !(CATCHING.get() && from_torch) {
                print(info);
            }
        }));
    });
    let outer = CATCHING.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(outer);
    result.map_err(|payload| classify(message(&*payload).unwrap_or("a panic without a message")))
}

/// A panic's message, when it has one.
fn message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// What a panic's message says went wrong.
fn classify(panic: &str) -> TorchFailure {
    let Some(start) = panic.find(TORCH_PANIC) else {
        return TorchFailure::Bug(panic.to_string());
    };
    let quoted = &panic[start + TORCH_PANIC.len()..];
    // libtorch's message is quoted as Rust's `Debug` writes a string: its
    // first line ends at an escaped newline (its C++ stack follows) or
    // at the closing quote.
    let first_line = quoted
        .find("\\n")
        .or_else(|| quoted.rfind("\")"))
        .map_or(quoted, |end| &quoted[..end])
        .replace("\\\"", "\"")
        .replace("\\'", "'");
    let text = without_enforce_prefix(&first_line).trim().to_string();
    let lower = text.to_lowercase();
    if lower.contains("out of memory") || lower.contains("can't allocate memory") {
        TorchFailure::OutOfMemory(text)
    } else {
        TorchFailure::Torch(text)
    }
}

/// `message` without the "[enforce fail at file.cpp:127] err == 0. " that
/// names the C++ check which failed.
fn without_enforce_prefix(message: &str) -> &str {
    match message.strip_prefix("[enforce fail at") {
        Some(rest) => rest
            .find("] ")
            .map(|end| &rest[end + 2..])
            .map(|rest| rest.split_once(". ").map_or(rest, |(_, after)| after))
            .unwrap_or(message),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tch` panics with when libtorch throws `message`, as an error.
    fn torch_panic(message: &str) -> String {
        let e: Result<(), tch::TchError> = Err(tch::TchError::Torch(message.to_string()));
        catch(|| std::hint::black_box(e).unwrap())
            .map(|()| "no panic".to_string())
            .unwrap_or_else(|f| f.to_string())
    }

    #[test]
    fn real_libtorch_failures_come_back_as_errors() {
        use tch::{Device, Kind, Tensor};
        let huge = catch(|| Tensor::empty([1 << 50], (Kind::Float, Device::Cpu)));
        match huge {
            Err(TorchFailure::OutOfMemory(m)) => assert!(
                m.contains("you tried to allocate 4503599627370496 bytes"),
                "{m}"
            ),
            other => panic!("not out of memory: {other:?}"),
        }
        let shapes = catch(|| {
            Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))
                .matmul(&Tensor::zeros([4, 5], (Kind::Float, Device::Cpu)))
        });
        match shapes {
            Err(TorchFailure::Torch(m)) => assert!(!m.contains("frame #"), "{m}"),
            other => panic!("not a torch error: {other:?}"),
        }
    }

    #[test]
    fn a_failed_allocation_on_the_cpu_reads_as_out_of_memory() {
        let cpu = "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 120434688 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet(char const*, int, char const*) + 0x6a (0x7f4a in libc10.so)\nframe #1: c10::alloc_cpu(unsigned long)";
        assert_eq!(
            torch_panic(cpu),
            "out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 120434688 bytes. Error code 12 (Cannot allocate memory))"
        );
    }

    #[test]
    fn a_gpu_out_of_memory_keeps_what_torch_says_about_the_gpu() {
        let cuda = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.02 GiB is free. Process 1 has 78.12 GiB memory in use.\nException raised from malloc at /pytorch/c10/cuda/CUDACachingAllocator.cpp:1347 (most recent call first):\nframe #0: c10::Error::Error";
        assert_eq!(
            torch_panic(cuda),
            "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.02 GiB is free. Process 1 has 78.12 GiB memory in use.)"
        );
    }

    #[test]
    fn other_torch_errors_and_bugs_are_told_apart() {
        assert_eq!(
            torch_panic(
                "Given groups=1, weight of size [8, 3], expected input[1, 4] to have 3 channels, but got 4 channels instead"
            ),
            "libtorch failed: Given groups=1, weight of size [8, 3], expected input[1, 4] to have 3 channels, but got 4 channels instead"
        );
        let bug = catch(|| -> u32 { panic!("index 7 out of range") }).expect_err("caught");
        assert_eq!(bug, TorchFailure::Bug("index 7 out of range".into()));
        assert_eq!(catch(|| 7), Ok(7));
    }
}
