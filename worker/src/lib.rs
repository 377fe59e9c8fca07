//! The dreamfarm worker: pretrained networks in libtorch and the dream
//! gradient steps computed on the tiles it is leased, in-process or as a
//! cluster worker ([`remote`]).

pub mod cpu_threads;
pub mod cuda_library;
pub mod dream;
pub mod image_tensor;
pub mod models;
pub mod remote;
pub mod torch_failure;
pub mod weights;
pub mod worker_args;
