//! Refusing, before anything starts, work this machine has no memory for:
//! `render` and `dream` hold frame-sized buffers for every octave (see
//! [`memory_budget`](dreamfarm_coordinator::cluster::memory_budget)), and
//! a size past the machine's memory would be killed by the kernel instead
//! of told what to change.

use anyhow::bail;
use clap::Args;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_coordinator::cluster::memory_budget::{human, memory_limit, parse_size};
use dreamfarm_worker::models::pass_bytes;
use tch::Device;

/// The `--max-memory` flag of `render` and `dream`.
#[derive(Debug, Args)]
pub struct MaxMemory {
    /// Memory the frame loop, the network's passes on a CPU (and a
    /// render's video) may take, e.g. 16GiB: a size that needs more is
    /// refused before it starts, instead of running the machine out of
    /// memory [default: the container's memory limit, or the machine's
    /// memory].
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

/// What a piece of work holds in memory, part by part: `(what for,
/// bytes)`, e.g. `("its frames and video", 3.3 GiB)`.
pub type Needs<'a> = [(&'a str, u64)];

impl MaxMemory {
    /// Refuses `work` when the parts it `needs` do not fit together:
    /// "{work} needs about … of memory for {part} (…) and {part} (…), more
    /// than …. Fix: {smaller}, or {elsewhere}" (or a larger --max-memory
    /// when one was given).
    pub fn check(
        &self,
        work: &str,
        needs: &Needs,
        smaller: &str,
        elsewhere: &str,
    ) -> anyhow::Result<()> {
        let parts: Vec<_> = needs.iter().filter(|(_, bytes)| *bytes > 0).collect();
        let total: u64 = parts.iter().map(|(_, bytes)| bytes).sum();
        let held = match parts.as_slice() {
            [(what, _)] => (*what).to_string(),
            many => many
                .iter()
                .map(|(what, bytes)| format!("{what} ({})", human(*bytes)))
                .collect::<Vec<_>>()
                .join(" and "),
        };
        tracing::info!(
            needs = total,
            "{work} needs about {} of memory for {held}",
            human(total)
        );
        let (limit, of) = match self.max_memory {
            Some(bytes) => (bytes, "--max-memory"),
            None => match memory_limit() {
                Some(limit) => limit,
                None => return Ok(()),
            },
        };
        if total > limit {
            let or = match self.max_memory {
                Some(_) => "a larger --max-memory",
                None => elsewhere,
            };
            bail!(
                "{work} needs about {} of memory for {held}, more than {of} ({}). Fix: {smaller}, or {or}",
                human(total),
                human(limit)
            );
        }
        Ok(())
    }
}

/// What [`network_bytes`] is for, in [`MaxMemory::check`]'s words.
pub const NETWORK_ON_CPU: &str = "the network's passes on the CPU";

/// The memory the network's passes hold beside the frames of a
/// `width`×`height` frame of `settings`: one pass of the frame's largest
/// batch of tiles at a time on each CPU of `devices`. A GPU's passes are
/// in its own memory (a tile too big for it is said when it runs), and a
/// TorchScript model's are not known: both count nothing.
pub fn network_bytes(
    settings: &DreamSettings,
    width: u32,
    height: u32,
    devices: &[Device],
) -> anyhow::Result<u64> {
    let cpus = devices.iter().filter(|d| **d == Device::Cpu).count() as u64;
    let ModelSpec::Builtin(model) = settings.model_spec()? else {
        return Ok(0);
    };
    let layers = settings
        .layer_terms()?
        .iter()
        .map(|term| model.layer_index(&term.name))
        .collect::<Result<Vec<_>, _>>()?;
    let (tiles, h, w) = settings.largest_pass(width as usize, height as usize);
    Ok(cpus * pass_bytes(model, &layers, tiles, h, w, settings.precision))
}
