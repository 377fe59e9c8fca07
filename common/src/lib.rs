//! Types shared by the dreamfarm coordinator and its workers.
//!
//! Nothing here links libtorch: the coordinator validates jobs (model names,
//! layer names, devices) with these types and ships without CUDA.

pub mod device;
pub mod model_catalog;
pub mod seed;
