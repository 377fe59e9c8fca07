//! The frames of a render encoded into an MP4 (H.264, yuv420p) by ffmpeg:
//! either fed to it as they are written, so that the video is ready when
//! the last frame is ([`VideoStream`]), or assembled from the frames on
//! disk afterwards ([`assemble`]). Both give ffmpeg the same pixels and
//! the same settings, a segment of [`SEGMENT_FRAMES`] frames at a time,
//! and join the segments into the video without re-encoding them: a
//! resumed or extended render re-encodes at most the segment it stopped
//! in, not every frame before it (hours of a coordinator's cores for a
//! long 4K render).

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
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

/// Threads x264 encodes with, whatever the machine: they share out the
/// slices of each frame (see `output_args`), one slice a thread, so the
/// count is part of the video's bytes. A fixed count makes a render
/// resumed on a machine with other cores (a rescheduled pod, a laptop
/// continuing a server's render) end with the uninterrupted video, byte
/// for byte. Eight encode a 4K video faster than a farm dreams it; on
/// fewer cores the extra threads cost little time and almost no memory
/// (see the README).
pub const ENCODER_THREADS: usize = 8;

/// Frames in each segment of a video (the last may hold fewer): what a
/// resumed render re-encodes at most. Each segment starts with a key
/// frame; x264 puts one every 250 frames anyway, so joining them costs
/// nothing visible.
pub const SEGMENT_FRAMES: u64 = 500;

/// Where the segment of `video` starting at frame `first` is kept until the
/// video is joined: hidden beside it, so that fetch skips it, and named by
/// its first frame, so that a resumed render finds the ones done.
fn segment_path(video: &Path, first: u64) -> PathBuf {
    video.with_file_name(format!(
        ".{}.{first:06}.segment.mp4",
        video.file_stem().unwrap_or_default().to_string_lossy()
    ))
}

/// The first frames of the segments of a video of `total` frames.
fn segment_starts(total: u64) -> impl Iterator<Item = u64> {
    (0..total).step_by(SEGMENT_FRAMES as usize)
}

/// The first frame a video of `video` still needs encoded when `on_disk`
/// frames are written: the start of the first segment before them that is
/// not on disk, or of the segment holding frame `on_disk`.
fn first_unencoded(video: &Path, on_disk: u64) -> u64 {
    let whole = on_disk - on_disk % SEGMENT_FRAMES;
    segment_starts(whole)
        .find(|&first| !segment_path(video, first).is_file())
        .unwrap_or(whole)
}

/// The video a render makes, and when it is encoded.
#[derive(Debug, Clone, Copy)]
pub struct VideoOut<'a> {
    /// The MP4 file.
    pub path: &'a Path,
    /// When its frames are encoded.
    pub encoding: VideoEncoding,
}

/// Where `file` (a video or a segment) is written until it is complete:
/// hidden, so that a client fetching the folder skips it and a render
/// killed mid-encode leaves no half file under a real name. Any file
/// already there is removed, so that ffmpeg writes a new one: the ffmpeg of
/// a render killed with `kill -9` ends its own file when its input closes,
/// into the old one.
fn fresh_partial(file: &Path) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let partial = file.with_file_name(format!(
        "{}{stem}.partial.mp4",
        if stem.starts_with('.') { "" } else { "." }
    ));
    let _ = std::fs::remove_file(&partial);
    partial
}

/// ffmpeg's arguments after its input's: H.264 in yuv420p at `settings`'
/// quality with [`ENCODER_THREADS`] into `partial`, odd sides padded by
/// one pixel (yuv420p needs even sides).
///
/// The threads split each frame into slices rather than encode several
/// frames at once (x264's default): frame threads wait on each other's
/// rows, and on a loaded machine x264 then sometimes decides differently,
/// so the same frames gave another file (7 in 400 encodes of one 96x64
/// clip, eight at a time on two cores; `bench/encoder_determinism.sh`)
/// and a resumed render's video was not the uninterrupted one's. Slices
/// gave the same file every time, and at 4K the same size and quality
/// (0.5% smaller, 0.03 dB lower PSNR) in less time and memory.
fn output_args(settings: &VideoSettings, partial: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf"]
        .map(OsString::from)
        .into();
    args.push(settings.crf.to_string().into());
    args.push("-threads".into());
    args.push(ENCODER_THREADS.to_string().into());
    args.extend(["-x264-params", "sliced-threads=1"].map(OsString::from));
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

/// Moves the finished `partial` to `target` (a segment of `video`, or
/// `video` itself) once ffmpeg has ended with `status`; `stderr` is its
/// last words.
fn publish(
    status: std::process::ExitStatus,
    stderr: &[u8],
    (partial, target): (&Path, &Path),
    video: &Path,
) -> Result<(), VideoError> {
    let failed = |reason: String| VideoError::Failed {
        video: video.into(),
        frames: frames_dir(video),
        reason,
    };
    if !status.success() {
        let _ = std::fs::remove_file(partial);
        return Err(failed(String::from_utf8_lossy(stderr).trim().to_string()));
    }
    std::fs::rename(partial, target).map_err(|e| failed(e.to_string()))
}

/// ffmpeg, quiet but for errors, overwriting its output.
fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-y", "-loglevel", "error"]);
    dreamfarm_proto::open_files::child_limit(&mut command);
    command
}

/// ffmpeg encoding one segment of a video from 8-bit RGB frames fed one at
/// a time. Dropped before [`finish`](Self::finish), it stops ffmpeg and
/// removes the partial segment.
struct SegmentEncoder {
    /// `None` once ended (finished or dropped).
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// What ffmpeg says, in a file rather than a pipe: a pipe nobody reads
    /// until the end would stop ffmpeg, and the render with it, once full.
    stderr: std::fs::File,
    frame_bytes: usize,
    partial: PathBuf,
    segment: PathBuf,
}

impl SegmentEncoder {
    /// Starts ffmpeg encoding the segment of `video` from frame `first`.
    fn start(
        video: &Path,
        first: u64,
        (width, height): (u32, u32),
        settings: &VideoSettings,
    ) -> Result<Self, VideoError> {
        let segment = segment_path(video, first);
        let partial = fresh_partial(&segment);
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
            segment,
        })
    }

    /// Feeds the next frame; waits while ffmpeg is behind.
    fn push(&mut self, rgb: &[u8]) -> std::io::Result<()> {
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

    /// Ends the segment and puts it in place, atomically.
    fn finish(mut self, video: &Path) -> Result<(), VideoError> {
        drop(self.stdin.take());
        let status = match self.child.take() {
            Some(mut child) => child.wait().map_err(|e| spawn_error(e, video))?,
            None => return Err(spawn_error(std::io::ErrorKind::BrokenPipe.into(), video)),
        };
        let mut said = Vec::new();
        let _ = self
            .stderr
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| self.stderr.read_to_end(&mut said));
        publish(status, &said, (&self.partial, &self.segment), video)
    }
}

impl Drop for SegmentEncoder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(self.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// A video encoded from 8-bit RGB frames fed one at a time, a segment at a
/// time. A stream started for a resumed render continues after the
/// segments already on disk: feed it from [`next_frame`](Self::next_frame).
/// Dropped before [`finish`](Self::finish), it stops ffmpeg and removes the
/// partial segment; the finished segments stay for the next resume.
pub struct VideoStream {
    video: PathBuf,
    size: (u32, u32),
    settings: VideoSettings,
    /// The first frame of the segment being encoded.
    first: u64,
    /// Frames of that segment fed so far.
    fed: u64,
    /// Its encoder; `None` between two segments.
    encoder: Option<SegmentEncoder>,
}

impl VideoStream {
    /// Starts ffmpeg encoding `width`×`height` frames into `video` after the
    /// segments already encoded of its first `on_disk` frames.
    pub fn start(
        video: &Path,
        width: u32,
        height: u32,
        settings: &VideoSettings,
        on_disk: u64,
    ) -> Result<Self, VideoError> {
        let first = first_unencoded(video, on_disk);
        if first > 0 {
            tracing::info!(
                frame = first,
                "the video's segments before this frame are encoded; its encoding resumes here"
            );
        }
        let encoder = SegmentEncoder::start(video, first, (width, height), settings)?;
        Ok(Self {
            video: video.into(),
            size: (width, height),
            settings: *settings,
            first,
            fed: 0,
            encoder: Some(encoder),
        })
    }

    /// The frame the stream takes next.
    pub fn next_frame(&self) -> u64 {
        self.first + self.fed
    }

    /// Feeds the next frame (8-bit RGB, the stream's size); waits while
    /// ffmpeg is behind, and while a finished segment is closed.
    pub fn push(&mut self, rgb: &[u8]) -> std::io::Result<()> {
        if self.fed == SEGMENT_FRAMES {
            // One encoder at a time: the memory budget charges one.
            if let Some(done) = self.encoder.take() {
                done.finish(&self.video).map_err(std::io::Error::other)?;
            }
            self.first += SEGMENT_FRAMES;
            self.fed = 0;
        }
        let encoder = match self.encoder.take() {
            Some(encoder) => encoder,
            None => SegmentEncoder::start(&self.video, self.first, self.size, &self.settings)
                .map_err(std::io::Error::other)?,
        };
        self.encoder.insert(encoder).push(rgb)?;
        self.fed += 1;
        Ok(())
    }

    /// Ends the stream and puts the video in place, atomically.
    pub fn finish(mut self) -> Result<(), VideoError> {
        if let Some(last) = self.encoder.take() {
            last.finish(&self.video)?;
        }
        join(&self.video, self.next_frame(), self.settings.fps)
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

/// Encodes the frames `pattern` (e.g. `dir/%06d.png`) names, `total` of
/// them, into `video`, atomically, reusing the whole segments a stream left
/// on disk. A frame ffmpeg cannot decode fails it (`-xerror`): by default
/// ffmpeg would say so, exit 0 and fill the gap with the frame before.
pub fn assemble(
    pattern: &Path,
    video: &Path,
    settings: &VideoSettings,
    total: u64,
) -> Result<(), VideoError> {
    for first in segment_starts(total) {
        let count = SEGMENT_FRAMES.min(total - first);
        let segment = segment_path(video, first);
        if count == SEGMENT_FRAMES && segment.is_file() {
            continue;
        }
        let partial = fresh_partial(&segment);
        let output = ffmpeg()
            .arg("-xerror")
            .arg("-framerate")
            .arg(settings.fps.to_string())
            .arg("-start_number")
            .arg(first.to_string())
            .arg("-i")
            .arg(pattern)
            .arg("-frames:v")
            .arg(count.to_string())
            .args(output_args(settings, &partial))
            .output()
            .map_err(|e| spawn_error(e, video))?;
        publish(output.status, &output.stderr, (&partial, &segment), video)?;
    }
    join(video, total, settings.fps)
}

/// Joins the segments of a video of `total` frames into `video`, atomically
/// and without re-encoding them (ffmpeg's concat demuxer, streams copied).
/// The whole segments stay, hidden: a longer run of the same job (`extend`,
/// or `render` with more frames) re-encodes only from the last of them. At
/// about the video's size, they add a few percent to the frames' folder.
/// The last segment, short of [`SEGMENT_FRAMES`], is removed.
fn join(video: &Path, total: u64, fps: u32) -> Result<(), VideoError> {
    let failed = |reason: String| VideoError::Failed {
        video: video.into(),
        frames: frames_dir(video),
        reason,
    };
    let segments: Vec<(PathBuf, f64)> = segment_starts(total)
        .map(|first| {
            let frames = SEGMENT_FRAMES.min(total - first);
            (segment_path(video, first), frames as f64 / f64::from(fps))
        })
        .collect();
    let list = concat_list(&segments)
        .map_err(|e| failed(format!("cannot list the video's segments: {e}")))?;
    let partial = fresh_partial(video);
    let output = ffmpeg()
        .args(["-f", "concat", "-safe", "0", "-i"])
        .arg(list.path())
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&partial)
        .output()
        .map_err(|e| spawn_error(e, video))?;
    publish(output.status, &output.stderr, (&partial, video), video)?;
    if !total.is_multiple_of(SEGMENT_FRAMES) {
        let _ = std::fs::remove_file(segment_path(video, total - total % SEGMENT_FRAMES));
    }
    Ok(())
}

/// The concat demuxer's list of `files` and their durations in seconds: a
/// `file '…'` line each, the path absolute and a quote in it written
/// `'\''`, as its documentation asks, and its duration, so that each file
/// starts exactly where the frames before it end (from the files' own
/// lengths, which count x264's start delay, each joint would be a third
/// of a millisecond late).
fn concat_list(files: &[(PathBuf, f64)]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::ffi::OsStrExt;
    let mut list = tempfile::NamedTempFile::new()?;
    for (file, seconds) in files {
        let path = std::path::absolute(file)?;
        let mut line = b"file '".to_vec();
        for &b in path.as_os_str().as_bytes() {
            match b {
                b'\'' => line.extend_from_slice(br"'\''"),
                _ => line.push(b),
            }
        }
        line.extend_from_slice(format!("'\nduration {seconds:.6}\n").as_bytes());
        list.write_all(&line)?;
    }
    list.flush()?;
    Ok(list)
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

        let mut stream = VideoStream::start(&video, 16, 16, &settings, 0).expect("ffmpeg starts");
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

        let mut stream = VideoStream::start(&video, 16, 16, &settings, 0).expect("ffmpeg starts");
        for _ in 0..3 {
            stream.push(&frame).expect("a frame");
        }
        stream.finish().expect("the video");
        assert_eq!(files(), ["v.mp4"], "the video alone, no partial file");
    }

    /// Frame `n` of a test video: 16x16, different from every other.
    fn frame(n: u64) -> Vec<u8> {
        (0..3 * 16 * 16u64)
            .map(|i| ((i / 3 % 16) * 9 + (i / 48) * 5 + n * 3 + (i % 3) * 70) as u8)
            .collect()
    }

    /// Frames in `video`, as ffprobe counts them.
    fn frames_in(video: &Path) -> u64 {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(video)
            .output()
            .expect("ffprobe runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a frame count")
    }

    #[test]
    fn a_resumed_stream_encodes_only_the_segment_it_stopped_in_and_makes_the_same_video() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = VideoSettings::default();
        let total = SEGMENT_FRAMES + 40;
        let stopped_at = SEGMENT_FRAMES + 20;
        let hidden = || -> Vec<String> {
            std::fs::read_dir(dir.path())
                .expect("folder")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        };

        // Uninterrupted: two segments joined, nothing else left.
        let whole = dir.path().join("whole.mp4");
        let mut stream = VideoStream::start(&whole, 16, 16, &settings, 0).expect("ffmpeg starts");
        for n in 0..total {
            assert_eq!(stream.next_frame(), n);
            stream.push(&frame(n)).expect("a frame");
        }
        stream.finish().expect("the video");
        assert_eq!(frames_in(&whole), total);
        // The whole segment stays for a longer run; the short one goes.
        assert_eq!(hidden(), [".whole.000000.segment.mp4"]);
        std::fs::remove_file(segment_path(&whole, 0)).expect("removed");

        // Stopped in the second segment: the first stays on disk, and the
        // stream started again takes frames from the second's start.
        let resumed = dir.path().join("resumed.mp4");
        let mut stream = VideoStream::start(&resumed, 16, 16, &settings, 0).expect("ffmpeg starts");
        for n in 0..stopped_at {
            stream.push(&frame(n)).expect("a frame");
        }
        drop(stream);
        assert_eq!(hidden(), [".resumed.000000.segment.mp4"]);
        let mut stream =
            VideoStream::start(&resumed, 16, 16, &settings, stopped_at).expect("ffmpeg starts");
        assert_eq!(stream.next_frame(), SEGMENT_FRAMES);
        for n in SEGMENT_FRAMES..total {
            stream.push(&frame(n)).expect("a frame");
        }
        stream.finish().expect("the video");
        assert!(
            std::fs::read(&resumed).ok() == std::fs::read(&whole).ok(),
            "the resumed video differs"
        );
        assert_eq!(hidden(), [".resumed.000000.segment.mp4"]);

        // Without its first segment on disk, a stream starts from frame 0.
        std::fs::remove_file(segment_path(&resumed, 0)).expect("removed");
        let stream = VideoStream::start(&resumed, 16, 16, &settings, stopped_at).expect("ffmpeg");
        assert_eq!(stream.next_frame(), 0);
        drop(stream);

        // Assembled from the frames on disk: the same video again.
        for n in 0..total {
            image::RgbImage::from_raw(16, 16, frame(n))
                .expect("16x16")
                .save(dir.path().join(format!("{n:06}.png")))
                .expect("a frame");
        }
        let assembled = dir.path().join("assembled.mp4");
        let pattern = dir.path().join("%06d.png");
        assemble(&pattern, &assembled, &settings, total).expect("the video");
        assert!(
            std::fs::read(&assembled).ok() == std::fs::read(&whole).ok(),
            "the assembled video differs"
        );
        assert_eq!(hidden(), [".assembled.000000.segment.mp4"]);
    }

    #[test]
    fn the_memory_budget_charges_more_than_a_streaming_ffmpeg_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let video = dir.path().join("v.mp4");
        let (w, h) = (1280u32, 720u32);
        let mut stream =
            VideoStream::start(&video, w, h, &VideoSettings::default(), 0).expect("ffmpeg starts");
        let pid = stream
            .encoder
            .as_ref()
            .and_then(|e| e.child.as_ref())
            .expect("running")
            .id();
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
        let charged = crate::cluster::memory_budget::encoder_bytes(w, h, ENCODER_THREADS) as f64;
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
        let stream = VideoStream::start(&video, 0, 0, &VideoSettings::default(), 0);
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
        assemble(&pattern, &video, &VideoSettings::default(), 4).expect("the video");
        std::fs::remove_file(&video).expect("remove");
        std::fs::write(dir.path().join("000002.png"), b"garbage").expect("damage");
        match assemble(&pattern, &video, &VideoSettings::default(), 4) {
            Err(VideoError::Failed { reason, .. }) => {
                assert!(reason.contains("PNG"), "ffmpeg's words: {reason}")
            }
            other => panic!("a video was made from a damaged frame: {other:?}"),
        }
        assert!(!video.exists());
    }
}
