//! Render progress: a bar with ETA on a terminal, plain log lines otherwise
//! (CI logs, `nohup`, Kubernetes); durations as people write them.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::pace::Pace;

/// Reports frames as they finish.
pub struct FrameProgress {
    bar: Option<ProgressBar>,
    total: u64,
    /// Shared with the bar, which reads the time left from it every second.
    pace: Arc<Mutex<Pace>>,
}

/// How often a terminal's bar is redrawn between frames, so that its
/// clock runs and its time left counts down through a long frame.
const TICK: Duration = Duration::from_secs(1);

impl FrameProgress {
    /// Progress of a render of `total` frames of which `done` already exist.
    pub fn new(total: u64, done: u64) -> Self {
        let pace = Arc::new(Mutex::new(Pace::start(done)));
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total).with_position(done);
            let shared = pace.clone();
            let left = move |_: &ProgressState, w: &mut dyn fmt::Write| {
                let seconds = lock(&shared).seconds_left(total, Instant::now());
                let _ = w.write_str(&duration(seconds));
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} frame {pos}/{len} [{bar:40}] {elapsed_precise} ETA {left} {msg}",
                )
                .expect("valid template")
                .with_key("left", left)
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(TICK);
            bar
        });
        Self { bar, total, pace }
    }

    /// Frame `n` (0-based) has been written.
    pub fn frame_done(&mut self, n: u64, seconds: f64) {
        let eta = {
            let mut pace = lock(&self.pace);
            pace.frame_written(n);
            pace.seconds_left(self.total, Instant::now())
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position(n + 1);
                bar.set_message(format!("{seconds:.1} s/frame"));
            }
            None => {
                tracing::info!(
                    frame = n,
                    of = self.total,
                    seconds = format!("{seconds:.2}"),
                    eta_s = format!("{eta:.0}"),
                    "frame written"
                );
            }
        }
    }

    /// The render is over.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The pace, whole even if a thread panicked holding it.
fn lock(pace: &Mutex<Pace>) -> MutexGuard<'_, Pace> {
    pace.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds as "1 h 02 min", "3 min 20 s" or "12 s"; "—" when unknown.
pub fn duration(seconds: f64) -> String {
    if !(seconds.is_finite() && seconds > 0.0) {
        return "—".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(0.0), "—");
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
    }
}
