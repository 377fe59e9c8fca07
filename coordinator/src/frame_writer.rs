//! Frames compressed and written on their own thread: the PNG of frame n is
//! encoded and synced to disk while frame n+1 dreams, off the frame loop's
//! critical path (a 4K PNG takes longer than a 4K frame's other host work).
//! Each frame is reported from that thread the moment it is on disk, not
//! when the frame loop next looks: a job's status, its record of finished
//! frames and its progress never lag a frame behind the disk. With a
//! [`VideoStream`], each frame is fed to the video's encoder once on disk;
//! a resumed render's stream is fed by a thread of its own, which reads the
//! frames it lacks (those of the segment the render stopped in) from disk,
//! the earlier ones first, so that the frame loop never waits for the
//! encoder to catch up.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use crate::output::{OutputDir, OutputError};
use crate::video::VideoStream;

/// The video a [`FrameWriter`] feeds.
pub struct VideoFeed {
    /// The encoder.
    pub stream: VideoStream,
    /// Frames already on disk: 0 for a render from its first frame, the
    /// frames done for a resumed one. Those the stream lacks (from its
    /// [`next_frame`](VideoStream::next_frame)) are read back from disk.
    pub on_disk: u64,
}

/// The writing thread of one render, living in the render's thread scope.
pub struct FrameWriter<'scope> {
    queue: SyncSender<(u64, Arc<Vec<u8>>, f64)>,
    failed: Receiver<OutputError>,
    /// Ends with the video stream, if it fed one and it did not fail.
    thread: ScopedJoinHandle<'scope, Option<VideoStream>>,
    /// The thread feeding a resumed render's stream from disk; it fails
    /// on a finished frame it cannot read.
    catch_up: Option<ScopedJoinHandle<'scope, Result<Option<VideoStream>, OutputError>>>,
}

impl<'scope> FrameWriter<'scope> {
    /// Starts writing `width`×`height` frames into `out`, calling
    /// `on_written(n, seconds)` on the writing thread as each is on disk,
    /// then feeding it to `video`, if given (the frames must then come in
    /// order from the first the stream lacks on disk). At most one frame
    /// waits while another is written, so memory stays at two frames.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        out: &'env OutputDir,
        (width, height): (u32, u32),
        video: Option<VideoFeed>,
        mut on_written: impl FnMut(u64, f64) + Send + 'scope,
    ) -> Self {
        let (queue, frames) = sync_channel::<(u64, Arc<Vec<u8>>, f64)>(1);
        let (failure, failed) = channel();
        // Its log lines belong to the job and frame loop that started it.
        let span = tracing::Span::current();
        // A resumed render's frames reach the stream from disk, through a
        // thread told of each new one; a fresh render's straight from here.
        let (mut video, catch_up, written) = match video {
            Some(VideoFeed { stream, on_disk }) if stream.next_frame() < on_disk => {
                let (written, heard) = channel();
                let span = span.clone();
                let lacking = stream.next_frame()..on_disk;
                let feeder = scope.spawn(move || {
                    let _span = span.enter();
                    feed_from_disk(out, (width, height), stream, lacking.chain(heard))
                });
                (None, Some(feeder), Some(written))
            }
            feed => (feed.map(|f| f.stream), None, None),
        };
        let thread = scope.spawn(move || {
            let _span = span.enter();
            for (n, rgb, seconds) in frames {
                if let Err(e) = out.write_frame(n, width, height, &rgb) {
                    let _ = failure.send(e);
                    return None;
                }
                on_written(n, seconds);
                if let Some(written) = &written {
                    // Gone only once the feeder gave up on its stream.
                    let _ = written.send(n);
                }
                if let Some(stream) = &mut video
                    && let Err(e) = stream.push(&rgb)
                {
                    stopped_taking(n, &e);
                    video = None;
                }
            }
            video
        });
        Self {
            queue,
            failed,
            thread,
            catch_up,
        }
    }

    /// Queues frame `n` (8-bit RGB, shared with the frame loop, which warps
    /// the next frame from it); waits while another frame is queued.
    /// Fails with the error that stopped the thread, if one did.
    pub fn write(&mut self, n: u64, rgb: Arc<Vec<u8>>, seconds: f64) -> Result<(), OutputError> {
        if self.queue.send((n, rgb, seconds)).is_err() {
            // The thread ended after a failure, which it reported.
            return Err(self.failed.recv().unwrap_or(OutputError::WriterGone));
        }
        Ok(())
    }

    /// Writes what is queued and ends the thread; returns the video stream
    /// every frame went to, or fails with the error that stopped the
    /// thread, if one did, else with a finished frame found damaged while
    /// feeding the stream from disk (the render's new frames are written
    /// all the same; no video is made from a damaged frame).
    pub fn finish(self) -> Result<Option<VideoStream>, OutputError> {
        let Self {
            queue,
            failed,
            thread,
            catch_up,
        } = self;
        drop(queue);
        let Ok(video) = thread.join() else {
            return Err(OutputError::WriterGone);
        };
        // The writer has ended, so the feeder hears of no more frames.
        let fed = catch_up.map(ScopedJoinHandle::join);
        if let Ok(e) = failed.try_recv() {
            return Err(e);
        }
        match fed {
            Some(Ok(fed)) => fed,
            Some(Err(_)) => Ok(None),
            None => Ok(video),
        }
    }
}

/// Feeds `stream` the `frames` of `out`, read from disk in order; `None`
/// once the encoder stops taking them (the stream, dropped, stops ffmpeg,
/// and the render assembles the video from the frames at the end
/// instead). A frame that cannot be read is damaged finished work: the
/// stream is dropped and the error returned, for the render to end with.
fn feed_from_disk(
    out: &OutputDir,
    (width, height): (u32, u32),
    mut stream: VideoStream,
    frames: impl Iterator<Item = u64>,
) -> Result<Option<VideoStream>, OutputError> {
    for n in frames {
        let rgb = out.read_frame(n, width, height).inspect_err(|e| {
            tracing::warn!(
                frame = n,
                error = %e,
                "a finished frame is damaged: the render writes its new frames, then fails with this error and makes no video"
            );
        })?;
        if let Err(e) = stream.push(&rgb) {
            stopped_taking(n, &e);
            return Ok(None);
        }
    }
    Ok(Some(stream))
}

/// Says that frame `n` did not reach the video's encoder.
fn stopped_taking(n: u64, e: &std::io::Error) {
    tracing::warn!(frame = n, error = %e, "the video encoder stopped taking frames; the video will be assembled after the last frame");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_frame_is_reported_once_on_disk_without_waiting_for_the_next() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = OutputDir::existing(dir.path());
        let (tx, rx) = channel();
        std::thread::scope(|scope| {
            let mut writer = FrameWriter::start(scope, &out, (2, 2), None, move |n, _| {
                let _ = tx.send(n);
            });
            for n in 0..3 {
                writer.write(n, Arc::new(vec![7; 12]), 0.5).expect("queued");
                // The frame loop now dreams frame n + 1, however long that
                // takes; frame n is already known to be on disk.
                assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(n));
                assert_eq!(out.frames_done(), n + 1);
            }
            writer.finish().expect("written");
        });
    }

    #[test]
    fn a_frame_that_cannot_be_written_fails_the_render_and_is_not_reported() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        // A file where the folder should be: nothing can be written in it.
        let out = OutputDir::existing(file.path());
        let (tx, rx) = channel();
        std::thread::scope(|scope| {
            let mut writer = FrameWriter::start(scope, &out, (2, 2), None, move |n, _| {
                let _ = tx.send(n);
            });
            writer.write(0, Arc::new(vec![7; 12]), 0.5).expect("queued");
            assert!(writer.finish().is_err());
        });
        assert!(rx.try_recv().is_err(), "a frame not on disk was reported");
    }
}
