//! Formulas of concepts: left-deep sequences `c1 op2 c2 op3 c3 …`, their canonical form,
//! their order, and their text.

use std::cmp::Ordering;

/// The longest formula searched: a formula is a fixed-size value, so the search keeps its
/// candidates without allocating.
pub const MAX_LENGTH: usize = 10;

/// How a formula is extended by a concept `c`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `F AND c`
    And,
    /// `F OR c`
    Or,
    /// `F AND NOT c`
    AndNot,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::And, Op::Or, Op::AndNot];

    /// As written in the tables and the configuration: `and`, `or`, `and_not`.
    pub fn name(self) -> &'static str {
        match self {
            Op::And => "and",
            Op::Or => "or",
            Op::AndNot => "and_not",
        }
    }

    /// As written in a formula's text.
    pub fn word(self) -> &'static str {
        match self {
            Op::And => "AND",
            Op::Or => "OR",
            Op::AndNot => "AND NOT",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "and" => Some(Op::And),
            "or" => Some(Op::Or),
            "and_not" => Some(Op::AndNot),
            _ => None,
        }
    }
}

/// A left-deep formula: `concepts[0]`, then `ops[i - 1]` with `concepts[i]` for each
/// further concept. Concepts are label numbers, distinct within a formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Formula {
    len: u8,
    concepts: [u32; MAX_LENGTH],
    ops: [Op; MAX_LENGTH],
}

impl Formula {
    pub fn leaf(concept: u32) -> Formula {
        let mut concepts = [0; MAX_LENGTH];
        concepts[0] = concept;
        Formula {
            len: 1,
            concepts,
            ops: [Op::And; MAX_LENGTH],
        }
    }

    /// The formula from its concepts and the ops joining them (`ops.len() + 1 ==
    /// concepts.len()`), as given (not made canonical).
    pub fn from_parts(concepts: &[u32], ops: &[Op]) -> Formula {
        assert!(!concepts.is_empty() && concepts.len() <= MAX_LENGTH);
        assert_eq!(ops.len() + 1, concepts.len());
        let mut f = Formula::leaf(concepts[0]);
        for (&op, &c) in ops.iter().zip(&concepts[1..]) {
            f = f.extend_raw(op, c);
        }
        f
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn concepts(&self) -> &[u32] {
        &self.concepts[..self.len()]
    }

    /// The op before each concept after the first.
    pub fn ops(&self) -> &[Op] {
        &self.ops[1..self.len()]
    }

    pub fn contains(&self, concept: u32) -> bool {
        self.concepts().contains(&concept)
    }

    fn extend_raw(mut self, op: Op, concept: u32) -> Formula {
        let n = self.len();
        assert!(
            n < MAX_LENGTH,
            "formulas are at most {MAX_LENGTH} concepts long"
        );
        self.concepts[n] = concept;
        self.ops[n] = op;
        self.len += 1;
        self
    }

    /// `self op concept`, in canonical form.
    pub fn extend(self, op: Op, concept: u32) -> Formula {
        self.extend_raw(op, concept).canonical()
    }

    /// The one spelling of formulas that are equal by reordering: a conjunction of
    /// literals (only AND and AND NOT) lists its positive concepts ascending, then its
    /// negated ones ascending; a disjunction (only OR) its concepts ascending; any other
    /// formula has its first two concepts ascending when the first op is AND or OR.
    pub fn canonical(self) -> Formula {
        let n = self.len();
        if n < 2 {
            return self;
        }
        let ops = &self.ops[1..n];
        let mut out = self;
        if ops.iter().all(|&op| op != Op::Or) {
            // Positives (the first concept, and those after AND), then negated ones.
            let (mut positive, mut negative) = ([0u32; MAX_LENGTH], [0u32; MAX_LENGTH]);
            let (mut p, mut q) = (1, 0);
            positive[0] = self.concepts[0];
            for (&op, &c) in ops.iter().zip(&self.concepts[1..n]) {
                if op == Op::AndNot {
                    negative[q] = c;
                    q += 1;
                } else {
                    positive[p] = c;
                    p += 1;
                }
            }
            positive[..p].sort_unstable();
            negative[..q].sort_unstable();
            for (i, &c) in positive[..p].iter().chain(&negative[..q]).enumerate() {
                out.concepts[i] = c;
                if i > 0 {
                    out.ops[i] = if i < p { Op::And } else { Op::AndNot };
                }
            }
        } else if ops.iter().all(|&op| op == Op::Or) {
            out.concepts[..n].sort_unstable();
        } else if ops[0] != Op::AndNot && out.concepts[1] < out.concepts[0] {
            out.concepts.swap(0, 1);
        }
        out
    }

    /// The order of the sequence `(c1, op2, c2, …)`: concepts by number, ops And < Or <
    /// AndNot, a prefix before its extensions.
    pub fn cmp_sequence(&self, other: &Formula) -> Ordering {
        let n = self.len().min(other.len());
        for i in 0..n {
            if i > 0 {
                match self.ops[i].cmp(&other.ops[i]) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            match self.concepts[i].cmp(&other.concepts[i]) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.len().cmp(&other.len())
    }

    /// Evaluates the formula on a pixel whose labels are `labels` (sorted ascending).
    pub fn holds(&self, labels: &[u32]) -> bool {
        let has = |c: u32| labels.binary_search(&c).is_ok();
        let mut value = has(self.concepts[0]);
        for i in 1..self.len() {
            let c = self.concepts[i];
            value = match self.ops[i] {
                Op::And => value && has(c),
                Op::Or => value || has(c),
                Op::AndNot => value && !has(c),
            };
        }
        value
    }

    /// The concepts whose pixels hold every pixel where the formula holds: the first, and
    /// each one joined by OR.
    pub fn support(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len())
            .filter(|&i| i == 0 || self.ops[i] == Op::Or)
            .map(|i| self.concepts[i])
    }

    /// `(water OR river) AND NOT grass`, with `name` giving each concept's name.
    pub fn text(&self, name: impl Fn(u32) -> String) -> String {
        let mut text = name(self.concepts[0]);
        for i in 1..self.len() {
            if i > 1 {
                text = format!("({text})");
            }
            text = format!("{text} {} {}", self.ops[i].word(), name(self.concepts[i]));
        }
        text
    }
}

/// The better of two scored formulas first: higher IoU, then the shorter, then the
/// smaller sequence.
pub fn rank(a: (f64, &Formula), b: (f64, &Formula)) -> Ordering {
    b.0.total_cmp(&a.0)
        .then(a.1.len().cmp(&b.1.len()))
        .then_with(|| a.1.cmp_sequence(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(concepts: &[u32], ops: &[Op]) -> Formula {
        Formula::from_parts(concepts, ops)
    }

    #[test]
    fn canonical_forms_join_the_spellings_of_one_formula() {
        use Op::*;
        assert_eq!(f(&[5, 2], &[And]).canonical(), f(&[2, 5], &[And]));
        assert_eq!(f(&[5, 2], &[Or]).canonical(), f(&[2, 5], &[Or]));
        assert_eq!(f(&[5, 2], &[AndNot]).canonical(), f(&[5, 2], &[AndNot]));
        // a ∧ ¬b ∧ c = a ∧ c ∧ ¬b; ¬ order too.
        assert_eq!(
            f(&[9, 4, 3], &[AndNot, And]).canonical(),
            f(&[3, 9, 4], &[And, AndNot])
        );
        assert_eq!(
            f(&[9, 7, 4], &[AndNot, AndNot]).canonical(),
            f(&[9, 4, 7], &[AndNot, AndNot])
        );
        assert_eq!(
            f(&[9, 7, 4], &[Or, Or]).canonical(),
            f(&[4, 7, 9], &[Or, Or])
        );
        // Mixed: only the first pair moves.
        assert_eq!(
            f(&[9, 7, 4], &[Or, AndNot]).canonical(),
            f(&[7, 9, 4], &[Or, AndNot])
        );
        assert_eq!(
            f(&[9, 7, 4], &[AndNot, Or]).canonical(),
            f(&[9, 7, 4], &[AndNot, Or])
        );
    }

    #[test]
    fn formulas_evaluate_left_to_right() {
        use Op::*;
        let g = f(&[1, 2, 3], &[Or, AndNot]); // (1 ∨ 2) ∧ ¬3
        assert!(g.holds(&[1]) && g.holds(&[2, 5]) && !g.holds(&[2, 3]) && !g.holds(&[4]));
        assert_eq!(g.support().collect::<Vec<_>>(), [1, 2]);
        let h = f(&[1, 2, 3], &[AndNot, Or]); // (1 ∧ ¬2) ∨ 3
        assert!(h.holds(&[3]) && h.holds(&[1]) && !h.holds(&[1, 2]) && h.holds(&[1, 2, 3]));
        assert_eq!(h.support().collect::<Vec<_>>(), [1, 3]);
        let names = |c: u32| ["", "water", "river", "grass"][c as usize].to_owned();
        assert_eq!(g.text(names), "(water OR river) AND NOT grass");
        assert_eq!(f(&[1, 2], &[Or]).text(names), "water OR river");
        assert_eq!(
            f(&[1, 2, 3, 1 + 3], &[And, Or, Or]).text(|c| c.to_string()),
            "((1 AND 2) OR 3) OR 4"
        );
    }

    #[test]
    fn ranks_by_iou_then_length_then_sequence() {
        use Op::*;
        let a = f(&[3], &[]);
        let b = f(&[2, 5], &[And]);
        let c = f(&[2, 5], &[Or]);
        assert_eq!(rank((0.5, &a), (0.4, &b)), Ordering::Less);
        assert_eq!(rank((0.4, &a), (0.5, &b)), Ordering::Greater);
        assert_eq!(rank((0.5, &b), (0.5, &a)), Ordering::Greater);
        assert_eq!(rank((0.5, &b), (0.5, &c)), Ordering::Less);
        assert_eq!(rank((0.5, &b), (0.5, &b)), Ordering::Equal);
        assert_eq!(Op::parse("AND NOT"), Some(AndNot));
        assert_eq!(Op::parse("and_not"), Some(AndNot));
        assert_eq!(Op::parse("xor"), None);
    }
}
