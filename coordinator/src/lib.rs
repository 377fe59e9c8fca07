//! The dreamfarm coordinator: owns jobs and the frame loop. It splits each
//! octave of a frame into tiles, has them computed by a [`TileExecutor`],
//! stitches the results, writes frames and assembles the video.
//!
//! - [`frame_loop`]: one frame over octaves and tiles; [`octave_rows`]: its
//!   images filling in top first, and the tiles each band of rows starts.
//! - [`render`]: a whole job, frame after frame, resumable; [`pace`]: how
//!   fast a run writes frames and the time it has left;
//!   [`region_frames`]: a frame dreamed by regions on the workers.
//! - [`output`]: the frames folder; [`source_files`]: the files its frames
//!   were made from; [`frame_writer`]: frames written on their own thread;
//!   [`video`]: ffmpeg.
//! - [`cluster`]: the gRPC coordinator that leases tiles to remote workers.
//! - [`store`]: the durable job store (SQLite) the coordinator keeps its
//!   jobs and their event logs in.
//! - [`tile_executor`]: where tiles are computed; [`local_worker`] computes
//!   them in this process (single-machine renders), [`local_pool`] on
//!   several of this machine's devices at once.
//! - [`web`]: the web interface (jobs, live previews, workers, controls).
//! - [`whole_file`]: files that appear under their name only once whole;
//!   [`folder`]: folders the user names, created where missing.

pub mod cluster;
pub mod folder;
pub mod frame_loop;
pub mod frame_writer;
#[cfg(feature = "embedded-worker")]
pub mod local_pool;
#[cfg(feature = "embedded-worker")]
pub mod local_worker;
pub mod octave_rows;
pub mod output;
pub mod pace;
pub mod progress;
pub mod region_frames;
pub mod render;
pub mod source_files;
pub mod store;
pub mod tile_executor;
pub mod video;
pub mod web;
pub mod whole_file;

pub use tile_executor::TileExecutor;
