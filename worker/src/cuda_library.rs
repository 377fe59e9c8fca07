//! libtorch's CUDA half, loaded at run time.
//!
//! libtorch ships its CPU and CUDA code as two libraries. Nothing in tch
//! calls into `libtorch_cuda.so` directly, so the linker's `--as-needed`
//! (the default on Debian and Ubuntu) drops it from our binaries, and
//! libtorch then sees no CUDA device even on a GPU machine. Loading it by
//! hand registers its CUDA backend (its static initialisers do); it is
//! loaded when a request that may use a GPU (auto, cuda, all) resolves its
//! device, and a `--device cpu` process never loads it. It is taken from
//! the folder the running `libtorch_cpu.so` came from, so the two halves
//! are always one build; a CPU-only libtorch has no CUDA half, and the
//! binary runs on it unchanged.
//!
//! Once loaded, CUDA convolutions are set to IEEE f32. libtorch's default
//! runs them in TF32 (a 10-bit mantissa), a narrowed format as bf16 is:
//! `f32`, the reference, means f32 on every device, and `--precision bf16`
//! is the fast, narrow option (on an H200 the default recipe's 1080p frame
//! took 0.54 s in TF32, 1.20 s in IEEE f32 and 0.57 s in bf16).
//!
//! They are also set to cuDNN's deterministic algorithms. By default cuDNN
//! may pick one that sums with atomic adds, whose order changes from run
//! to run, and DeepDream grows a last-bit difference into different
//! texture; a farm needs a tile dreamed twice to come out the same bits
//! (a retried lease, a region redone after its neighbours used its
//! changes, a resumed job, a cluster frame against `render`'s).
//! Benchmark mode stays off for the same reason: it picks the algorithm
//! that timed fastest in this process, which may differ between workers.

use std::ffi::{CStr, CString, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What became of libtorch's CUDA library in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaLibrary {
    /// Loaded from this file: CUDA devices are visible if the machine has
    /// a GPU and a driver.
    Loaded(PathBuf),
    /// The libtorch this process runs on is a CPU-only build.
    Absent {
        /// The folder searched (where `libtorch_cpu.so` is).
        folder: PathBuf,
    },
    /// The library is there but would not load (a CUDA library it needs
    /// is missing, say).
    Failed {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// `libtorch_cpu.so` is not among this process's libraries (a
    /// statically linked libtorch), so there is nothing to pair with.
    Unlocated,
}

impl CudaLibrary {
    /// Why CUDA is unavailable, as a user can act on it; `None` when the
    /// library is loaded and the cause lies with the GPU or its driver.
    pub fn advice(&self) -> Option<String> {
        match self {
            CudaLibrary::Loaded(_) => None,
            CudaLibrary::Absent { folder } => Some(format!(
                "the libtorch in {} is a CPU-only build (it has no libtorch_cuda.so); \
                 install the CUDA build of torch 2.11 to use a GPU",
                folder.display()
            )),
            CudaLibrary::Failed { path, reason } => Some(format!(
                "libtorch's CUDA library {} would not load ({reason}); put the CUDA \
                 libraries it needs (the nvidia-* wheels' lib folders) on LD_LIBRARY_PATH",
                path.display()
            )),
            CudaLibrary::Unlocated => Some(
                "libtorch_cpu.so is not loaded as a shared library, so its CUDA half \
                 cannot be found"
                    .to_string(),
            ),
        }
    }
}

/// Loads libtorch's CUDA library once per process, and says how that went.
/// Call it before asking libtorch about CUDA devices.
pub fn cuda_library() -> &'static CudaLibrary {
    static LOADED: OnceLock<CudaLibrary> = OnceLock::new();
    LOADED.get_or_init(|| {
        let library = match libtorch_folder() {
            None => CudaLibrary::Unlocated,
            Some(folder) => {
                let path = folder.join("libtorch_cuda.so");
                if path.exists() {
                    load(path)
                } else {
                    CudaLibrary::Absent { folder }
                }
            }
        };
        // A CUDA library that will not load is a broken install that
        // `--device auto` would otherwise quietly run on the CPU.
        match library.advice() {
            Some(advice) if matches!(library, CudaLibrary::Failed { .. }) => {
                tracing::warn!("no GPU: {advice}");
            }
            _ => tracing::debug!(?library, "libtorch's CUDA library"),
        }
        library
    })
}

/// The folder of the `libtorch_cpu.so` this process has mapped.
fn libtorch_folder() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    // A mapping's path is the rest of its line from the first '/' (paths
    // may hold spaces; anonymous mappings have none).
    maps.lines()
        .filter_map(|line| line.find('/').map(|at| &line[at..]))
        .map(Path::new)
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name == "libtorch_cpu.so")
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

/// `dlopen`s `path` for good, with its symbols global as a linked library's
/// would be.
fn load(path: PathBuf) -> CudaLibrary {
    let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
        return CudaLibrary::Failed {
            path,
            reason: "the path holds a NUL byte".to_string(),
        };
    };
    // SAFETY: `name` is a valid C string for the call. The library is never
    // closed, so nothing it registers (its static initialisers put libtorch's
    // CUDA backend in libtorch's registries) can dangle.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns null or a C string valid until the next
        // dl* call on this thread; it is copied at once.
        let error = unsafe { libc::dlerror() };
        let reason = if error.is_null() {
            "dlopen failed without a message".to_string()
        } else {
            // SAFETY: non-null, so a NUL-terminated string from the loader.
            unsafe { CStr::from_ptr(error) }
                .to_string_lossy()
                .into_owned()
        };
        CudaLibrary::Failed { path, reason }
    } else {
        repeatable_f32_convolutions();
        CudaLibrary::Loaded(path)
    }
}

/// ATen's global numerics switches (`at::Context`), which tch does not
/// wrap: C++ functions called by the names libtorch exports them under (the
/// Itanium ABI's, `this` first). The pinned torch 2.11 has them; a libtorch
/// without them fails at link time, not at run time.
mod aten_context {
    use super::{c_int, c_void};

    /// `at::Float32Backend::CUDA`.
    pub const CUDA: c_int = 1;
    /// `at::Float32Op::CONV`.
    pub const CONV: c_int = 1;
    /// `at::Float32Precision::IEEE`.
    pub const IEEE: c_int = 1;

    unsafe extern "C" {
        /// `at::globalContext()`.
        #[link_name = "_ZN2at13globalContextEv"]
        pub fn global_context() -> *mut c_void;
        /// `at::Context::setFloat32Precision(backend, op, precision)`.
        #[link_name = "_ZN2at7Context19setFloat32PrecisionENS_14Float32BackendENS_9Float32OpENS_16Float32PrecisionE"]
        pub fn set_float32_precision(
            context: *mut c_void,
            backend: c_int,
            op: c_int,
            precision: c_int,
        );
        /// `at::Context::float32Precision(backend, op)`: read back in tests.
        #[cfg(test)]
        #[link_name = "_ZNK2at7Context16float32PrecisionENS_14Float32BackendENS_9Float32OpE"]
        pub fn float32_precision(context: *mut c_void, backend: c_int, op: c_int) -> c_int;
        /// `at::Context::setDeterministicCuDNN(deterministic)`.
        #[link_name = "_ZN2at7Context21setDeterministicCuDNNEb"]
        pub fn set_deterministic_cudnn(context: *mut c_void, deterministic: bool);
        /// `at::Context::deterministicCuDNN()`: read back in tests.
        #[cfg(test)]
        #[link_name = "_ZNK2at7Context18deterministicCuDNNEv"]
        pub fn deterministic_cudnn(context: *mut c_void) -> bool;
        /// `at::Context::benchmarkCuDNN()`: read back in tests.
        #[cfg(test)]
        #[link_name = "_ZNK2at7Context14benchmarkCuDNNEv"]
        pub fn benchmark_cudnn(context: *mut c_void) -> bool;
    }
}

/// CUDA convolutions in IEEE f32 rather than libtorch's default TF32, by
/// cuDNN's deterministic algorithms (see the module's doc).
fn repeatable_f32_convolutions() {
    // SAFETY: the global context lives for the whole process; the enum
    // values are ATen's (`Float32Backend`, `Float32Op`, `Float32Precision`,
    // plain `int` enums), C++'s `bool` is C's, and the setters throw
    // nothing.
    unsafe {
        let context = aten_context::global_context();
        aten_context::set_float32_precision(
            context,
            aten_context::CUDA,
            aten_context::CONV,
            aten_context::IEEE,
        );
        aten_context::set_deterministic_cudnn(context, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// What libtorch says when a CUDA tensor is asked for and its CUDA half
    /// was never loaded: no kernels are registered for the CUDA backend (and,
    /// for device queries, "without ATen_cuda library").
    const NOT_LOADED: [&str; 2] = ["from the 'CUDA' backend", "ATen_cuda"];

    /// Set in the process [`the_cuda_half_is_loaded_beside_the_cpu_half_and_registers_cuda`]
    /// runs its checks in.
    const ALONE: &str = "DREAMFARM_TEST_CUDA_LIBRARY_ALONE";

    #[test]
    fn the_cuda_half_is_loaded_beside_the_cpu_half_and_registers_cuda() {
        // libtorch turns CUDA off for good in a process that asked for its
        // CUDA hooks before the CUDA half was loaded (a CPU convolution asks
        // whether cuDNN is built in), and this binary's other tests run
        // convolutions beside this one: it checks in a process of its own,
        // as a worker or render resolves its devices before any dream.
        if std::env::var_os(ALONE).is_none() {
            let name = module_path!()
                .split_once("::")
                .map_or("", |(_, path)| path)
                .to_string()
                + "::the_cuda_half_is_loaded_beside_the_cpu_half_and_registers_cuda";
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", &name, "--test-threads", "1"])
                .env(ALONE, "1")
                .output()
                .expect("the test binary runs");
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && said.contains("1 passed"),
                "alone, {name}: {said}"
            );
            return;
        }
        let folder = libtorch_folder().expect("the tests run on a shared libtorch");
        let library = cuda_library();
        if !folder.join("libtorch_cuda.so").exists() {
            assert_eq!(library, &CudaLibrary::Absent { folder });
            return;
        }
        assert_eq!(
            library,
            &CudaLibrary::Loaded(folder.join("libtorch_cuda.so"))
        );
        // SAFETY: as in `repeatable_f32_convolutions`; reading throws
        // nothing.
        let (precision, deterministic, benchmark) = unsafe {
            let context = aten_context::global_context();
            (
                aten_context::float32_precision(context, aten_context::CUDA, aten_context::CONV),
                aten_context::deterministic_cudnn(context),
                aten_context::benchmark_cudnn(context),
            )
        };
        assert_eq!(
            precision,
            aten_context::IEEE,
            "CUDA convolutions are not in f32"
        );
        assert!(deterministic, "cuDNN may pick non-deterministic algorithms");
        assert!(!benchmark, "cuDNN picks algorithms by timing them");
        // Without the CUDA half, libtorch has no CUDA kernels at all; with
        // it, a machine without a GPU fails further on (no driver), and one
        // with a GPU succeeds.
        if let Err(error) = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))) {
            let message = error.to_string();
            assert!(
                !NOT_LOADED.iter().any(|text| message.contains(text)),
                "libtorch still lacks its CUDA backend: {message}"
            );
        }
    }

    #[test]
    fn a_library_that_will_not_load_is_told_with_the_loaders_reason() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("libtorch_cuda.so");
        std::fs::write(&path, b"not a shared object").expect("written");
        match load(path.clone()) {
            CudaLibrary::Failed {
                path: failed,
                reason,
            } => {
                assert_eq!(failed, path);
                assert!(reason.contains("libtorch_cuda.so"), "{reason}");
            }
            other => panic!("a junk file loaded: {other:?}"),
        }
    }

    #[test]
    fn each_failure_says_what_to_do() {
        let folder = PathBuf::from("/opt/torch/lib");
        assert_eq!(
            CudaLibrary::Loaded(folder.join("libtorch_cuda.so")).advice(),
            None
        );
        let absent = CudaLibrary::Absent {
            folder: folder.clone(),
        }
        .advice();
        assert!(absent.is_some_and(|a| a.contains("CPU-only") && a.contains("/opt/torch/lib")));
        let failed = CudaLibrary::Failed {
            path: folder.join("libtorch_cuda.so"),
            reason: "libcudart.so.13: cannot open shared object file".to_string(),
        }
        .advice();
        assert!(
            failed.is_some_and(|a| a.contains("libcudart.so.13") && a.contains("LD_LIBRARY_PATH"))
        );
    }
}
