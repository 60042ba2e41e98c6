//! Image shards' explanations joined into the explanation of all their rows, for a
//! workflow that explains a dataset in several jobs.
//!
//! The class tables and the faithfulness figures are sums over images: the merge reads
//! each shard's images (`merge_images.parquet`, see [`crate::part`]) and sums them in row
//! order, as one run does, so the merged tables are the same bits as one run's over the
//! same batches. When every shard starts on a multiple of the batch size from the first,
//! those are one run's batches, and the merge is the artifact of that run: the same key,
//! the same bytes. Otherwise its key records where batching restarted
//! (`batch_restarts`), on which the class scores' last bits depend.

use std::ops::Range;
use std::path::Path;

use nd_broden::Dataset;
use nd_store::{Artifact, Outcome, Store};
use serde_json::Value;

use crate::compute::{Explanation, Totals};
use crate::{Config, Error, Result, STAGE, SUMMARY_FILE, part, tables};

/// Joins explain artifacts of contiguous image shards of `dataset` (in any order) into
/// the explanation of all their rows; returns the cached one when it exists, and a single
/// artifact as it is.
pub fn merge(store: &Store, dataset: &Dataset, shards: &[Artifact]) -> Result<Outcome> {
    if shards.is_empty() {
        return Err(Error::Config("no explain artifact given to merge".into()));
    }
    for shard in shards {
        shard.expect_stage(STAGE)?;
    }
    // One artifact is its own merge (a workflow whose shards collapse into one).
    if let [only] = shards {
        return Ok(Outcome {
            artifact: only.clone(),
            computed: false,
        });
    }
    for shard in shards {
        if shard.manifest.outputs.get("merge_images").is_none() {
            return Err(Error::Config(format!(
                "{} explains every row of its dataset: only image shards (nd-explain \
                 --images START..END) merge",
                shard.dir.display()
            )));
        }
    }
    let ordered = nd_store::in_row_order(shards)?;
    let first = ordered[0].1;
    let settings = |a: &Artifact| -> Value {
        let mut params = a.manifest.params.clone();
        if let Some(map) = params.as_object_mut() {
            map.remove("rows");
            map.remove("batch_restarts");
        }
        params
    };
    let base = settings(first);
    for (_, shard) in &ordered[1..] {
        let other = settings(shard);
        if other != base {
            let differ: Vec<String> = base
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| other.get(k.as_str()) != Some(v))
                .map(|(k, _)| format!("`{k}`"))
                .collect();
            return Err(Error::Config(format!(
                "{} and {} were explained with different settings ({}): not shards of one \
                 explanation",
                first.dir.display(),
                shard.dir.display(),
                differ.join(", ")
            )));
        }
        if shard.manifest.inputs != first.manifest.inputs {
            return Err(Error::Config(format!(
                "{} and {} join different dissections (reports): not shards of one explanation",
                first.dir.display(),
                shard.dir.display()
            )));
        }
        if shard.manifest.digests.get("model") != first.manifest.digests.get("model") {
            return Err(Error::Config(format!(
                "{} and {} explain different model files: not shards of one explanation",
                first.dir.display(),
                shard.dir.display()
            )));
        }
    }
    let config = config_of(&base, &first.dir)?;
    let model_digest = first
        .manifest
        .digests
        .get("model")
        .ok_or_else(|| manifest_error(first, "no model digest"))?;
    let report_key = *first
        .manifest
        .inputs
        .get("report")
        .ok_or_else(|| manifest_error(first, "no report input"))?;

    // Each shard must be an explanation of this dataset's images.
    let mut points = Vec::new();
    for (rows, shard) in &ordered {
        let restarts = restarts_of(shard)?;
        if rows.end > dataset.len() {
            return Err(Error::Config(format!(
                "{} explains rows {}..{}, but the dataset {} has {}",
                shard.dir.display(),
                rows.start,
                rows.end,
                dataset.root().display(),
                dataset.len()
            )));
        }
        let expected = crate::spec_of(
            store,
            dataset,
            report_key,
            model_digest,
            &config,
            rows.clone(),
            &restarts,
        )?;
        if expected.key() != shard.key() {
            return Err(Error::Config(format!(
                "{} was not explained on the dataset {} (its images differ)",
                shard.dir.display(),
                dataset.root().display()
            )));
        }
        points.push(rows.start);
        points.extend(restarts);
    }
    let rows = ordered[0].0.start..ordered[ordered.len() - 1].0.end;
    let restarts = normalise_restarts(&points, config.batch_size);
    let spec = crate::spec_of(
        store,
        dataset,
        report_key,
        model_digest,
        &config,
        rows.clone(),
        &restarts,
    )?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let report = store.get_key("report", report_key)?.ok_or_else(|| {
        Error::Config(format!(
            "the dissection (report {}) that the shards join is not in the cache {}",
            report_key.short(),
            store.root().display()
        ))
    })?;
    let units = tables::read_units(&report, &config.layer)?;
    let shard = crate::is_shard(dataset, &rows);

    let pending = store.begin(&spec)?;
    let dir = pending.dir().to_owned();
    let metadata = pending.table_metadata();
    let mut cams = tables::CamSink::new(&dir, &metadata, dataset, &config.layer);
    let mut part_sink = shard.then(|| part::PartSink::new(&dir, &metadata));
    let mut result: Option<Explanation> = None;
    for (shard_rows, artifact) in &ordered {
        let summary = read_summary(artifact)?;
        let dims = |key: &str| summary.get(key).cloned().unwrap_or(Value::Null);
        let units_n = dims("units").as_u64().map(|v| v as usize);
        let map: Option<[usize; 2]> = serde_json::from_value(dims("map")).ok();
        let classes = dims("classes").as_array().map(Vec::len);
        let deviation = dims("intervention_deviation").as_f64();
        let (Some(units_n), Some([height, width]), Some(classes), Some(deviation)) =
            (units_n, map, classes, deviation)
        else {
            return Err(manifest_error(
                artifact,
                "its summary.json lacks units, map, classes or intervention_deviation",
            ));
        };
        let state = result.get_or_insert_with(|| Explanation {
            units: units_n,
            height,
            width,
            classes,
            explained: Vec::new(),
            totals: Totals::new(&config, units_n, classes),
        });
        if [units_n, height, width, classes]
            != [state.units, state.height, state.width, state.classes]
        {
            return Err(manifest_error(
                artifact,
                "its layer or class scores have another shape than the first shard's",
            ));
        }
        state.totals.intervention_deviation = state.totals.intervention_deviation.max(deviation);
        let k = config.top_k.min(classes);
        let records = part::read_images(&artifact.dir)?;
        let explained = part::read_explained(&artifact.dir)?;
        let maps = part::read_cams(&artifact.dir)?;
        let in_order = records.len() == shard_rows.len()
            && records
                .iter()
                .zip(shard_rows.clone())
                .all(|(r, row)| r.row == row)
            && explained.len() == shard_rows.len() * k
            && explained
                .iter()
                .enumerate()
                .all(|(i, e)| e.row == shard_rows.start + i / k && e.class_rank == i % k)
            && maps.images.len() == shard_rows.len() * k
            && (0..maps.images.len()).all(|i| {
                maps.images[i] == dataset.image(shard_rows.start + i / k)
                    && maps.class_ranks[i] == i % k
                    && maps.classes[i] == explained[i].class
            })
            && [maps.height, maps.width] == [height, width];
        if !in_order {
            return Err(manifest_error(
                artifact,
                "its merge tables or class activation maps do not follow its rows",
            ));
        }
        let cells = height * width;
        for batch in batches(shard_rows, &restarts_of(artifact)?, config.batch_size) {
            let (lo, hi) = (batch.start - shard_rows.start, batch.end - shard_rows.start);
            let batch_maps: Vec<tables::Cam> = (lo * k..hi * k)
                .map(|i| tables::Cam {
                    row: shard_rows.start + i / k,
                    class_rank: maps.class_ranks[i],
                    class: maps.classes[i],
                    values: &maps.values[i * cells..(i + 1) * cells],
                })
                .collect();
            cams.push(&batch_maps, height, width)?;
            for record in &records[lo..hi] {
                state.totals.add(&config, record)?;
            }
            if let Some(sink) = part_sink.as_mut() {
                sink.push(&records[lo..hi])?;
            }
        }
        state.explained.extend(explained);
    }
    let result = result.expect("at least one shard");
    if result.units != units.len() {
        return Err(Error::Config(format!(
            "layer `{}` has {} units in the shards but {} in the dissection (report {})",
            config.layer,
            result.units,
            units.len(),
            report_key.short()
        )));
    }
    cams.finish()?;
    if let Some(sink) = part_sink {
        sink.finish()?;
    }
    let artifact = crate::finish(pending, dataset, &config, &result, &units, shard)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

fn manifest_error(artifact: &Artifact, message: &str) -> Error {
    Error::File {
        path: artifact.dir.clone(),
        message: message.to_owned(),
    }
}

fn read_summary(artifact: &Artifact) -> Result<Value> {
    let path = artifact.dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::File {
        path: path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::File {
        path,
        message: e.to_string(),
    })
}

/// The rows where an artifact's batching restarted, besides its first.
fn restarts_of(artifact: &Artifact) -> Result<Vec<usize>> {
    match artifact.manifest.params.get("batch_restarts") {
        None => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| manifest_error(artifact, "batch_restarts is not a list of rows")),
    }
}

/// The restarts among `points` (the first is the start of the rows, the rest ascending)
/// that change the batches: a restart a multiple of the batch size after the one before
/// it cuts where the batches are cut anyway.
pub(crate) fn normalise_restarts(points: &[usize], batch_size: usize) -> Vec<usize> {
    let mut kept: Vec<usize> = points.iter().take(1).copied().collect();
    for &p in points.iter().skip(1) {
        let last = *kept.last().expect("the first point");
        if p != last && !(p - last).is_multiple_of(batch_size) {
            kept.push(p);
        }
    }
    kept.split_off(1.min(kept.len()))
}

/// The batches of `rows` of `batch_size`, batching restarted at `restarts`.
pub(crate) fn batches(
    rows: &Range<usize>,
    restarts: &[usize],
    batch_size: usize,
) -> Vec<Range<usize>> {
    let mut cuts: Vec<usize> = std::iter::once(rows.start)
        .chain(
            restarts
                .iter()
                .copied()
                .filter(|&r| r > rows.start && r < rows.end),
        )
        .chain(std::iter::once(rows.end))
        .collect();
    cuts.dedup();
    cuts.windows(2)
        .flat_map(|w| nd_torch::input::batch_ranges(&(w[0]..w[1]), batch_size))
        .collect()
}

/// The settings of an explanation, from its manifest's parameters.
fn config_of(params: &Value, dir: &Path) -> Result<Config> {
    let bad = |what: &str| Error::File {
        path: dir.join("manifest.json"),
        message: format!("its parameters have no valid `{what}`"),
    };
    let field = |name: &str| params.get(name).cloned().ok_or_else(|| bad(name));
    let parse = |name: &str| -> Result<Value> { field(name) };
    let string = |name: &str| -> Result<String> {
        parse(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(name))
    };
    let number = |name: &str| -> Result<u64> { parse(name)?.as_u64().ok_or_else(|| bad(name)) };
    let preprocess = serde_json::from_value(field("preprocess")?).map_err(|_| bad("preprocess"))?;
    let mut config = Config::new(Default::default(), string("layer")?, preprocess);
    config.logits = string("logits")?;
    config.classes = serde_json::from_value(field("classes")?).map_err(|_| bad("classes"))?;
    config.output_names =
        serde_json::from_value(field("output_names")?).map_err(|_| bad("output_names"))?;
    config.top_k = number("top_k")? as usize;
    config.top_n = number("top_n")? as usize;
    config.ablate = serde_json::from_value(field("ablate")?).map_err(|_| bad("ablate"))?;
    config.random_draws = number("random_draws")? as usize;
    config.seed = number("seed")?;
    config.truth_category =
        serde_json::from_value(field("truth_category")?).map_err(|_| bad("truth_category"))?;
    config.batch_size = number("batch_size")? as usize;
    if config.batch_size == 0 || config.top_k == 0 {
        return Err(bad("batch_size"));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_on_the_batch_grid_are_dropped() {
        assert_eq!(normalise_restarts(&[0, 64, 128], 32), Vec::<usize>::new());
        assert_eq!(normalise_restarts(&[0, 50, 100], 32), vec![50, 100]);
        // 50 restarts the grid: 82 is on the new one.
        assert_eq!(normalise_restarts(&[0, 50, 82, 90], 32), vec![50, 90]);
        assert_eq!(normalise_restarts(&[7], 32), Vec::<usize>::new());
    }

    #[test]
    fn batches_restart_where_told() {
        assert_eq!(batches(&(0..70), &[], 32), vec![0..32, 32..64, 64..70]);
        assert_eq!(batches(&(0..70), &[40], 32), vec![0..32, 32..40, 40..70]);
        assert_eq!(
            batches(&(10..20), &[0, 15, 30], 4),
            vec![10..14, 14..15, 15..19, 19..20]
        );
    }
}
