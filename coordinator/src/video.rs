//! The frames of a render encoded into an MP4 (H.264, yuv420p) by ffmpeg:
//! either fed to it as they are written, so that the video is ready when
//! the last frame is ([`VideoStream`]), or assembled from the frames on
//! disk afterwards ([`assemble`]). Both give ffmpeg the same pixels and
//! the same settings.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

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

/// When a render's video is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoEncoding {
    /// Each frame is fed to ffmpeg as it is written, so the video is ready
    /// when the last frame is; a resumed render feeds it the frames on disk
    /// first. A render whose stream fails, or whose frames are all on disk
    /// already, assembles the video at the end instead.
    WhileRendering,
    /// From the frames on disk once the last is written: no encoder runs
    /// beside the frame loop, whose cores it would share (a coordinator's
    /// choice; the memory is the same, see `memory_budget::job_bytes`).
    AfterLastFrame,
}

/// Most threads x264 is given: each holds a frame, and eight encode a 4K
/// video faster than a farm dreams it.
const MAX_ENCODER_THREADS: usize = 8;

/// Threads x264 encodes with: its own default of 1.5 a core, but counted
/// from the cores this process may use (a container's CPU limit included,
/// which x264's count ignores) and at most `MAX_ENCODER_THREADS`. Set
/// rather than left to x264 because each thread holds frames, which the
/// coordinator's memory budget charges.
pub fn encoder_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    (cores * 3 / 2).clamp(1, MAX_ENCODER_THREADS)
}

/// The video a render makes, and when it is encoded.
#[derive(Debug, Clone, Copy)]
pub struct VideoOut<'a> {
    /// The MP4 file.
    pub path: &'a Path,
    /// When its frames are encoded.
    pub encoding: VideoEncoding,
}

/// Where `video` is written until it is complete: hidden, so that a client
/// fetching the folder skips it and a render killed mid-encode leaves no
/// half video under a real name. Any file already there is removed, so
/// that ffmpeg writes a new one: the ffmpeg of a render killed with
/// `kill -9` ends its own video when its input closes, into the old one.
fn fresh_partial(video: &Path) -> PathBuf {
    let partial = video.with_file_name(format!(
        ".{}.partial.mp4",
        video.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&partial);
    partial
}

/// ffmpeg's arguments after its input's: H.264 in yuv420p at `settings`'
/// quality with [`encoder_threads`] into `partial`, odd sides padded by
/// one pixel (yuv420p needs even sides).
fn output_args(settings: &VideoSettings, partial: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf"]
        .map(OsString::from)
        .into();
    args.push(settings.crf.to_string().into());
    args.push("-threads".into());
    args.push(encoder_threads().to_string().into());
    args.extend(
        [
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-movflags",
            "+faststart",
        ]
        .map(OsString::from),
    );
    args.push(partial.into());
    args
}

/// Moves the finished `partial` to `video` once ffmpeg has ended with
/// `status`; `stderr` is its last words.
fn publish(
    status: std::process::ExitStatus,
    stderr: &[u8],
    partial: &Path,
    video: &Path,
    frames: PathBuf,
) -> Result<(), VideoError> {
    if !status.success() {
        let _ = std::fs::remove_file(partial);
        return Err(VideoError::Failed {
            video: video.into(),
            frames,
            reason: String::from_utf8_lossy(stderr).trim().to_string(),
        });
    }
    std::fs::rename(partial, video).map_err(|e| VideoError::Failed {
        video: video.into(),
        frames,
        reason: e.to_string(),
    })
}

/// ffmpeg, quiet but for errors, overwriting its output.
fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-y", "-loglevel", "error"]);
    command
}

/// ffmpeg encoding a video from 8-bit RGB frames fed one at a time.
/// Dropped before [`finish`](Self::finish), it stops ffmpeg and removes
/// the partial video.
pub struct VideoStream {
    /// `None` once ended (finished or dropped).
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// What ffmpeg says, in a file rather than a pipe: a pipe nobody reads
    /// until the end would stop ffmpeg, and the render with it, once full.
    stderr: std::fs::File,
    frame_bytes: usize,
    partial: PathBuf,
    video: PathBuf,
}

impl VideoStream {
    /// Starts ffmpeg encoding `width`×`height` frames into `video`.
    pub fn start(
        video: &Path,
        width: u32,
        height: u32,
        settings: &VideoSettings,
    ) -> Result<Self, VideoError> {
        let partial = fresh_partial(video);
        let stderr = tempfile::tempfile()
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| VideoError::Failed {
                video: video.into(),
                frames: frames_dir(video),
                reason: format!("no temporary file for ffmpeg's messages ({e})"),
            })?;
        let spawned = ffmpeg()
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg("-s")
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(settings.fps.to_string())
            .args(["-i", "-"])
            .args(output_args(settings, &partial))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr.0)
            .spawn();
        let mut child = spawned.map_err(|e| spawn_error(e, video))?;
        Ok(Self {
            stdin: child.stdin.take(),
            child: Some(child),
            stderr: stderr.1,
            frame_bytes: 3 * width as usize * height as usize,
            partial,
            video: video.into(),
        })
    }

    /// Feeds the next frame (8-bit RGB, the stream's size); waits while
    /// ffmpeg is behind.
    pub fn push(&mut self, rgb: &[u8]) -> std::io::Result<()> {
        if rgb.len() != self.frame_bytes {
            return Err(std::io::Error::other(format!(
                "a frame of {} bytes in a stream of {}-byte frames",
                rgb.len(),
                self.frame_bytes
            )));
        }
        match &mut self.stdin {
            Some(stdin) => stdin.write_all(rgb),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Ends the stream and puts the video in place, atomically.
    pub fn finish(mut self) -> Result<(), VideoError> {
        drop(self.stdin.take());
        let frames = frames_dir(&self.video);
        let mut child = self
            .child
            .take()
            .expect("ffmpeg runs until the stream ends");
        let status = child.wait().map_err(|e| VideoError::Failed {
            video: self.video.clone(),
            frames: frames.clone(),
            reason: e.to_string(),
        })?;
        let mut said = Vec::new();
        let _ = self
            .stderr
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| self.stderr.read_to_end(&mut said));
        publish(status, &said, &self.partial, &self.video, frames)
    }
}

impl Drop for VideoStream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(self.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The folder of the frames: the one holding `file` (the video, or the
/// frames' file pattern).
fn frames_dir(file: &Path) -> PathBuf {
    file.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// What a failure to start ffmpeg for `video` means.
fn spawn_error(e: std::io::Error, video: &Path) -> VideoError {
    let frames = frames_dir(video);
    if e.kind() == std::io::ErrorKind::NotFound {
        VideoError::NoFfmpeg { frames }
    } else {
        VideoError::Failed {
            video: video.into(),
            frames,
            reason: e.to_string(),
        }
    }
}

/// Encodes `pattern` (e.g. `dir/%06d.png`) into `video`, atomically. A
/// frame ffmpeg cannot decode fails it (`-xerror`): by default ffmpeg
/// would say so, exit 0 and fill the gap with the frame before.
pub fn assemble(pattern: &Path, video: &Path, settings: &VideoSettings) -> Result<(), VideoError> {
    let frames = frames_dir(pattern);
    let partial = fresh_partial(video);
    let output = ffmpeg()
        .arg("-xerror")
        .arg("-framerate")
        .arg(settings.fps.to_string())
        .arg("-i")
        .arg(pattern)
        .args(output_args(settings, &partial))
        .output()
        .map_err(|e| spawn_error(e, video))?;
    publish(output.status, &output.stderr, &partial, video, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ends_in_the_video_and_one_dropped_early_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let video = dir.path().join("v.mp4");
        let settings = VideoSettings::default();
        let frame = vec![128u8; 3 * 16 * 16];
        let files = || -> Vec<_> {
            std::fs::read_dir(dir.path())
                .expect("folder")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };

        let mut stream = VideoStream::start(&video, 16, 16, &settings).expect("ffmpeg starts");
        assert!(
            stream.push(&frame[1..]).is_err(),
            "a frame of the wrong size"
        );
        stream.push(&frame).expect("a frame");
        // Under way: ffmpeg has opened its output.
        let started = std::time::Instant::now();
        while files().is_empty() {
            assert!(started.elapsed().as_secs() < 30, "ffmpeg wrote nothing");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(stream);
        assert!(files().is_empty(), "a dropped stream left {:?}", files());

        let mut stream = VideoStream::start(&video, 16, 16, &settings).expect("ffmpeg starts");
        for _ in 0..3 {
            stream.push(&frame).expect("a frame");
        }
        stream.finish().expect("the video");
        assert_eq!(files(), ["v.mp4"], "the video alone, no partial file");
    }

    #[test]
    fn the_memory_budget_charges_more_than_a_streaming_ffmpeg_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let video = dir.path().join("v.mp4");
        let (w, h) = (1280u32, 720u32);
        let mut stream =
            VideoStream::start(&video, w, h, &VideoSettings::default()).expect("ffmpeg starts");
        let pid = stream.child.as_ref().expect("running").id();
        // Past x264's 40-frame lookahead, moving content so that every
        // frame is coded.
        for n in 0..60u32 {
            let frame: Vec<u8> = (0..3 * w * h)
                .map(|i| ((i / 3 % w + n * 7) ^ (i / 3 / w * 3)) as u8)
                .collect();
            stream.push(&frame).expect("a frame");
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        stream.finish().expect("the video");
        let charged = crate::cluster::memory_budget::encoder_bytes(w, h, encoder_threads()) as f64;
        let peak = (peak_kib * 1024) as f64;
        assert!(
            peak < charged && peak > charged / 2.0,
            "ffmpeg peaked at {:.0} MiB, charged {:.0} MiB",
            peak / 1048576.0,
            charged / 1048576.0
        );
    }

    #[test]
    fn a_stream_ffmpeg_refuses_fails_with_what_ffmpeg_said() {
        let dir = tempfile::tempdir().expect("temp dir");
        let video = dir.path().join("v.mp4");
        let stream = VideoStream::start(&video, 0, 0, &VideoSettings::default());
        let failure = stream.expect("ffmpeg starts").finish();
        match failure {
            Err(VideoError::Failed { reason, .. }) => {
                assert!(!reason.is_empty(), "ffmpeg's words are lost")
            }
            other => panic!("a 0x0 video was made: {other:?}"),
        }
        assert!(!video.exists());
    }

    #[test]
    fn frames_with_a_damaged_one_make_no_video() {
        let dir = tempfile::tempdir().expect("temp dir");
        let video = dir.path().join("v.mp4");
        let frame = image::RgbImage::from_pixel(16, 16, image::Rgb([90, 120, 200]));
        for n in 0..4 {
            frame
                .save(dir.path().join(format!("{n:06}.png")))
                .expect("a frame");
        }
        let pattern = dir.path().join("%06d.png");
        assemble(&pattern, &video, &VideoSettings::default()).expect("the video");
        std::fs::remove_file(&video).expect("remove");
        std::fs::write(dir.path().join("000002.png"), b"garbage").expect("damage");
        match assemble(&pattern, &video, &VideoSettings::default()) {
            Err(VideoError::Failed { reason, .. }) => {
                assert!(reason.contains("PNG"), "ffmpeg's words: {reason}")
            }
            other => panic!("a video was made from a damaged frame: {other:?}"),
        }
        assert!(!video.exists());
    }
}
