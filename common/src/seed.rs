//! Reproducible randomness: every random choice of a job derives from the
//! job's seed and the coordinates of the work it belongs to, so a tile
//! computed twice, on any worker, after any restart, makes the same choices.

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for the work at `path` (e.g. `[frame, octave, tile, iteration]`)
/// of the job seeded with `seed`.
pub fn derive(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix(seed), |h, &p| {
        mix(h ^ p.wrapping_add(0x9e37_79b9_7f4a_7c15))
    })
}

/// A uniform integer in `-max..=max` drawn from `seed`.
pub fn symmetric(seed: u64, max: u32) -> i64 {
    let span = 2 * u64::from(max) + 1;
    (seed % span) as i64 - i64::from(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_same_seed_and_paths_differ() {
        assert_eq!(derive(7, &[1, 2, 3]), derive(7, &[1, 2, 3]));
        assert_ne!(derive(7, &[1, 2, 3]), derive(7, &[1, 3, 2]));
        assert_ne!(derive(7, &[1, 2, 3]), derive(8, &[1, 2, 3]));
    }

    #[test]
    fn symmetric_stays_in_range_and_covers_it() {
        let draws: Vec<i64> = (0..2000).map(|i| symmetric(derive(1, &[i]), 3)).collect();
        assert!(draws.iter().all(|d| (-3..=3).contains(d)));
        for v in -3..=3 {
            assert!(draws.contains(&v), "{v} never drawn");
        }
    }
}
