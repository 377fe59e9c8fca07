//! Render progress: a bar with ETA on a terminal, plain log lines otherwise
//! (CI logs, `nohup`, Kubernetes); durations as people write them.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::pace::Pace;

/// Reports frames as they finish.
pub struct FrameProgress {
    bar: Option<ProgressBar>,
    total: u64,
    pace: Pace,
}

impl FrameProgress {
    /// Progress of a render of `total` frames of which `done` already exist.
    pub fn new(total: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total).with_position(done);
            bar.set_style(
                ProgressStyle::with_template("{spinner} frame {pos}/{len} [{bar:40}] {elapsed_precise} ETA {eta_precise} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            total,
            pace: Pace::start(done),
        }
    }

    /// Frame `n` (0-based) has been written.
    pub fn frame_done(&mut self, n: u64, seconds: f64) {
        self.pace.frame_written(n);
        match &self.bar {
            Some(bar) => {
                bar.set_position(n + 1);
                bar.set_message(format!("{seconds:.1} s/frame"));
            }
            None => {
                let eta = self.pace.seconds_left(self.total, Instant::now());
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
