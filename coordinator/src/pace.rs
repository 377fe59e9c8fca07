//! A render run's pace: frames per minute, and the time left, from the frames
//! this run has written. The time left counts down while a frame dreams, so a
//! status read in the middle of a long frame is not a whole frame stale.

use std::time::Instant;

/// When a run started, and how far it has come.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// When this run started.
    started: Instant,
    /// Frames on disk when it started (a resumed render's earlier frames
    /// say nothing of this run's speed).
    frames_at_start: u64,
    /// Frames on disk now.
    frames_done: u64,
    /// When the latest frame was written.
    last_frame: Instant,
}

impl Pace {
    /// A run starting now with `frames_done` frames on disk.
    pub fn start(frames_done: u64) -> Self {
        Self::start_at(Instant::now(), frames_done)
    }

    /// A run started at `now` with `frames_done` frames on disk.
    fn start_at(now: Instant, frames_done: u64) -> Self {
        Self {
            started: now,
            frames_at_start: frames_done,
            frames_done,
            last_frame: now,
        }
    }

    /// Frame `n` (0-based) was written now.
    pub fn frame_written(&mut self, n: u64) {
        self.frame_written_at(n, Instant::now());
    }

    /// Frame `n` was written at `now`.
    fn frame_written_at(&mut self, n: u64, now: Instant) {
        self.frames_done = self.frames_done.max(n + 1);
        self.last_frame = now;
    }

    /// Frames on disk.
    pub fn frames_done(&self) -> u64 {
        self.frames_done
    }

    /// Frames this run has written.
    fn frames_run(&self) -> u64 {
        self.frames_done.saturating_sub(self.frames_at_start)
    }

    /// Frames per minute this run has written by `now` (0 before its first).
    pub fn frames_per_minute(&self, now: Instant) -> f64 {
        let seconds = now.duration_since(self.started).as_secs_f64().max(1.0);
        self.frames_run() as f64 * 60.0 / seconds
    }

    /// Seconds until all `frames_total` frames are written, seen at `now`;
    /// 0 when unknown (no frame yet) or none are left.
    ///
    /// Each frame left is taken to last as long as this run's frames have on
    /// average, and the time the current frame has already dreamed is taken
    /// off, so the figure counts down between frames. A frame running past
    /// the average is taken to be nearly done: the figure then holds at the
    /// frames after it rather than dropping to nothing.
    pub fn seconds_left(&self, frames_total: u64, now: Instant) -> f64 {
        let (frames, left) = (
            self.frames_run(),
            frames_total.saturating_sub(self.frames_done),
        );
        if frames == 0 || left == 0 {
            return 0.0;
        }
        let per_frame = self.last_frame.duration_since(self.started).as_secs_f64() / frames as f64;
        let dreamed = now.duration_since(self.last_frame).as_secs_f64();
        (per_frame * left as f64 - dreamed).max(per_frame * (left - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_time_left_counts_down_during_a_frame_and_holds_when_it_overruns() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Resumed with 10 of 20 frames on disk: no pace before this run's
        // first frame.
        let mut pace = Pace::start_at(t0, 10);
        assert_eq!(pace.seconds_left(20, at(30)), 0.0);
        assert_eq!(pace.frames_per_minute(at(30)), 0.0);
        // Two frames in 60 s: 30 s a frame, 8 frames left.
        pace.frame_written_at(10, at(30));
        pace.frame_written_at(11, at(60));
        assert_eq!(pace.frames_done(), 12);
        assert_eq!(pace.seconds_left(20, at(60)), 240.0);
        assert_eq!(pace.frames_per_minute(at(60)), 2.0);
        // Counts down while frame 12 dreams…
        assert_eq!(pace.seconds_left(20, at(70)), 230.0);
        // …and holds at the seven frames after it once it overruns.
        assert_eq!(pace.seconds_left(20, at(100)), 210.0);
        assert_eq!(pace.seconds_left(20, at(1000)), 210.0);
        // Nothing left, nothing to wait for.
        pace.frame_written_at(19, at(300));
        assert_eq!(pace.seconds_left(20, at(300)), 0.0);
    }
}
