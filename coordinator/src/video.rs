//! The frames of a render assembled into an MP4 (H.264, yuv420p) by ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use dreamfarm_common::params::VideoSettings;

/// Why no video was made. The frames are untouched either way.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// ffmpeg is not installed.
    #[error(
        "ffmpeg was not found, so no video was made; the frames are in {frames}. Fix: install ffmpeg (e.g. `apt-get install ffmpeg`) and re-run the same command: it only assembles the video"
    )]
    NoFfmpeg {
        /// The frames folder.
        frames: PathBuf,
    },
    /// ffmpeg failed.
    #[error("ffmpeg failed to make {video}: {reason}; the frames are in {frames}")]
    Failed {
        /// The intended video.
        video: PathBuf,
        /// The frames folder.
        frames: PathBuf,
        /// ffmpeg's last words.
        reason: String,
    },
}

/// Encodes `pattern` (e.g. `dir/%06d.png`) into `video`, atomically. Odd
/// frame sizes are padded by one pixel: yuv420p needs even sides.
pub fn assemble(pattern: &Path, video: &Path, settings: &VideoSettings) -> Result<(), VideoError> {
    let frames = pattern.parent().unwrap_or(Path::new(".")).to_path_buf();
    // Hidden until complete: a client fetching the folder skips it, and a
    // render killed mid-encode leaves no half video under a real name.
    let partial = video.with_file_name(format!(
        ".{}.partial.mp4",
        video.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let output = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-framerate"])
        .arg(settings.fps.to_string())
        .arg("-i")
        .arg(pattern)
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf"])
        .arg(settings.crf.to_string())
        .args([
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-movflags",
            "+faststart",
        ])
        .arg(&partial)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VideoError::NoFfmpeg { frames });
        }
        Err(e) => {
            return Err(VideoError::Failed {
                video: video.into(),
                frames,
                reason: e.to_string(),
            });
        }
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(VideoError::Failed {
            video: video.into(),
            frames,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    std::fs::rename(&partial, video).map_err(|e| VideoError::Failed {
        video: video.into(),
        frames,
        reason: e.to_string(),
    })
}
