//! Prometheus' text exposition format, which the coordinator's `/metrics`
//! and each worker's are written in, and a seconds counter several
//! threads add to.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Time spent on something, added up from any thread (a
/// `…_seconds_total` counter), kept in whole microseconds.
#[derive(Debug, Default)]
pub struct SecondsTotal(AtomicU64);

impl SecondsTotal {
    /// Adds `time`.
    pub fn add(&self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.0.fetch_add(micros, Ordering::Relaxed);
    }

    /// The seconds added so far.
    pub fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Whether a metric only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows, from 0 at the process's start.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// The name Prometheus gives the kind in `# TYPE` lines.
    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A `/metrics` page being written, metric by metric.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    /// Adds metric `name` of `kind`, with its `help` and one value.
    pub fn metric(&mut self, name: &str, kind: MetricKind, help: &str, value: f64) {
        self.family(name, kind, help, [("", value)]);
    }

    /// Adds metric `name` of `kind`, with its `help` and a value for each
    /// set of labels (written as they go between the braces,
    /// `state="running"`; empty: none).
    pub fn family<L: AsRef<str>>(
        &mut self,
        name: &str,
        kind: MetricKind,
        help: &str,
        series: impl IntoIterator<Item = (L, f64)>,
    ) {
        let out = &mut self.0;
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
        for (labels, value) in series {
            let _ = match labels.as_ref() {
                "" => writeln!(out, "{name} {value}"),
                labels => writeln!(out, "{name}{{{labels}}} {value}"),
            };
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_add_up_to_the_microsecond() {
        let total = SecondsTotal::default();
        total.add(Duration::from_millis(1500));
        total.add(Duration::from_nanos(2_500));
        assert_eq!(total.seconds(), 1.500002);
    }

    #[test]
    fn a_page_has_help_type_and_values_with_and_without_labels() {
        let mut page = Exposition::default();
        page.metric("a_total", MetricKind::Counter, "As seen.", 3.0);
        page.family(
            "b",
            MetricKind::Gauge,
            "Bs by colour.",
            [("colour=\"red\"", 1.5), ("colour=\"blue\"", 0.0)],
        );
        assert_eq!(
            page.finish(),
            "# HELP a_total As seen.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs by colour.\n# TYPE b gauge\nb{colour=\"red\"} 1.5\nb{colour=\"blue\"} 0\n"
        );
    }
}
