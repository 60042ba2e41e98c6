//! Which units: the top ones by IoU with a concept, and seeded random draws.

use std::collections::BTreeMap;

/// The layer's units by IoU with a concept, highest first, ties (and units that never
/// overlap it) by unit number.
pub fn ranked(units: usize, ious: Option<&BTreeMap<u32, f64>>) -> Vec<u32> {
    let iou = |u: u32| ious.and_then(|m| m.get(&u)).copied().unwrap_or(0.0);
    let mut order: Vec<u32> = (0..units as u32).collect();
    order.sort_by(|&a, &b| iou(b).total_cmp(&iou(a)).then(a.cmp(&b)));
    order
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `k` distinct units of `units`, ascending, drawn uniformly for (seed, concept, k, draw):
/// the same draw on every machine and in every run.
pub fn draw(seed: u64, concept: u64, k: usize, draw: u64, units: usize) -> Vec<u32> {
    let mut state = mix(seed ^ mix(concept ^ mix(k as u64 ^ mix(draw.wrapping_add(0x51)))));
    let mut pool: Vec<u32> = (0..units as u32).collect();
    for i in 0..k.min(units) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let j = i + (mix(state) % (units - i) as u64) as usize;
        pool.swap(i, j);
    }
    let mut chosen = pool[..k.min(units)].to_vec();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_units_by_iou_then_number() {
        let ious = BTreeMap::from([(2, 0.3), (0, 0.1), (3, 0.3)]);
        assert_eq!(ranked(5, Some(&ious)), [2, 3, 0, 1, 4]);
        assert_eq!(ranked(3, None), [0, 1, 2]);
    }

    #[test]
    fn draws_are_distinct_seeded_and_cover_the_layer() {
        let a = draw(1, 0, 4, 0, 10);
        assert_eq!(a, draw(1, 0, 4, 0, 10));
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(a, draw(1, 0, 4, 1, 10));
        assert_eq!(draw(1, 0, 10, 0, 10), (0..10).collect::<Vec<_>>());
        // Every unit is drawn about equally often.
        let mut seen = [0usize; 10];
        for d in 0..2000 {
            for u in draw(7, 1, 3, d, 10) {
                seen[u as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| (500..700).contains(&n)), "{seen:?}");
    }
}
