//! A frame's objective on the wire: [`FrameObjective`] to and from its
//! message, every number checked on arrival (a worker never dreams NaN on
//! a broken coordinator's word).

use std::sync::Arc;

use dreamfarm_common::objective::{FrameObjective, LayerWeight};
use dreamfarm_common::params::Reduction;
use dreamfarm_common::resample::Planar;

use crate::WireError;
use crate::pb;

/// The message of `objective`.
pub fn to_wire(objective: &FrameObjective) -> pb::Objective {
    pb::Objective {
        layers: objective
            .layers
            .iter()
            .map(|l| pb::LayerWeight {
                name: l.name.clone(),
                weight: l.weight,
                channels: l.channels.clone(),
            })
            .collect(),
        reduction: match objective.reduction {
            Reduction::MeanSquare => pb::Reduction::MeanSquare,
            Reduction::Mean => pb::Reduction::Mean,
        } as i32,
        step_size: objective.step_size,
        smoothing: objective.smoothing,
        iterations: objective.iterations,
        guide: objective.guide.as_ref().map(|g| pb::GuideImage {
            width: g.width as u32,
            height: g.height as u32,
            // A guide holds 8-bit values: it is rounded before any use.
            rgb: g.to_rgb8(),
        }),
        guide_strength: objective.guide_strength,
    }
}

/// The objective of a message, checked.
pub fn from_wire(message: pb::Objective) -> Result<FrameObjective, WireError> {
    let bad = |what: String| WireError::Protocol(format!("objective: {what}"));
    let reduction = match pb::Reduction::try_from(message.reduction) {
        Ok(pb::Reduction::MeanSquare) => Reduction::MeanSquare,
        Ok(pb::Reduction::Mean) => Reduction::Mean,
        _ => return Err(bad(format!("unknown reduction {}", message.reduction))),
    };
    let guide = message
        .guide
        .map(|g| {
            let (w, h) = (g.width as usize, g.height as usize);
            if g.rgb.len() as u64 != 3 * g.width as u64 * g.height as u64 {
                return Err(bad(format!(
                    "a {w}x{h} guide image of {} bytes",
                    g.rgb.len()
                )));
            }
            Ok(Arc::new(Planar::from_rgb8(w, h, &g.rgb)))
        })
        .transpose()?;
    let objective = FrameObjective {
        layers: message
            .layers
            .into_iter()
            .map(|l| LayerWeight {
                name: l.name,
                weight: l.weight,
                channels: l.channels,
            })
            .collect(),
        reduction,
        step_size: message.step_size,
        smoothing: message.smoothing,
        iterations: message.iterations,
        guide,
        guide_strength: message.guide_strength,
    };
    objective.check().map_err(bad)?;
    Ok(objective)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objective() -> FrameObjective {
        FrameObjective {
            layers: vec![LayerWeight {
                name: "mixed3".into(),
                weight: 0.75,
                channels: vec![1, 5],
            }],
            reduction: Reduction::Mean,
            step_size: 0.02,
            smoothing: true,
            iterations: 7,
            guide: Some(Arc::new(Planar::from_rgb8(2, 1, &[0, 64, 128, 255, 1, 2]))),
            guide_strength: 0.5,
        }
    }

    #[test]
    fn an_objective_survives_the_wire_exactly() {
        let o = objective();
        assert_eq!(from_wire(to_wire(&o)).expect("round trip"), o);
    }

    #[test]
    fn bad_numbers_and_sizes_are_refused() {
        let mut m = to_wire(&objective());
        m.layers[0].weight = f64::NAN;
        let e = from_wire(m).expect_err("nan weight").to_string();
        assert!(e.contains("layer weight of mixed3"), "{e}");
        let mut m = to_wire(&objective());
        m.step_size = 0.0;
        assert!(from_wire(m).is_err());
        let mut m = to_wire(&objective());
        m.reduction = 9;
        assert!(from_wire(m).is_err());
        let mut m = to_wire(&objective());
        if let Some(g) = &mut m.guide {
            g.width = 3;
        }
        let e = from_wire(m).expect_err("short guide").to_string();
        assert!(e.contains("3x1 guide image of 6 bytes"), "{e}");
    }
}
