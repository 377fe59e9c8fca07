//! Types shared by the dreamfarm coordinator and its workers.
//!
//! Nothing here links libtorch: the coordinator validates jobs (model names,
//! layer names, devices) with these types and ships without CUDA.

pub mod area;
pub mod color;
pub mod device;
pub mod digest;
pub mod job_name;
pub mod memory_limit;
pub mod model_catalog;
pub mod objective;
pub mod parallel;
pub mod params;
pub mod region_frame;
pub mod region_plan;
pub mod resample;
pub mod schedule;
pub mod seed;
pub mod tiling;
pub mod weights_format;
pub mod work;
