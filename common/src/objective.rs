//! What one frame's dream maximises and how it steps: the job's dream
//! settings with every schedule evaluated at that frame, and the layer the
//! seed program's `layer_every` mode picked for it. The model is per job;
//! this is per frame, so a worker keeps its model loaded while the
//! objective changes under it.

use std::sync::Arc;

use crate::params::{DreamSettings, ParamError, Reduction};
use crate::resample::Planar;
use crate::seed;

/// Most gradient steps per octave.
pub const MAX_ITERATIONS: u32 = 10_000;

/// Largest layer weight magnitude.
pub const MAX_LAYER_WEIGHT: f64 = 1000.0;

/// Path tag of the `layer_every` draws, apart from every other use of the
/// job's seed.
const LAYER_PICK: u64 = u64::from_le_bytes(*b"layerpik");

/// One layer's term on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeight {
    /// Layer name.
    pub name: String,
    /// Its weight on this frame (never 0: such terms are left out).
    pub weight: f64,
    /// Channels that count; empty means all.
    pub channels: Vec<u32>,
}

/// What one frame's dream maximises, and its step.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameObjective {
    /// The terms with a weight on this frame; none means the frame is not
    /// dreamed (every weight scheduled to 0).
    pub layers: Vec<LayerWeight>,
    /// Per-layer reduction.
    pub reduction: Reduction,
    /// Step length for a unit-std gradient.
    pub step_size: f64,
    /// Blur the gradient with the seed program's growing Gaussians.
    pub smoothing: bool,
    /// Gradient steps per octave on this frame (the smoothing's ramp).
    pub iterations: u32,
    /// The guide image, 8-bit exact, at most [`GUIDE_SIDE`] a side.
    pub guide: Option<Arc<Planar>>,
    /// Share of the guide's term in each layer's objective, 0 to 1.
    pub guide_strength: f64,
}

/// Longest side a guide image is resized to, as in the original notebook
/// (224, the nets' training size): its features are matched against every
/// position of a tile, so their number bounds the cost.
pub const GUIDE_SIDE: usize = 224;

impl FrameObjective {
    /// Frame `frame`'s objective for a job of `frames` frames seeded with
    /// `seed`; `guide` is the job's guide image, if any.
    pub fn at(
        settings: &DreamSettings,
        frame: u64,
        frames: u32,
        seed: u64,
        guide: Option<Arc<Planar>>,
    ) -> Result<Self, ParamError> {
        let terms = settings.layer_terms()?;
        let count = terms.len();
        let layers = terms
            .into_iter()
            .enumerate()
            .map(|(i, t)| LayerWeight {
                weight: t.weight.value_at(frame, frames)
                    * pick_weight(i, count, settings, frame, seed),
                name: t.name,
                channels: t.channels,
            })
            .filter(|t| t.weight != 0.0)
            .collect();
        let guide_strength = match guide {
            Some(_) => settings.guide_strength.value_at(frame, frames),
            None => 0.0,
        };
        Ok(Self {
            layers,
            reduction: settings.objective,
            step_size: settings.step_size.value_at(frame, frames),
            smoothing: settings.smoothing,
            iterations: iterations_at(settings, frame, frames),
            guide,
            guide_strength,
        })
    }

    /// Checks what arrived over the wire: every number finite and in
    /// range, so that a hostile or broken coordinator cannot make a worker
    /// dream NaN.
    pub fn check(&self) -> Result<(), String> {
        for l in &self.layers {
            if !(l.weight.is_finite() && l.weight.abs() <= MAX_LAYER_WEIGHT) {
                return Err(format!(
                    "layer weight of {} = {} is not a finite number from -{MAX_LAYER_WEIGHT} to {MAX_LAYER_WEIGHT}",
                    l.name, l.weight
                ));
            }
        }
        if !(self.step_size > 0.0 && self.step_size <= 1.0) {
            return Err(format!(
                "step size {} is not above 0 and at most 1",
                self.step_size
            ));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!(
                "{} iterations per octave is out of range (1 to {MAX_ITERATIONS})",
                self.iterations
            ));
        }
        if !(0.0..=1.0).contains(&self.guide_strength) {
            return Err(format!(
                "guide strength {} is not from 0 to 1",
                self.guide_strength
            ));
        }
        if let Some(g) = &self.guide
            && (g.width.max(g.height) > GUIDE_SIDE || g.width.min(g.height) == 0)
        {
            return Err(format!(
                "a {}x{} guide image: guides are at most {GUIDE_SIDE} pixels a side",
                g.width, g.height
            ));
        }
        Ok(())
    }
}

/// Gradient steps per octave on frame `frame`.
pub fn iterations_at(settings: &DreamSettings, frame: u64, frames: u32) -> u32 {
    settings.iterations.value_at(frame, frames).round() as u32
}

/// The largest window shift on frame `frame`.
pub fn jitter_at(settings: &DreamSettings, frame: u64, frames: u32) -> u32 {
    settings.jitter.value_at(frame, frames).round() as u32
}

/// The share of term `term` (of `count`) in frame `frame` under the
/// `layer_every` mode: 1 for the frame's pick, 0 for the others, and a
/// linear cross-fade over the first `layer_fade` frames after a switch.
/// Always 1 when the mode is off.
fn pick_weight(term: usize, count: usize, s: &DreamSettings, frame: u64, seed: u64) -> f64 {
    if s.layer_every == 0 {
        return 1.0;
    }
    let every = u64::from(s.layer_every);
    let pick = |segment: u64| seed::derive(seed, &[LAYER_PICK, segment]) % count as u64;
    let (segment, offset) = (frame / every, frame % every);
    let current = f64::from(u8::from(pick(segment) == term as u64));
    if segment == 0 || offset >= u64::from(s.layer_fade) {
        return current;
    }
    let previous = f64::from(u8::from(pick(segment - 1) == term as u64));
    let t = (offset + 1) as f64 / f64::from(s.layer_fade + 1);
    previous + (current - previous) * t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::LayerTerm;
    use crate::schedule::Schedule;

    fn settings(layers: &str) -> DreamSettings {
        DreamSettings {
            layers: layers
                .split(',')
                .map(|l| l.parse::<LayerTerm>().expect("layer"))
                .collect(),
            ..Default::default()
        }
    }

    fn names(o: &FrameObjective) -> Vec<(String, f64)> {
        o.layers
            .iter()
            .map(|l| (l.name.clone(), l.weight))
            .collect()
    }

    #[test]
    fn schedules_are_evaluated_at_the_frame() {
        let mut s = settings("mixed3,mixed5");
        s.layers[0].weight = Schedule::parse("w", "0:(1), 10:(0)").expect("schedule");
        s.step_size = Schedule::parse("s", "0:(0.01), 10:(0.03)").expect("schedule");
        s.iterations = Schedule::parse("i", "0:(2), 10:(12)").expect("schedule");
        let at = |f| FrameObjective::at(&s, f, 20, 7, None).expect("objective");
        assert_eq!(
            names(&at(0)),
            [("mixed3".into(), 1.0), ("mixed5".into(), 1.0)]
        );
        let mid = at(5);
        assert_eq!(
            names(&mid),
            [("mixed3".into(), 0.5), ("mixed5".into(), 1.0)]
        );
        assert!((mid.step_size - 0.02).abs() < 1e-12);
        assert_eq!(mid.iterations, 7);
        // A weight scheduled to 0 leaves the term out.
        assert_eq!(names(&at(15)), [("mixed5".into(), 1.0)]);
        assert_eq!(at(15).guide_strength, 0.0, "no guide, no guide term");
    }

    #[test]
    fn layer_every_picks_one_layer_per_segment_reproducibly_from_the_seed() {
        let mut s = settings("mixed1,mixed2,mixed3,mixed4,mixed5");
        s.layer_every = 10;
        let picks = |seed| -> Vec<String> {
            (0..200)
                .map(|f| {
                    let o = FrameObjective::at(&s, f, 200, seed, None).expect("objective");
                    assert_eq!(o.layers.len(), 1, "one layer on frame {f}");
                    o.layers[0].name.clone()
                })
                .collect()
        };
        let a = picks(1);
        assert_eq!(a, picks(1), "same seed, same picks");
        assert_ne!(a, picks(2), "another seed, other picks");
        for segment in a.chunks(10) {
            assert!(segment.iter().all(|n| *n == segment[0]), "{segment:?}");
        }
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() >= 3, "20 draws over 5 layers: {distinct:?}");
    }

    #[test]
    fn a_fade_crosses_from_the_previous_pick_to_the_next() {
        let mut s = settings("mixed3,mixed5");
        s.layer_every = 10;
        s.layer_fade = 4;
        // Find a seed whose first two segments pick different layers.
        let seed = (0..100)
            .find(|&seed| {
                let o = |f| FrameObjective::at(&s, f, 30, seed, None).expect("objective");
                names(&o(0))[0].0 != names(&o(19))[0].0
            })
            .expect("some seed switches");
        let o = |f| FrameObjective::at(&s, f, 30, seed, None).expect("objective");
        let before = names(&o(9))[0].0.clone();
        let fading = names(&o(11));
        assert_eq!(fading.len(), 2);
        let old = fading
            .iter()
            .find(|(n, _)| *n == before)
            .expect("old layer");
        assert!((old.1 - 0.6).abs() < 1e-12, "{fading:?}");
        let total: f64 = fading.iter().map(|(_, w)| w).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(o(14).layers.len(), 1, "fade over after 4 frames");
    }

    #[test]
    fn the_wire_check_refuses_what_validation_would() {
        let good = FrameObjective::at(&settings("mixed3"), 0, 1, 0, None).expect("objective");
        good.check().expect("defaults pass");
        let mut bad = good.clone();
        bad.layers[0].weight = f64::NAN;
        assert!(
            bad.check()
                .expect_err("nan")
                .contains("layer weight of mixed3")
        );
        let mut bad = good.clone();
        bad.step_size = f64::INFINITY;
        assert!(bad.check().is_err());
        let mut bad = good;
        bad.guide = Some(Arc::new(Planar::zeros(GUIDE_SIDE + 1, 10)));
        assert!(bad.check().expect_err("big guide").contains("at most 224"));
    }
}
