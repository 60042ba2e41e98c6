//! `netdissect explain --html DIR`: the pages of images explained outside the dataset
//! ([`nd_html::ImagePages`]), with each top unit's mask in the image drawn exactly as the
//! dissection segments: the layer's activations for the image, upsampled to the label
//! maps' size as the model's last run did (its segment artifact's method and fields) and
//! kept above each unit's threshold (its quantile artifact), through nd-segment's own
//! functions. The units link their pages in that run's report when the cache holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nd_arrays::fields::Fields;
use nd_segment::upsample::{Geometry, LayerPlacement, Scratch, hot_runs};
use nd_store::{Artifact, Key, Store};

/// How the model's last run segmented one layer: each unit's threshold, where the layer's
/// maps sit over the label maps, and the label maps' size.
pub struct Segmenter {
    layer: String,
    thresholds: Vec<f64>,
    placement: LayerPlacement,
    label_size: [usize; 2],
    /// The geometry of the layer's map size (one size: images are resized to the input
    /// size), made at the first map.
    geometry: Option<([usize; 2], Geometry)>,
    scratch: Scratch,
}

impl Segmenter {
    /// The segmentation of `layer` by the run whose artifacts `artifact` opens (its
    /// extract, quantile and segment artifacts), on `dataset`.
    pub fn from_run(
        dataset: &nd_broden::Dataset,
        artifact: &dyn Fn(&str) -> anyhow::Result<Artifact>,
        layer: &str,
    ) -> anyhow::Result<Segmenter> {
        let extract = artifact("extract")?;
        let quantile = artifact("quantile")?;
        let segment = artifact("segment")?;
        let params = &segment.manifest.params;
        let upsample: nd_segment::Upsample = serde_json::from_value(params["upsample"].clone())
            .with_context(|| {
                format!(
                    "{}: no upsampling method in its params",
                    segment.manifest_path().display()
                )
            })?;
        // The fields the run used, whatever their source, are in the segment key: given as
        // the choices, they place every layer as the run did.
        let fields = match params.get("fields") {
            Some(value) => {
                Fields::Overrides(serde_json::from_value(value.clone()).with_context(|| {
                    format!(
                        "{}: its fields are not field maps",
                        segment.manifest_path().display()
                    )
                })?)
            }
            None => Fields::Model,
        };
        let config = nd_segment::Config {
            upsample,
            fields,
            progress: false,
        };
        // The segment key holds the label maps' sizes of the rows: the same key from this
        // dataset means the same sizes (and the same activations, thresholds and placement).
        let spec = nd_segment::spec(dataset, &extract, &quantile, &config)?;
        if spec.key() != segment.key() {
            bail!(
                "the dataset is not the one the model's last run segmented (the segment artifact {} \
                 has another key from its label maps, activations or thresholds): run `netdissect run` \
                 again",
                segment.key().short()
            );
        }
        let placement = *nd_segment::placements(&extract, &config)?
            .get(layer)
            .with_context(|| format!("layer `{layer}` is not among the extracted layers"))?;

        let path = quantile.dir.join(nd_tables::thresholds::FILE);
        let mut rows: Vec<(u32, f64)> = nd_tables::thresholds::read_rows(&path)?
            .into_iter()
            .filter(|r| r.layer == layer)
            .map(|r| (r.unit, r.threshold))
            .collect();
        rows.sort_by_key(|&(u, _)| u);
        if rows.is_empty() || rows.iter().enumerate().any(|(i, &(u, _))| u as usize != i) {
            bail!(
                "{}: the thresholds of layer `{layer}` do not cover its units 0..{}",
                path.display(),
                rows.len()
            );
        }

        // The label maps' size of the rows segmented; where they differ, the commonest (the
        // earliest on ties): a new image has no label map of its own.
        let mut counts: BTreeMap<[usize; 2], (usize, usize)> = BTreeMap::new();
        for (i, row) in dataset.rows()[segment.rows()?].iter().enumerate() {
            let size = [row.label_height as usize, row.label_width as usize];
            counts.entry(size).or_insert((0, i)).0 += 1;
        }
        let label_size = counts
            .iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
            .map(|(&size, _)| size)
            .context("the model's last run segmented no image")?;
        Ok(Segmenter {
            layer: layer.to_owned(),
            thresholds: rows.into_iter().map(|(_, t)| t).collect(),
            placement,
            label_size,
            geometry: None,
            scratch: Scratch::default(),
        })
    }

    /// The label maps' size, `[height, width]`: the masks' size.
    pub fn label_size(&self) -> [usize; 2] {
        self.label_size
    }

    /// The layer's number of units.
    pub fn units(&self) -> usize {
        self.thresholds.len()
    }

    /// Unit `unit`'s mask from its `height × width` map (row-major): the label pixels whose
    /// upsampled activation exceeds the unit's threshold, as nd-segment computes them.
    pub fn mask(&mut self, map: &[f32], size: [usize; 2], unit: usize) -> Vec<bool> {
        let [lh, lw] = self.label_size;
        if self.geometry.as_ref().is_none_or(|(s, _)| *s != size) {
            let geometry = Geometry::new(&self.placement, size[0], size[1], lh, lw);
            self.geometry = Some((size, geometry));
        }
        let (_, geometry) = self.geometry.as_ref().expect("made above");
        let mut mask = vec![false; lh * lw];
        hot_runs(
            map,
            geometry,
            self.thresholds[unit],
            &mut self.scratch,
            |y, x0, x1| mask[y * lw + x0..y * lw + x1].fill(true),
        );
        mask
    }

    /// Each unit's page in the report of the run whose html artifact `pages` names, or why
    /// there are none.
    pub fn unit_pages(
        &self,
        store: &Store,
        pages: Option<Key>,
    ) -> anyhow::Result<Result<Vec<String>, String>> {
        let Some(key) = pages else {
            return Ok(Err(
                "the model's last run wrote no report pages ([html] pages = false)".into(),
            ));
        };
        let Some(artifact) = store.get_key(nd_html::STAGE, key)? else {
            return Ok(Err(format!(
                "the cache no longer holds the report pages of the model's last run ({})",
                key.short()
            )));
        };
        let mut links = Vec::with_capacity(self.units());
        for unit in 0..self.units() {
            match nd_html::unit_page(&artifact, &self.layer, unit as u32)? {
                Some(path) => links.push(nd_html::file_url(&path)),
                None => {
                    return Ok(Err(format!(
                        "the report pages of the model's last run ({}) have no page of unit {unit} of layer {}",
                        key.short(),
                        self.layer
                    )));
                }
            }
        }
        Ok(Ok(links))
    }
}

/// The folder the pages go to: checked before anything is computed, written as a
/// temporary folder beside it, and renamed into place only once every page is written, so
/// a failure leaves nothing (the temporary folder is removed when this is dropped).
pub struct Destination {
    to: PathBuf,
    tmp: PathBuf,
    old: PathBuf,
    started: bool,
}

impl Destination {
    /// Checks that `to` can take the pages: it does not exist, or it is an empty folder or
    /// one that `netdissect explain --html` wrote (which is replaced).
    pub fn check(to: &Path) -> anyhow::Result<Destination> {
        let what = "give a new folder, an empty one, or one that `netdissect explain --html` wrote (it is replaced)";
        match std::fs::metadata(to) {
            Ok(m) if !m.is_dir() => {
                bail!(
                    "--html {}: a file is there, not a folder; {what}",
                    to.display()
                )
            }
            Ok(_) => {
                let mut entries = std::fs::read_dir(to)
                    .with_context(|| format!("--html {}: cannot read the folder", to.display()))?;
                if entries.next().is_some() && !to.join(nd_html::IMAGE_PAGES_FILE).is_file() {
                    bail!(
                        "--html {}: the folder holds other files (no {}); {what}",
                        to.display(),
                        nd_html::IMAGE_PAGES_FILE
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("--html {}: {e}", to.display()),
        }
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = to
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("--html {}: not a folder's name", to.display()))?;
        let pid = std::process::id();
        Ok(Destination {
            to: to.to_owned(),
            tmp: parent.join(format!(".{name}.tmp-{pid}")),
            old: parent.join(format!(".{name}.old-{pid}")),
            started: false,
        })
    }

    /// Makes the temporary folder (and the destination's parents) and returns it.
    pub fn start(&mut self) -> anyhow::Result<&Path> {
        let _ = std::fs::remove_dir_all(&self.tmp);
        std::fs::create_dir_all(&self.tmp)
            .with_context(|| format!("--html: cannot create {}", self.tmp.display()))?;
        self.started = true;
        Ok(&self.tmp)
    }

    /// Puts the written pages in place of the destination (an earlier folder of pages is
    /// renamed aside, then removed); returns the destination.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        if self.to.exists() {
            std::fs::rename(&self.to, &self.old).with_context(|| {
                format!(
                    "--html: cannot move the earlier {} aside",
                    self.to.display()
                )
            })?;
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.to) {
            // The earlier pages go back where they were.
            let _ = std::fs::rename(&self.old, &self.to);
            return Err(e).with_context(|| {
                format!("--html: cannot rename the pages into {}", self.to.display())
            });
        }
        self.started = false;
        let _ = std::fs::remove_dir_all(&self.old);
        Ok(self.to.clone())
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        if self.started {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
