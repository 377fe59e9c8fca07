//! Refusing, before anything starts, work this machine has no memory for:
//! `render` and `dream` hold frame-sized buffers for every octave (see
//! [`memory_budget`](dreamfarm_coordinator::cluster::memory_budget)), and
//! a size past the machine's memory would be killed by the kernel instead
//! of told what to change.

use anyhow::bail;
use clap::Args;
use dreamfarm_coordinator::cluster::memory_budget::{human, memory_limit, parse_size};

/// The `--max-memory` flag of `render` and `dream`.
#[derive(Debug, Args)]
pub struct MaxMemory {
    /// Memory the frame loop (and a render's video) may take, e.g. 16GiB:
    /// a size that needs more is refused before it starts, instead of
    /// running the machine out of memory [default: the container's memory
    /// limit, or the machine's memory].
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

impl MaxMemory {
    /// Refuses `work` when the `needs` bytes `held` for it do not fit:
    /// "{work} needs about … of memory {held}, more than …. Fix:
    /// {smaller}, or {elsewhere}" (or a larger --max-memory when one was
    /// given).
    pub fn check(
        &self,
        work: &str,
        needs: u64,
        held: &str,
        smaller: &str,
        elsewhere: &str,
    ) -> anyhow::Result<()> {
        let (limit, of) = match self.max_memory {
            Some(bytes) => (bytes, "--max-memory"),
            None => match memory_limit() {
                Some(limit) => limit,
                None => return Ok(()),
            },
        };
        if needs > limit {
            let or = match self.max_memory {
                Some(_) => "a larger --max-memory",
                None => elsewhere,
            };
            bail!(
                "{work} needs about {} of memory {held}, more than {of} ({}). Fix: {smaller}, or {or}",
                human(needs),
                human(limit)
            );
        }
        Ok(())
    }
}
