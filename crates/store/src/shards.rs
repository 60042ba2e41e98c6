//! Image shards: artifacts that cover a range of the dataset's rows, and the checks that
//! several of them make up one contiguous range.

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::{Artifact, Outcome, Store};

impl Artifact {
    /// The rows of the dataset's `index.csv` the artifact covers: an extract artifact's
    /// `rows` parameter, or the `rows` a segment or score artifact records in its outputs.
    pub fn rows(&self) -> Result<Range<usize>> {
        let m = &self.manifest;
        let rows = match m.params.get("rows") {
            Some(rows) => rows,
            None => &m.outputs["rows"],
        };
        match (rows[0].as_u64(), rows[1].as_u64()) {
            (Some(a), Some(b)) if a <= b => Ok(a as usize..b as usize),
            _ => Err(Error::Invalid(format!(
                "{}: the {} artifact's manifest names no rows of the dataset",
                self.dir.display(),
                m.stage
            ))),
        }
    }
}

/// Image shards in row order, with their rows; fails unless each starts where the one
/// before ends (no gap, no overlap).
pub fn in_row_order<'a>(
    shards: impl IntoIterator<Item = &'a Artifact>,
) -> Result<Vec<(Range<usize>, &'a Artifact)>> {
    let mut ordered = shards
        .into_iter()
        .map(|a| Ok((a.rows()?, a)))
        .collect::<Result<Vec<_>>>()?;
    ordered.sort_by_key(|(rows, _)| rows.start);
    for pair in ordered.windows(2) {
        let ((r0, a0), (r1, a1)) = (&pair[0], &pair[1]);
        if r0.end != r1.start {
            return Err(Error::Invalid(format!(
                "the image shards do not follow one another: {} covers rows {}..{} and {} \
                 rows {}..{}",
                a0.dir.display(),
                r0.start,
                r0.end,
                a1.dir.display(),
                r1.start,
                r1.end
            )));
        }
    }
    Ok(ordered)
}

impl Store {
    /// The cache a stage binary writes to: `cache` when given, else the one holding its
    /// first input artifact.
    pub fn open_for(cache: Option<&Path>, input: &Artifact) -> Result<Store> {
        match cache {
            Some(dir) => Store::open(dir),
            None => Store::open(input.cache_root().ok_or_else(|| {
                Error::Invalid(format!(
                    "{} is not inside a cache: give --cache",
                    input.dir.display()
                ))
            })?),
        }
    }
}

impl Outcome {
    /// What a stage binary says when it is done: `<stage>: wrote <key>` (or that it was
    /// fresh) on stderr, the record when asked for one, the artifact's directory on stdout.
    pub fn announce(&self, stage: &str, record: Option<&Path>) -> Result<()> {
        eprintln!(
            "{stage}: {} {}",
            if self.computed {
                "wrote"
            } else {
                "fresh, nothing to do"
            },
            self.artifact.key().short()
        );
        if let Some(path) = record {
            self.artifact.write_record(path)?;
        }
        println!("{}", self.artifact.dir.display());
        Ok(())
    }
}
