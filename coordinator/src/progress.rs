//! Render progress: a bar with ETA on a terminal, plain log lines otherwise
//! (CI logs, `nohup`, Kubernetes).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports frames as they finish.
pub struct FrameProgress {
    bar: Option<ProgressBar>,
    total: u64,
    resumed_at: u64,
    started: Instant,
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
            resumed_at: done,
            started: Instant::now(),
        }
    }

    /// Frame `n` (0-based) has been written.
    pub fn frame_done(&mut self, n: u64, seconds: f64) {
        let done = n + 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{seconds:.1} s/frame"));
            }
            None => {
                let rate = self.started.elapsed().as_secs_f64() / (done - self.resumed_at) as f64;
                let eta = rate * (self.total - done) as f64;
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
