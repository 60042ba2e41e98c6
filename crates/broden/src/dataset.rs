//! The dataset's tables: categories, labels, per-category codes and the image index.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::table::{Record, Table};

/// Which part of a dataset to load.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The categories to load, by name; `None` loads every category of `category.csv`.
    /// Whatever order is given here, loaded categories keep the order of `category.csv`,
    /// because the primary-category tie rule depends on it.
    pub categories: Option<Vec<String>>,
}

/// A row of `category.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub name: String,
    pub first: u32,
    pub last: u32,
    pub count: u32,
    pub frequency: u64,
}

/// A row of `label.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub number: u32,
    pub name: String,
    /// The `name(count)` items of the `category` column, in file order.
    pub categories: Vec<(String, u64)>,
    pub frequency: u64,
    pub coverage: f64,
    pub syns: Vec<String>,
}

/// A row of `c_<category>.csv`: a label's code within one category.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryCode {
    pub code: u32,
    pub number: u32,
    pub name: String,
    pub frequency: u64,
    pub coverage: f64,
}

/// One `;`-separated item of a category cell of `index.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An image-level label number: the label covers the whole image. It may be 0.
    Label(u32),
    /// A label map, as a path relative to `images/`.
    Map(&'a str),
}

/// A row of `index.csv`. Its text (the image path, the split, the category cells) lives
/// in the dataset, which the row's accessors take: [`Dataset::image`], [`Dataset::split`],
/// [`Dataset::items`]. A row costs a few dozen bytes plus its paths, so the index of
/// the real Broden stays a few MB.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The line of `index.csv` this row was read from (the header is line 1).
    pub line: u64,
    pub image_height: u32,
    pub image_width: u32,
    pub label_height: u32,
    pub label_width: u32,
    image: Span,
    split: u32,
    /// The row's entries: `entries[items.0..items.1]`.
    items: (u32, u32),
}

/// A piece of [`Index::text`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: u32,
    len: u32,
}

/// An item of a row with the loaded category it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Label { category: u32, number: u32 },
    Map { category: u32, path: Span },
}

/// `index.csv` in a few flat allocations: the rows, every row's items, and one string
/// holding every path.
#[derive(Debug, Default)]
pub(crate) struct Index {
    rows: Vec<Row>,
    entries: Vec<Entry>,
    text: String,
    splits: Vec<String>,
}

impl Index {
    fn push_text(&mut self, text: &str) -> Option<Span> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(text.len()).ok()?;
        start.checked_add(len)?;
        self.text.push_str(text);
        Some(Span { start, len })
    }

    fn text(&self, span: Span) -> &str {
        &self.text[span.start as usize..(span.start + span.len) as usize]
    }
}

/// An opened dataset: every table parsed and checked, no image or label map read yet.
#[derive(Debug)]
pub struct Dataset {
    pub(crate) root: PathBuf,
    pub(crate) categories: Vec<Category>,
    pub(crate) codes: Vec<Vec<CategoryCode>>,
    pub(crate) labels: Vec<Option<Label>>,
    /// Whether every number from 1 to the largest has a row in `label.csv`.
    pub(crate) dense_labels: bool,
    pub(crate) primary: Vec<usize>,
    pub(crate) index: Index,
    pub(crate) metadata_files: Vec<String>,
}

impl Dataset {
    /// Reads and checks the tables of the dataset in `root`.
    pub fn open(root: &Path, config: &Config) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::Io {
                path: root.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a directory (expected a Broden dataset with index.csv)",
                ),
            });
        }
        let all_categories = read_categories(&root.join("category.csv"))?;
        let categories = select_categories(&all_categories, config)?;
        let labels = read_labels(&root.join("label.csv"))?;
        let mut codes = Vec::with_capacity(categories.len());
        let mut metadata_files = vec!["category.csv".to_owned(), "label.csv".to_owned()];
        for category in &categories {
            let file = format!("c_{}.csv", category.name);
            codes.push(read_codes(&root.join(&file), &labels)?);
            metadata_files.push(file);
        }
        metadata_files.push("index.csv".to_owned());
        let primary = primary_categories(labels.len(), &codes);
        let dense_labels = labels.iter().skip(1).all(Option::is_some);
        let index = read_index(
            &root.join("index.csv"),
            &all_categories,
            &categories,
            &labels,
        )?;
        Ok(Dataset {
            root: root.to_owned(),
            categories,
            codes,
            labels,
            primary,
            index,
            metadata_files,
            dense_labels,
        })
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The loaded categories, in `category.csv` order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The position of a loaded category in [`Dataset::categories`].
    pub fn category_index(&self, name: &str) -> Option<usize> {
        self.categories.iter().position(|c| c.name == name)
    }

    /// The codes of a loaded category (`c_<category>.csv`).
    pub fn category_codes(&self, category: usize) -> &[CategoryCode] {
        &self.codes[category]
    }

    /// One more than the largest label number: label numbers index `0..n_labels()`.
    pub fn n_labels(&self) -> usize {
        self.labels.len()
    }

    /// The `label.csv` row of a label number; `None` for 0 and for numbers with no row.
    pub fn label(&self, number: u32) -> Option<&Label> {
        self.labels.get(number as usize).and_then(Option::as_ref)
    }

    /// A label's name as written in `label.csv` (with its `-c`/`-s` suffix); empty for 0.
    pub fn label_name(&self, number: u32) -> &str {
        self.label(number).map_or("", |l| l.name.as_str())
    }

    /// The category a label is scored in (an index into [`Dataset::categories`]).
    ///
    /// It is the loaded category where the label's coverage in `c_<category>.csv` is
    /// largest; on a tie the later category wins, and a label in no loaded category
    /// (label 0 included) falls to the last one. This is NetDissect's rule.
    pub fn primary_category(&self, number: u32) -> usize {
        self.primary
            .get(number as usize)
            .copied()
            .unwrap_or(self.categories.len().saturating_sub(1))
    }

    /// Every row of `index.csv`, in file order.
    pub fn rows(&self) -> &[Row] {
        &self.index.rows
    }

    /// The number of images (rows of `index.csv`).
    pub fn len(&self) -> usize {
        self.index.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.rows.is_empty()
    }

    /// The image of a row as `index.csv` gives it, relative to `images/`.
    pub fn image(&self, row: usize) -> &str {
        self.index.text(self.index.rows[row].image)
    }

    /// The split of a row (`train` or `val` in Broden).
    pub fn split(&self, row: usize) -> &str {
        &self.index.splits[self.index.rows[row].split as usize]
    }

    /// The items of a row's loaded categories, in cell order, each with its category (an
    /// index into [`Dataset::categories`]).
    pub fn items(&self, row: usize) -> impl Iterator<Item = (usize, Item<'_>)> + '_ {
        let (start, end) = self.index.rows[row].items;
        self.index.entries[start as usize..end as usize]
            .iter()
            .map(|entry| match *entry {
                Entry::Label { category, number } => (category as usize, Item::Label(number)),
                Entry::Map { category, path } => {
                    (category as usize, Item::Map(self.index.text(path)))
                }
            })
    }

    /// The tables, relative to the dataset directory, that define the loaded dataset.
    pub fn metadata_files(&self) -> &[String] {
        &self.metadata_files
    }

    /// The image of a row, relative to the dataset directory.
    pub fn image_file(&self, row: usize) -> String {
        format!("images/{}", self.image(row))
    }

    /// The label maps of a row (of the loaded categories), relative to the dataset directory.
    pub fn label_map_files(&self, row: usize) -> impl Iterator<Item = String> + '_ {
        self.items(row).filter_map(|(_, item)| match item {
            Item::Map(path) => Some(format!("images/{path}")),
            Item::Label(_) => None,
        })
    }
}

fn read_categories(path: &Path) -> Result<Vec<Category>> {
    let table = Table::read(path)?;
    let (name, first, last, count, frequency) = (
        table.column("name")?,
        table.column("first")?,
        table.column("last")?,
        table.column("count")?,
        table.column("frequency")?,
    );
    let mut categories: Vec<Category> = Vec::new();
    for record in &table.records {
        let category = Category {
            name: record.fields[name].trim().to_owned(),
            first: table.parse_field(record, first, "a label number")?,
            last: table.parse_field(record, last, "a label number")?,
            count: table.parse_field(record, count, "a whole number")?,
            frequency: table.parse_field(record, frequency, "a whole number")?,
        };
        if category.name.is_empty() {
            return Err(table.error(record, "empty category name"));
        }
        if !category
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(table.error(
                record,
                format!(
                    "category name `{}` must be letters, digits, `_` or `-` (it names the file c_<category>.csv)",
                    category.name
                ),
            ));
        }
        if categories.iter().any(|c| c.name == category.name) {
            return Err(table.error(
                record,
                format!("category `{}` is listed twice", category.name),
            ));
        }
        categories.push(category);
    }
    if categories.is_empty() {
        return Err(Error::File {
            file: path.to_owned(),
            message: "no categories".into(),
        });
    }
    Ok(categories)
}

fn select_categories(all: &[Category], config: &Config) -> Result<Vec<Category>> {
    let Some(wanted) = &config.categories else {
        return Ok(all.to_vec());
    };
    if wanted.is_empty() {
        return Err(Error::Request(
            "the list of categories to load is empty".into(),
        ));
    }
    for name in wanted {
        if !all.iter().any(|c| &c.name == name) {
            let known: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::Request(format!(
                "category `{name}` is not in category.csv (it has {})",
                known.join(", ")
            )));
        }
    }
    Ok(all
        .iter()
        .filter(|c| wanted.contains(&c.name))
        .cloned()
        .collect())
}

fn read_labels(path: &Path) -> Result<Vec<Option<Label>>> {
    let table = Table::read(path)?;
    let (number, name, category, frequency, coverage, syns) = (
        table.column("number")?,
        table.column("name")?,
        table.column("category")?,
        table.column("frequency")?,
        table.column("coverage")?,
        table.column("syns")?,
    );
    let mut labels: Vec<Option<Label>> = vec![None];
    let mut lines: HashMap<u32, u64> = HashMap::new();
    for record in &table.records {
        let n: u32 = table.parse_field(record, number, "a label number")?;
        if n == 0 {
            return Err(table.error(
                record,
                "label number 0 is reserved for unlabelled pixels and has no row",
            ));
        }
        if let Some(first) = lines.insert(n, record.line) {
            return Err(table.error(
                record,
                format!("label number {n} is already defined on line {first}"),
            ));
        }
        let label = Label {
            number: n,
            name: record.fields[name].to_owned(),
            categories: parse_label_categories(&record.fields[category])
                .map_err(|m| table.error(record, m))?,
            frequency: table.parse_field(record, frequency, "a whole number")?,
            coverage: table.parse_field(record, coverage, "a number")?,
            syns: record.fields[syns]
                .split(';')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        if labels.len() <= n as usize {
            labels.resize(n as usize + 1, None);
        }
        labels[n as usize] = Some(label);
    }
    Ok(labels)
}

/// Parses `material(36);object(3)`.
fn parse_label_categories(cell: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for item in cell.split(';').filter(|s| !s.is_empty()) {
        let parsed = item.strip_suffix(')').and_then(|rest| {
            let (name, count) = rest.split_once('(')?;
            Some((name.to_owned(), count.parse::<u64>().ok()?))
        });
        match parsed {
            Some(pair) => out.push(pair),
            None => {
                return Err(format!(
                    "column `category`: `{item}` is not of the form name(count)"
                ));
            }
        }
    }
    Ok(out)
}

fn read_codes(path: &Path, labels: &[Option<Label>]) -> Result<Vec<CategoryCode>> {
    let table = Table::read(path)?;
    let (code, number, name, frequency, coverage) = (
        table.column("code")?,
        table.column("number")?,
        table.column("name")?,
        table.column("frequency")?,
        table.column("coverage")?,
    );
    let mut codes = Vec::with_capacity(table.records.len());
    for record in &table.records {
        let entry = CategoryCode {
            code: table.parse_field(record, code, "a whole number")?,
            number: table.parse_field(record, number, "a label number")?,
            name: record.fields[name].to_owned(),
            frequency: table.parse_field(record, frequency, "a whole number")?,
            coverage: table.parse_field(record, coverage, "a number")?,
        };
        // Code 0 is the category's "unlabelled" entry in the real Broden; it may point at 0.
        if entry.number != 0
            && labels
                .get(entry.number as usize)
                .is_none_or(Option::is_none)
        {
            return Err(table.error(
                record,
                format!("label number {} has no row in label.csv", entry.number),
            ));
        }
        if !entry.coverage.is_finite() {
            return Err(table.error(record, "column `coverage` is not a finite number"));
        }
        codes.push(entry);
    }
    Ok(codes)
}

/// NetDissect's primary category: the largest coverage wins, ties go to the later category,
/// and labels no loaded category knows (label 0 too) fall to the last category.
fn primary_categories(n_labels: usize, codes: &[Vec<CategoryCode>]) -> Vec<usize> {
    let mut coverage = vec![vec![0.0f64; n_labels]; codes.len()];
    for (category, entries) in codes.iter().enumerate() {
        for entry in entries.iter().filter(|e| e.number != 0) {
            if let Some(slot) = coverage[category].get_mut(entry.number as usize) {
                *slot = entry.coverage;
            }
        }
    }
    let last = codes.len().saturating_sub(1);
    (0..n_labels)
        .map(|label| {
            if label == 0 {
                return last;
            }
            let mut best = (0.0f64, last);
            for (category, cov) in coverage.iter().enumerate() {
                // `>=` lets a later category win a tie, including the all-zero tie.
                if cov[label] >= best.0 {
                    best = (cov[label], category);
                }
            }
            best.1
        })
        .collect()
}

const FIXED_COLUMNS: [&str; 6] = ["image", "split", "ih", "iw", "sh", "sw"];

fn read_index(
    path: &Path,
    all_categories: &[Category],
    categories: &[Category],
    labels: &[Option<Label>],
) -> Result<Index> {
    let (table, records) = Table::stream(path)?;
    let fixed: Vec<usize> = FIXED_COLUMNS
        .iter()
        .map(|name| table.column(name))
        .collect::<Result<_>>()?;
    for name in &table.header {
        if !FIXED_COLUMNS.contains(&name.as_str())
            && !all_categories.iter().any(|c| &c.name == name)
        {
            return Err(Error::File {
                file: path.to_owned(),
                message: format!(
                    "column `{name}` is neither a fixed column nor a category of category.csv"
                ),
            });
        }
    }
    let category_columns: Vec<usize> = categories
        .iter()
        .map(|c| {
            table.column(&c.name).map_err(|_| Error::File {
                file: path.to_owned(),
                message: format!(
                    "no column for category `{}`, which category.csv lists",
                    c.name
                ),
            })
        })
        .collect::<Result<_>>()?;

    let mut index = Index::default();
    let too_long = |record: &Record| {
        table.error(
            record,
            "index.csv holds more than 4 GiB of paths or more than 4 billion items",
        )
    };
    for record in records {
        let record = &record?;
        let image = &record.fields[fixed[0]];
        check_relative_path(image)
            .map_err(|m| table.error(record, format!("image `{image}`: {m}")))?;
        let image = index.push_text(image).ok_or_else(|| too_long(record))?;
        let split = record.fields[fixed[1]].trim();
        if split.is_empty() {
            return Err(table.error(record, "empty split (expected train or val)"));
        }
        let split = match index.splits.iter().position(|s| s == split) {
            Some(known) => known,
            None => {
                index.splits.push(split.to_owned());
                index.splits.len() - 1
            }
        } as u32;
        let size = |column: usize| -> Result<u32> {
            let v: u32 = table.parse_field(record, fixed[column], "a positive whole number")?;
            if v == 0 {
                return Err(table.error(record, format!("column `{}` is 0", FIXED_COLUMNS[column])));
            }
            Ok(v)
        };
        let (image_height, image_width, label_height, label_width) =
            (size(2)?, size(3)?, size(4)?, size(5)?);
        let first_item = index.entries.len();
        for (number_of_category, (category, &column)) in
            categories.iter().zip(&category_columns).enumerate()
        {
            let in_category = number_of_category as u32;
            for item in record.fields[column].split(';').filter(|s| !s.is_empty()) {
                if item.bytes().all(|b| b.is_ascii_digit()) {
                    let number: u32 = item.parse().map_err(|_| {
                        table.error(
                            record,
                            format!(
                                "column `{}`: label number `{item}` is too large",
                                category.name
                            ),
                        )
                    })?;
                    if number != 0 && labels.get(number as usize).is_none_or(Option::is_none) {
                        return Err(table.error(
                            record,
                            format!(
                                "column `{}`: label number {number} has no row in label.csv",
                                category.name
                            ),
                        ));
                    }
                    index.entries.push(Entry::Label {
                        category: in_category,
                        number,
                    });
                } else {
                    check_relative_path(item).map_err(|m| {
                        table.error(
                            record,
                            format!("column `{}`: label map `{item}`: {m}", category.name),
                        )
                    })?;
                    let path = index.push_text(item).ok_or_else(|| too_long(record))?;
                    index.entries.push(Entry::Map {
                        category: in_category,
                        path,
                    });
                }
            }
        }
        let items = (
            u32::try_from(first_item).map_err(|_| too_long(record))?,
            u32::try_from(index.entries.len()).map_err(|_| too_long(record))?,
        );
        index.rows.push(Row {
            line: record.line,
            image_height,
            image_width,
            label_height,
            label_width,
            image,
            split,
            items,
        });
    }
    index.rows.shrink_to_fit();
    index.entries.shrink_to_fit();
    index.text.shrink_to_fit();
    Ok(index)
}

/// A path from `index.csv` must stay inside `images/`: relative, with no `..`.
pub(crate) fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("paths use `/` and no backslashes or NUL bytes".into());
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err("the path escapes the dataset directory (`..`)".into());
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("the path is absolute; it must be relative to images/".into());
            }
        }
    }
    Ok(())
}
