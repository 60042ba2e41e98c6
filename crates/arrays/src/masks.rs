//! Zarr v3 storage of binary unit masks, run-length encoded.
//!
//! A unit's mask covers about 0.5 % of an image's label pixels, and most image/unit pairs
//! have none, so masks are stored sparsely, per layer, as five 1-D arrays in CSR style:
//!
//! ```text
//! <layer>/image_pairs   [images + 1] uint64   pairs of image i: image_pairs[i]..image_pairs[i+1]
//! <layer>/unit          [pairs]      uint32   the unit of each pair (ascending within an image)
//! <layer>/pair_runs     [pairs + 1]  uint64   runs of pair p: pair_runs[p]..pair_runs[p+1]
//! <layer>/run_start     [runs]       uint32   first pixel of a run, as y · width + x
//! <layer>/run_length    [runs]       uint32   pixels in the run (runs may wrap rows)
//! ```
//!
//! A pair exists only for a non-empty mask. Pixel indices are row-major over the image's
//! label map, whose size the dataset's `index.csv` gives.

// One-dimensional array subsets are written `&[a..b]`: one range per dimension, not a
// vector of the range's elements.
#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::ArtifactStore;
use zarrs::array::codec::{BloscCodec, BloscCompressionLevel, BloscCompressor, BloscShuffleMode};
use zarrs::array::{Array, ArrayBuilder, DataType, Element, ElementOwned, data_type};
use zarrs::group::GroupBuilder;

use crate::{Error, Result, node_name};

/// The directory of the mask group inside a segment artifact.
pub const MASKS_DIR: &str = "masks.zarr";

/// Elements per chunk of the 1-D arrays written (256 KiB of `u32`). The writer buffers a
/// chunk per array and a reader decodes one per array at a time, so this bounds both stages'
/// memory: with a million elements (artifacts written before) those buffers grew with the
/// dataset until each held a whole chunk, 28 MiB a layer. Readers take each array's chunk
/// length from its metadata.
const CHUNK: u64 = 1 << 16;

/// A run of mask pixels: `start .. start + length` in row-major label-map order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: u32,
    pub length: u32,
}

/// The non-empty masks of one image: `(unit, runs)`, units ascending.
pub type ImageMasks = Vec<(u32, Vec<Run>)>;

/// Appends run-length encoded pixels of a boolean row-major mask to `runs`.
pub fn encode_runs(mask: impl IntoIterator<Item = bool>, runs: &mut Vec<Run>) {
    let mut open: Option<Run> = None;
    for (i, on) in mask.into_iter().enumerate() {
        match (on, open.as_mut()) {
            (true, Some(run)) => run.length += 1,
            (true, None) => {
                open = Some(Run {
                    start: i as u32,
                    length: 1,
                })
            }
            (false, Some(_)) => runs.push(open.take().expect("open run")),
            (false, None) => {}
        }
    }
    runs.extend(open);
}

/// LZ4: masks are small next to activations, and the score stage reads all of them; zstd
/// (level 1) took a sixth of its time in decompression (perf, ResNet-18 on 2,000 images),
/// and a higher level cost segment a tenth of its time in the compressor.
fn blosc(typesize: usize) -> Result<Arc<BloscCodec>> {
    BloscCodec::new(
        BloscCompressor::LZ4,
        BloscCompressionLevel::try_from(5u8).expect("valid level"),
        None,
        BloscShuffleMode::Shuffle,
        Some(typesize),
    )
    .map(Arc::new)
    .map_err(|e| Error::Layer {
        layer: String::new(),
        message: e.to_string(),
    })
}

/// A 1-D array written front to back in whole chunks, whose length is known at the end.
struct Growing<T: Element + Copy> {
    array: Array<ArtifactStore>,
    buffer: Vec<T>,
    written: u64,
    chunk: u64,
}

impl<T: Element + Copy> Growing<T> {
    fn create(
        store: &Arc<ArtifactStore>,
        path: &str,
        data_type: DataType,
        typesize: usize,
        fill: impl Into<zarrs::array::builder::ArrayBuilderFillValue>,
        chunk: u64,
    ) -> Result<Self> {
        let array = ArrayBuilder::new(vec![0u64], vec![chunk], data_type, fill)
            .bytes_to_bytes_codecs(vec![blosc(typesize)?, crate::checksum()])
            .build(store.clone(), path)
            .map_err(|e| layer_error(path, e))?;
        Ok(Growing {
            array,
            buffer: Vec::with_capacity(chunk as usize),
            written: 0,
            chunk,
        })
    }

    fn push_one(&mut self, value: T) -> Result<()> {
        self.buffer.push(value);
        if self.buffer.len() == self.chunk as usize {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let end = self.written + self.buffer.len() as u64;
        let path = self.array.path().as_str().to_owned();
        self.array
            .set_shape(vec![self.written + self.chunk])
            .map_err(|e| layer_error(&path, e))?;
        self.array
            .store_array_subset(&[self.written..end], self.buffer.as_slice())
            .map_err(|e| layer_error(&path, e))?;
        self.written = end;
        self.buffer.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.flush()?;
        let path = self.array.path().as_str().to_owned();
        self.array
            .set_shape(vec![self.written])
            .map_err(|e| layer_error(&path, e))?;
        self.array
            .store_metadata()
            .map_err(|e| layer_error(&path, e))?;
        Ok(self.written)
    }
}

fn layer_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Layer {
        layer: what.trim_start_matches('/').to_owned(),
        message: e.to_string(),
    }
}

/// Totals of a written layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskTotals {
    pub images: u64,
    pub pairs: u64,
    pub runs: u64,
    pub pixels: u64,
}

/// Writes the masks of one layer, image after image.
pub struct MaskWriter {
    image_pairs: Growing<u64>,
    unit: Growing<u32>,
    pair_runs: Growing<u64>,
    run_start: Growing<u32>,
    run_length: Growing<u32>,
    totals: MaskTotals,
}

impl MaskWriter {
    /// Appends the masks of the next image.
    pub fn push(&mut self, masks: &ImageMasks) -> Result<()> {
        self.push_pairs(masks.iter().map(|(unit, runs)| (*unit, runs.as_slice())))
    }

    /// Appends the masks of the next image, given as `(unit, runs)` pairs, units ascending.
    pub fn push_pairs<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (u32, &'a [Run])>,
    ) -> Result<()> {
        for (unit, runs) in pairs {
            self.unit.push_one(unit)?;
            for run in runs {
                self.run_start.push_one(run.start)?;
                self.run_length.push_one(run.length)?;
                self.totals.pixels += u64::from(run.length);
            }
            self.totals.runs += runs.len() as u64;
            self.pair_runs.push_one(self.totals.runs)?;
            self.totals.pairs += 1;
        }
        self.totals.images += 1;
        self.image_pairs.push_one(self.totals.pairs)
    }

    pub fn finish(self) -> Result<MaskTotals> {
        self.image_pairs.finish()?;
        self.unit.finish()?;
        self.pair_runs.finish()?;
        self.run_start.finish()?;
        self.run_length.finish()?;
        Ok(self.totals)
    }
}

/// A group of per-layer masks.
pub struct MaskGroup {
    path: PathBuf,
    store: Arc<ArtifactStore>,
}

impl MaskGroup {
    pub fn create(path: &Path) -> Result<MaskGroup> {
        std::fs::create_dir_all(path).map_err(|e| store_error(path, e))?;
        let group = Self::open(path)?;
        GroupBuilder::new()
            .build(group.store.clone(), "/")
            .map_err(|e| store_error(path, e))?
            .store_metadata()
            .map_err(|e| store_error(path, e))?;
        Ok(group)
    }

    pub fn open(path: &Path) -> Result<MaskGroup> {
        let store = ArtifactStore::new(path).map_err(|e| store_error(path, e))?;
        Ok(MaskGroup {
            path: path.to_owned(),
            store: Arc::new(store),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn create_layer(&self, layer: &str) -> Result<MaskWriter> {
        self.create_layer_chunked(layer, CHUNK)
    }

    /// A layer whose arrays have `chunk` elements per chunk (tests write other sizes).
    fn create_layer_chunked(&self, layer: &str, chunk: u64) -> Result<MaskWriter> {
        let node = format!("/{}", node_name(layer));
        let mut group = GroupBuilder::new()
            .build(self.store.clone(), &node)
            .map_err(|e| layer_error(layer, e))?;
        group
            .attributes_mut()
            .insert("layer".into(), serde_json::Value::String(layer.to_owned()));
        group.store_metadata().map_err(|e| layer_error(layer, e))?;
        let wide = |name: &str| {
            Growing::<u64>::create(
                &self.store,
                &format!("{node}/{name}"),
                data_type::uint64(),
                8,
                0u64,
                chunk,
            )
        };
        let narrow = |name: &str| {
            Growing::<u32>::create(
                &self.store,
                &format!("{node}/{name}"),
                data_type::uint32(),
                4,
                0u32,
                chunk,
            )
        };
        let (mut image_pairs, mut pair_runs) = (wide("image_pairs")?, wide("pair_runs")?);
        // Both offset arrays start with 0.
        image_pairs.push_one(0)?;
        pair_runs.push_one(0)?;
        Ok(MaskWriter {
            image_pairs,
            unit: narrow("unit")?,
            pair_runs,
            run_start: narrow("run_start")?,
            run_length: narrow("run_length")?,
            totals: MaskTotals::default(),
        })
    }

    pub fn open_layer(&self, layer: &str) -> Result<MaskReader> {
        let node = format!("/{}", node_name(layer));
        let reader = MaskReader {
            layer: layer.to_owned(),
            image_pairs: self.sequential(layer, &node, "image_pairs")?,
            unit: self.sequential(layer, &node, "unit")?,
            pair_runs: self.sequential(layer, &node, "pair_runs")?,
            run_start: self.sequential(layer, &node, "run_start")?,
            run_length: self.sequential(layer, &node, "run_length")?,
        };
        Ok(reader)
    }
}

impl MaskGroup {
    fn sequential<T: ElementOwned + Copy>(
        &self,
        layer: &str,
        node: &str,
        name: &str,
    ) -> Result<Sequential<T>> {
        Array::open(self.store.clone(), &format!("{node}/{name}"))
            .map_err(|e| layer_error(layer, e))
            .map(|array| Sequential::new(array, &self.path, layer))
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Store {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A 1-D array read front to back, which keeps the chunk it decoded last: consecutive
/// blocks of images share chunks (a chunk holds tens of thousands of runs, hundreds of
/// images), so each chunk is decoded once in a sequential pass instead of once per block.
struct Sequential<T> {
    array: Array<ArtifactStore>,
    /// The group's directory and the layer, for errors.
    root: PathBuf,
    layer: String,
    /// Elements per chunk, as the array's metadata says.
    chunk: u64,
    last: Mutex<Option<(u64, Arc<Vec<T>>)>>,
}

impl<T: ElementOwned + Copy> Sequential<T> {
    fn new(array: Array<ArtifactStore>, root: &Path, layer: &str) -> Self {
        // An empty array has no chunk to ask about, and is never read.
        let chunk = array
            .chunk_shape(&[0])
            .map_or(CHUNK, |shape| shape[0].get());
        Sequential {
            array,
            root: root.to_owned(),
            layer: layer.to_owned(),
            chunk,
            last: Mutex::new(None),
        }
    }

    fn len(&self) -> u64 {
        self.array.shape()[0]
    }

    fn chunk(&self, index: u64) -> Result<Arc<Vec<T>>> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((i, values)) = last.as_ref()
            && *i == index
        {
            return Ok(values.clone());
        }
        // The whole chunk, so that its checksum is checked (see `crate::checksum`), then
        // only its elements inside the array: the last chunk is padded with fill values.
        let mut values = self
            .array
            .retrieve_chunk::<Vec<T>>(&[index])
            .map_err(|e| crate::read_error(&self.root, &self.array, &[index], &self.layer, e))?;
        values.truncate((self.len().saturating_sub(index * self.chunk)) as usize);
        let values = Arc::new(values);
        *last = Some((index, values.clone()));
        Ok(values)
    }

    /// The elements `range`, which must lie inside the array.
    fn read(&self, range: Range<u64>) -> Result<Vec<T>> {
        if range.end > self.len() {
            return Err(layer_error(
                &self.layer,
                format!(
                    "{}: elements {}..{} asked of {}",
                    self.array.path(),
                    range.start,
                    range.end,
                    self.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut at = range.start;
        while at < range.end {
            let index = at / self.chunk;
            let chunk = self.chunk(index)?;
            let from = (at - index * self.chunk) as usize;
            let to = ((range.end - index * self.chunk) as usize).min(chunk.len());
            out.extend_from_slice(&chunk[from..to]);
            at = index * self.chunk + to as u64;
        }
        Ok(out)
    }
}

/// Reads the masks of one layer. Blocks of images are best read in order: each compressed
/// chunk is then decoded once.
pub struct MaskReader {
    layer: String,
    image_pairs: Sequential<u64>,
    unit: Sequential<u32>,
    pair_runs: Sequential<u64>,
    run_start: Sequential<u32>,
    run_length: Sequential<u32>,
}

/// The masks of a block of images, flat: image `i` has the pairs
/// `pair_bounds[i]..pair_bounds[i + 1]` (indices into the block's `units`), pair `p` the
/// runs `run_bounds[p]..run_bounds[p + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskBlock {
    pair_bounds: Vec<usize>,
    units: Vec<u32>,
    run_bounds: Vec<usize>,
    runs: Vec<Run>,
}

impl MaskBlock {
    /// The number of images in the block.
    pub fn len(&self) -> usize {
        self.pair_bounds.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The non-empty masks of image `i` of the block: `(unit, runs)`, units ascending.
    pub fn image(&self, i: usize) -> impl ExactSizeIterator<Item = (u32, &[Run])> + Clone {
        (self.pair_bounds[i]..self.pair_bounds[i + 1]).map(|p| {
            (
                self.units[p],
                &self.runs[self.run_bounds[p]..self.run_bounds[p + 1]],
            )
        })
    }
}

impl MaskReader {
    /// The number of images the layer has masks for.
    pub fn images(&self) -> u64 {
        self.image_pairs.len().saturating_sub(1)
    }

    /// The masks of a block of images, flat.
    pub fn read_block(&self, images: Range<u64>) -> Result<MaskBlock> {
        let bad = |message: String| Error::Layer {
            layer: self.layer.clone(),
            message,
        };
        if images.end > self.images() {
            return Err(bad(format!(
                "images {}..{} asked of masks of {} images",
                images.start,
                images.end,
                self.images()
            )));
        }
        let pair_bounds = self.image_pairs.read(images.start..images.end + 1)?;
        let monotone = |bounds: &[u64]| bounds.windows(2).all(|w| w[0] <= w[1]);
        if !monotone(&pair_bounds) {
            return Err(bad(
                "image_pairs is not ascending: the masks are corrupt".into()
            ));
        }
        let pairs = pair_bounds[0]..pair_bounds[pair_bounds.len() - 1];
        let units = self.unit.read(pairs.clone())?;
        let run_bounds = self.pair_runs.read(pairs.start..pairs.end + 1)?;
        if !monotone(&run_bounds) {
            return Err(bad(
                "pair_runs is not ascending: the masks are corrupt".into()
            ));
        }
        let runs = run_bounds[0]..run_bounds[run_bounds.len() - 1];
        let starts = self.run_start.read(runs.clone())?;
        let lengths = self.run_length.read(runs.clone())?;
        Ok(MaskBlock {
            pair_bounds: pair_bounds
                .iter()
                .map(|&b| (b - pairs.start) as usize)
                .collect(),
            units,
            run_bounds: run_bounds
                .iter()
                .map(|&b| (b - runs.start) as usize)
                .collect(),
            runs: starts
                .into_iter()
                .zip(lengths)
                .map(|(start, length)| Run { start, length })
                .collect(),
        })
    }

    /// The masks of a block of images, one entry per image.
    pub fn read_images(&self, images: Range<u64>) -> Result<Vec<ImageMasks>> {
        let block = self.read_block(images)?;
        Ok((0..block.len())
            .map(|i| {
                block
                    .image(i)
                    .map(|(unit, runs)| (unit, runs.to_vec()))
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_encode_a_mask() {
        let mut runs = Vec::new();
        encode_runs([false, true, true, false, true, true, true], &mut runs);
        assert_eq!(
            runs,
            [
                Run {
                    start: 1,
                    length: 2
                },
                Run {
                    start: 4,
                    length: 3
                }
            ]
        );
        runs.clear();
        encode_runs([false; 4], &mut runs);
        assert!(runs.is_empty());
    }

    #[test]
    fn round_trip_with_empty_images_and_many_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let group = MaskGroup::create(&dir.path().join(MASKS_DIR)).unwrap();
        let mut writer = group.create_layer("layer4").unwrap();
        let mut images: Vec<ImageMasks> = Vec::new();
        for i in 0..40u32 {
            let masks: ImageMasks = if i % 3 == 0 {
                Vec::new()
            } else {
                (0..i % 5)
                    .map(|u| {
                        (
                            u * 2,
                            (0..(i * 7919 + u) % 60_000)
                                .map(|r| Run {
                                    start: r * 3,
                                    length: 1 + r % 2,
                                })
                                .collect(),
                        )
                    })
                    .collect()
            };
            writer.push(&masks).unwrap();
            images.push(masks);
        }
        let totals = writer.finish().unwrap();
        assert_eq!(totals.images, 40);
        assert!(
            totals.runs > 4 * CHUNK,
            "the test should span chunks: {totals:?}"
        );
        let reader = group.open_layer("layer4").unwrap();
        assert_eq!(reader.images(), 40);
        assert_eq!(reader.read_images(0..40).unwrap(), images);
        assert_eq!(reader.read_images(17..23).unwrap(), images[17..23]);
        assert_eq!(reader.read_images(5..5).unwrap(), Vec::<ImageMasks>::new());
        // Blocks read in order, as the score stage reads them, and out of order.
        for start in (0..40).step_by(7).chain([21, 0, 35]) {
            let end = (start + 7).min(40);
            let block = reader.read_block(start..end).unwrap();
            assert_eq!(block.len(), (end - start) as usize);
            for i in 0..block.len() {
                let masks: ImageMasks =
                    block.image(i).map(|(u, runs)| (u, runs.to_vec())).collect();
                assert_eq!(masks, images[start as usize + i]);
            }
        }
        assert!(reader.read_block(39..41).is_err());
        // A flipped byte in a chunk of runs is an error naming the chunk, never runs.
        let file = dir.path().join(MASKS_DIR).join("layer4/run_start/c/2");
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let damaged = group.open_layer("layer4").unwrap();
        let err = damaged.read_images(0..40).unwrap_err().to_string();
        assert!(
            err.contains("chunk [2] of `layer4/run_start`")
                && err.contains("fails its crc32c checksum"),
            "{err}"
        );
        // Arrays of other chunk lengths (a million elements, as written before; an odd
        // length) read back the same: readers take the length from the metadata.
        for chunk in [1 << 20, 1000] {
            let name = format!("chunk{chunk}");
            let mut writer = group.create_layer_chunked(&name, chunk).unwrap();
            for masks in &images {
                writer.push(masks).unwrap();
            }
            writer.finish().unwrap();
            let reader = group.open_layer(&name).unwrap();
            assert_eq!(
                reader.read_images(0..40).unwrap(),
                images,
                "chunks of {chunk}"
            );
            let block = reader.read_block(10..30).unwrap();
            assert_eq!(block.image(5).count(), images[15].len());
        }
    }
}
