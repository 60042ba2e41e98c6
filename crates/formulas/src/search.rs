//! The beam search over a [`Tally`]: every count is a sum over label sets, never over
//! pixels.
//!
//! For a unit with mask `M` and a formula `F` in its beam, one pass over the unit's sets
//! where `F` holds gives `|M ∧ F|` and `|M ∧ F ∧ c|` for every concept `c`, and one pass
//! over the dataset's sets where `F` can hold (those with `F`'s first concept or one it
//! ORs in) gives `|F|` and `|F ∧ c|` (shared by every unit whose beam holds `F`, so kept).
//! Every candidate `F op c` then costs a few additions:
//!
//! ```text
//! F AND c      |M ∧ F ∧ c|                      |F ∧ c|
//! F OR c       |M ∧ F| + |M ∧ c| − |M ∧ F ∧ c|   |F| + |c| − |F ∧ c|
//! F AND NOT c  |M ∧ F| − |M ∧ F ∧ c|             |F| − |F ∧ c|
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::formula::{Formula, Op, rank};
use crate::tally::{Labels, Tally, UnitTally};

/// What the search may use.
#[derive(Debug, Clone)]
pub struct Search {
    pub max_length: usize,
    pub beam: usize,
    pub ops: Vec<Op>,
    /// The concepts a formula may use, ascending.
    pub concepts: Vec<u32>,
}

/// A formula with its counts for one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub formula: Formula,
    pub iou: f64,
    /// `|M ∧ F|`
    pub inter: u64,
    /// The unit's pixels in images where a category of `F` counts.
    pub act: u64,
    /// `|F|`
    pub truth: u64,
}

/// A unit's result: the best formula of each length (`None` where none overlaps the
/// unit), and which length holds the best of all.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitFormulas {
    pub by_length: Vec<Option<Scored>>,
    pub best: Option<usize>,
}

/// `inter / (act + truth − inter)`, 0 for an empty denominator.
pub fn iou(inter: u64, act: u64, truth: u64) -> f64 {
    let denominator = act + truth - inter;
    if denominator == 0 {
        0.0
    } else {
        inter as f64 / denominator as f64
    }
}

/// The most memory the formulas' truths kept for reuse may take.
const MEMO_BYTES: usize = 256 << 20;

/// `|F|` and `|F ∧ c|` for every label `c`.
struct Truth {
    total: u64,
    with: Vec<u64>,
}

/// What every unit of a layer shares: the concepts' sets and truths, and the truths of
/// the formulas met so far.
pub struct Shared<'a> {
    tally: &'a Tally,
    labels: &'a Labels<'a>,
    /// The sets holding each label.
    postings: Vec<Vec<u32>>,
    truth: Vec<u64>,
    memo: Mutex<HashMap<Formula, Arc<Truth>>>,
}

impl<'a> Shared<'a> {
    pub fn new(tally: &'a Tally, labels: &'a Labels<'a>) -> Shared<'a> {
        let n_labels = labels.dataset.n_labels();
        let mut postings = vec![Vec::new(); n_labels];
        let mut truth = vec![0u64; n_labels];
        for (s, set) in tally.sets.iter().enumerate() {
            for &l in set.iter() {
                postings[l as usize].push(s as u32);
                truth[l as usize] += tally.set_pixels[s];
            }
        }
        Shared {
            tally,
            labels,
            postings,
            truth,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the formulas' truths kept so far (between layers, to bound the memory).
    pub fn forget(&self) {
        self.memo.lock().expect("memo").clear();
    }

    /// Pixels of the dataset with label `c`.
    pub fn concept_truth(&self, c: u32) -> u64 {
        self.truth[c as usize]
    }

    fn formula_truth(&self, f: &Formula) -> Arc<Truth> {
        if let Some(t) = self.memo.lock().expect("memo").get(f) {
            return t.clone();
        }
        let mut truth = Truth {
            total: 0,
            with: vec![0; self.truth.len()],
        };
        let support: Vec<u32> = f.support().collect();
        for (i, &c) in support.iter().enumerate() {
            for &s in &self.postings[c as usize] {
                let set = &self.tally.sets[s as usize];
                // A set holding an earlier concept of the support was counted there.
                if support[..i].iter().any(|e| set.binary_search(e).is_ok()) || !f.holds(set) {
                    continue;
                }
                let n = self.tally.set_pixels[s as usize];
                truth.total += n;
                for &l in set.iter() {
                    truth.with[l as usize] += n;
                }
            }
        }
        let truth = Arc::new(truth);
        let mut memo = self.memo.lock().expect("memo");
        // Bounded: past MEMO_BYTES, truths are computed again rather than kept.
        if memo.len() * self.truth.len() * 8 < MEMO_BYTES {
            memo.insert(*f, truth.clone());
        }
        truth
    }
}

/// The category bits of a formula's concepts.
fn categories(labels: &Labels, f: &Formula) -> u64 {
    f.concepts().iter().fold(0, |b, &c| b | labels.bit(c))
}

/// Keeps the `beam` best of `all` (duplicates once), best first.
fn best_of(mut all: Vec<Scored>, beam: usize) -> Vec<Scored> {
    let order = |a: &Scored, b: &Scored| rank((a.iou, &a.formula), (b.iou, &b.formula));
    // Duplicates are equal, so they sit together once sorted; a few times the beam is
    // enough unless many candidates are the same formula.
    let mut k = (4 * beam).max(16);
    loop {
        let mut head: Vec<Scored> = if all.len() > k {
            all.select_nth_unstable_by(k, order);
            all[..k].to_vec()
        } else {
            all.clone()
        };
        head.sort_unstable_by(order);
        let mut seen = HashSet::new();
        head.retain(|s| seen.insert(s.formula));
        if head.len() >= beam || k >= all.len() {
            head.truncate(beam);
            return head;
        }
        k *= 4;
    }
}

/// The search for one unit.
pub fn unit_formulas(shared: &Shared, unit: &UnitTally, search: &Search) -> UnitFormulas {
    let labels = shared.labels;
    let tally = shared.tally;
    let n_labels = shared.truth.len();
    let act = |bits: u64| -> u64 {
        unit.presence
            .iter()
            .filter(|(b, _)| b & bits != 0)
            .map(|&(_, n)| n)
            .sum()
    };
    // |M ∧ c| for every label, on label sets (for combining) and as the score stage
    // counts it (for scoring c alone).
    let mut single = vec![0u64; n_labels];
    for &(s, n) in &unit.sets {
        for &l in tally.sets[s as usize].iter() {
            single[l as usize] += n;
        }
    }
    let mut counted = vec![0u64; n_labels];
    for &(l, n) in &unit.single {
        counted[l as usize] = n;
    }
    let scored = |formula: Formula, inter: u64, act: u64, truth: u64| Scored {
        formula,
        iou: iou(inter, act, truth),
        inter,
        act,
        truth,
    };
    let mut by_length: Vec<Option<Scored>> = vec![None; search.max_length];
    let better = |a: &Scored, b: &Scored| {
        rank((a.iou, &a.formula), (b.iou, &b.formula)) == std::cmp::Ordering::Less
    };
    let keep_best = |by_length: &mut Vec<Option<Scored>>, s: &Scored| {
        let slot = &mut by_length[s.formula.len() - 1];
        if slot.as_ref().is_none_or(|b| better(s, b)) {
            *slot = Some(*s);
        }
    };
    let firsts: Vec<Scored> = search
        .concepts
        .iter()
        .map(|&c| {
            scored(
                Formula::leaf(c),
                counted[c as usize],
                act(labels.bit(c)),
                tally.single_truth[c as usize],
            )
        })
        .collect();
    for s in &firsts {
        keep_best(&mut by_length, s);
    }
    let mut beam = best_of(firsts, search.beam);
    let mut with = vec![0u64; n_labels];
    for _step in 2..=search.max_length {
        let mut all = beam.clone();
        for f in &beam {
            if f.formula.len() >= search.max_length {
                continue;
            }
            // |M ∧ F ∧ c| for every c, and |M ∧ F| (on label sets: for a single concept
            // that is not always the score stage's count in `f`).
            with.iter_mut().for_each(|w| *w = 0);
            let mut inter_f = 0;
            for &(s, n) in &unit.sets {
                let set = &tally.sets[s as usize];
                if f.formula.holds(set) {
                    inter_f += n;
                    for &l in set.iter() {
                        with[l as usize] += n;
                    }
                }
            }
            let truth = shared.formula_truth(&f.formula);
            let bits = categories(labels, &f.formula);
            for &c in &search.concepts {
                if f.formula.contains(c) {
                    continue;
                }
                let (m, t) = (with[c as usize], truth.with[c as usize]);
                let a = act(bits | labels.bit(c));
                for &op in &search.ops {
                    let (inter, truth) = match op {
                        Op::And => (m, t),
                        Op::Or => (
                            inter_f + single[c as usize] - m,
                            truth.total + shared.truth[c as usize] - t,
                        ),
                        Op::AndNot => (inter_f - m, truth.total - t),
                    };
                    let s = scored(f.formula.extend(op, c), inter, a, truth);
                    keep_best(&mut by_length, &s);
                    all.push(s);
                }
            }
        }
        beam = best_of(all, search.beam);
    }
    for slot in &mut by_length {
        if slot.is_some_and(|s| s.iou <= 0.0) {
            *slot = None;
        }
    }
    let best = by_length
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .min_by(|(_, a), (_, b)| rank((a.iou, &a.formula), (b.iou, &b.formula)))
        .map(|(i, _)| i + 1);
    UnitFormulas { by_length, best }
}

/// Every unit of a layer, in parallel.
pub fn layer_formulas(shared: &Shared, units: &[UnitTally], search: &Search) -> Vec<UnitFormulas> {
    units
        .par_iter()
        .map(|u| unit_formulas(shared, u, search))
        .collect()
}
