//! Frames compressed and written on their own thread: the PNG of frame n is
//! encoded and synced to disk while frame n+1 dreams, off the frame loop's
//! critical path (a 4K PNG takes longer than a 4K frame's other host work).

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use crate::output::{OutputDir, OutputError};

/// A frame on disk: its number and the seconds the render spent on it.
pub type Written = (u64, f64);

/// The writing thread of one render, living in the render's thread scope.
pub struct FrameWriter<'scope> {
    queue: SyncSender<(u64, Vec<u8>, f64)>,
    written: Receiver<Result<Written, OutputError>>,
    thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> FrameWriter<'scope> {
    /// Starts writing `width`×`height` frames into `out`. At most one frame
    /// waits while another is written, so memory stays at two frames.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        out: &'env OutputDir,
        width: u32,
        height: u32,
    ) -> Self {
        let (queue, frames) = sync_channel::<(u64, Vec<u8>, f64)>(1);
        let (done, written) = channel();
        let thread = scope.spawn(move || {
            for (n, rgb, seconds) in frames {
                let result = out.write_frame(n, width, height, rgb);
                let failed = result.is_err();
                if done.send(result.map(|()| (n, seconds))).is_err() || failed {
                    return;
                }
            }
        });
        Self {
            queue,
            written,
            thread,
        }
    }

    /// Queues frame `n` (8-bit RGB); waits while another frame is queued.
    /// Fails with the error that stopped the thread, if one did.
    pub fn write(&mut self, n: u64, rgb: Vec<u8>, seconds: f64) -> Result<(), OutputError> {
        if self.queue.send((n, rgb, seconds)).is_err() {
            // The thread ended after a failure, which it reported.
            while let Ok(result) = self.written.recv() {
                result?;
            }
            return Err(OutputError::WriterGone);
        }
        Ok(())
    }

    /// The frames written since the last call, in order; fails at the
    /// first that could not be.
    pub fn written(&mut self) -> Result<Vec<Written>, OutputError> {
        let mut frames = Vec::new();
        loop {
            match self.written.try_recv() {
                Ok(result) => frames.push(result?),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(frames),
            }
        }
    }

    /// Writes what is queued, ends the thread and returns the frames
    /// written since the last [`written`](Self::written).
    pub fn finish(self) -> Result<Vec<Written>, OutputError> {
        let Self {
            queue,
            written,
            thread,
        } = self;
        drop(queue);
        let frames = written.iter().collect::<Result<Vec<_>, _>>();
        if thread.join().is_err() {
            return Err(OutputError::WriterGone);
        }
        frames
    }
}
