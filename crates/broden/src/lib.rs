//! Reads datasets in the Broden layout of Network Dissection, and writes them ([`write`]).
//!
//! A Broden directory holds `index.csv` (one row per image, one column per category),
//! `label.csv` (global label numbers), `category.csv`, one `c_<category>.csv` per
//! category, and `images/` with the images and the label PNGs (label = R + 256·G).
//! [`Dataset::open`] reads and checks every table; images and label maps are decoded
//! one row at a time ([`Dataset::read_image`], [`Dataset::read_labels`]), so the real
//! Broden (63k rows, 1,197 labels) opens in well under a second and never sits in memory.
//!
//! Invariants:
//! - every path in a loaded row is relative and stays inside `images/`;
//! - every image-level label number in a loaded row is 0 or has a row in `label.csv`,
//!   and [`Dataset::read_labels`] checks the same of every pixel;
//! - loaded categories keep `category.csv` order, whatever subset was asked for.
//!
//! Label 0 can appear as an image-level item (the real `index.csv` has it in scene and
//! texture cells). The reader reports it as [`ImageLabel`] with `label == 0`; how it
//! counts is the scorer's business.
//!
//! ```no_run
//! use nd_broden::{Config, Dataset};
//! let dataset = Dataset::open("broden1_224".as_ref(), &Config::default())?;
//! let labels = dataset.read_labels(0)?;
//! for map in &labels.maps {
//!     let category = &dataset.categories()[map.category].name;
//!     println!("{category}: {} labelled pixels", map.pixels.iter().filter(|&&p| p != 0).count());
//! }
//! # Ok::<(), nd_broden::Error>(())
//! ```

mod dataset;
mod error;
mod jpeg;
mod maps;
mod table;
pub mod write;

pub use dataset::{Category, CategoryCode, Config, Dataset, Item, Label, Row};
pub use error::{Error, Result};
pub use maps::{ImageLabel, LabelMap, RowLabels, decode_image};

#[cfg(test)]
mod tests;
