//! The dreamfarm worker: pretrained networks in libtorch and the dream
//! gradient steps computed on the tiles it is leased.

pub mod dream;
pub mod image_tensor;
pub mod models;
pub mod weights;
