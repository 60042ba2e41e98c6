//! Tests on tiny datasets written by hand into temporary directories.

use std::path::Path;

use crate::{Config, Dataset, Error, ImageLabel, Item};

/// A label map PNG with the given label numbers (R + 256·G).
fn write_label_png(path: &Path, width: u32, height: u32, labels: &[u16]) {
    assert_eq!(labels.len(), (width * height) as usize);
    let mut img = image::RgbImage::new(width, height);
    for (i, &label) in labels.iter().enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        img.put_pixel(
            x,
            y,
            image::Rgb([(label & 0xff) as u8, (label >> 8) as u8, 7]),
        );
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn write_image(path: &Path, width: u32, height: u32) {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8 * 10, y as u8 * 10, 99])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

const CATEGORY_CSV: &str = "name,first,last,count,frequency
color,1,2,2,2
object,3,300,3,2
part,4,5,2,1
texture,6,7,2,2
";

// Label 3 (`wood`) is both an object and a texture with equal coverage: the tie goes to
// the later category (texture). Label 300 needs the green byte. Label 8 is in no category.
const LABEL_CSV: &str = "number,name,category,frequency,coverage,syns
1,red-c,color(2),2,0.5,
2,blue-c,color(2),2,0.5,
3,wood,object(1);texture(1),2,0.25,timber;lumber
4,wheel,part(1),1,0.1,
5,door,part(1),1,0.1,
6,striped,texture(1),1,1.0,
7,dotted,texture(1),1,1.0,
8,orphan,,0,0.0,
300,car,object(1),1,0.2,\"automobile;auto\"
";

fn write_fixture(root: &Path) {
    let files = [
        ("category.csv", CATEGORY_CSV),
        ("label.csv", LABEL_CSV),
        (
            "c_color.csv",
            "code,number,name,frequency,coverage\n1,1,red-c,2,0.5\n2,2,blue-c,2,0.5\n",
        ),
        (
            "c_object.csv",
            "code,number,name,frequency,coverage\n1,3,wood,1,0.25\n2,300,car,1,0.2\n",
        ),
        (
            "c_part.csv",
            "code,number,name,frequency,coverage\n1,4,wheel,1,0.1\n2,5,door,1,0.1\n",
        ),
        (
            "c_texture.csv",
            "code,number,name,frequency,coverage\n1,3,wood,1,0.25\n2,6,striped,1,1.0\n3,7,dotted,1,1.0\n",
        ),
        (
            "index.csv",
            "image,split,ih,iw,sh,sw,color,object,part,texture
a/1.jpg,train,8,6,4,3,a/1_color.png,a/1_object.png,a/1_part_1.png;a/1_part_2.png,6;7
a/2.png,val,8,6,4,3,a/2_color.png,;,,0
",
        ),
    ];
    for (name, text) in files {
        std::fs::write(root.join(name), text).unwrap();
    }
    let images = root.join("images");
    write_image(&images.join("a/1.jpg"), 6, 8);
    write_image(&images.join("a/2.png"), 6, 8);
    write_label_png(
        &images.join("a/1_color.png"),
        3,
        4,
        &[1, 1, 2, 2, 2, 0, 1, 2, 1, 1, 1, 1],
    );
    write_label_png(
        &images.join("a/1_object.png"),
        3,
        4,
        &[0, 300, 300, 3, 3, 0, 0, 0, 0, 0, 0, 0],
    );
    write_label_png(
        &images.join("a/1_part_1.png"),
        3,
        4,
        &[0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    write_label_png(
        &images.join("a/1_part_2.png"),
        3,
        4,
        &[0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    write_label_png(&images.join("a/2_color.png"), 3, 4, &[2; 12]);
}

fn fixture() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let dataset = Dataset::open(dir.path(), &Config::default()).unwrap();
    (dir, dataset)
}

fn open_err(root: &Path) -> String {
    match Dataset::open(root, &Config::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => error_chain(&e),
    }
}

fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn replace_in(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn reads_tables_in_file_order() {
    let (_dir, ds) = fixture();
    let names: Vec<&str> = ds.categories().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["color", "object", "part", "texture"]);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.n_labels(), 301);
    assert_eq!(ds.label_name(300), "car");
    assert_eq!(ds.label(300).unwrap().syns, ["automobile", "auto"]);
    assert_eq!(
        ds.label(3).unwrap().categories,
        [("object".to_owned(), 1), ("texture".to_owned(), 1)]
    );
    assert_eq!(ds.label_name(0), "");
    assert!(ds.label(150).is_none());
    let row = &ds.rows()[0];
    assert_eq!(
        (row.line, ds.image(0), ds.split(0)),
        (2, "a/1.jpg", "train")
    );
    assert_eq!(
        (
            row.image_height,
            row.image_width,
            row.label_height,
            row.label_width
        ),
        (8, 6, 4, 3)
    );
}

/// The items of one category cell of a row.
fn cell(ds: &Dataset, row: usize, category: usize) -> Vec<Item<'_>> {
    ds.items(row)
        .filter(|&(c, _)| c == category)
        .map(|(_, item)| item)
        .collect()
}

#[test]
fn multi_layer_cells_are_separate_maps() {
    let (_dir, ds) = fixture();
    assert_eq!(
        cell(&ds, 0, 2),
        [Item::Map("a/1_part_1.png"), Item::Map("a/1_part_2.png")]
    );
    let labels = ds.read_labels(0).unwrap();
    let parts: Vec<&[u16]> = labels
        .maps
        .iter()
        .filter(|m| m.category == 2)
        .map(|m| m.pixels.as_slice())
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0][..3], [0, 4, 4]);
    assert_eq!(parts[1][..3], [0, 0, 5]);
}

#[test]
fn label_is_red_plus_256_green() {
    let (_dir, ds) = fixture();
    let labels = ds.read_labels(0).unwrap();
    let object = labels.maps.iter().find(|m| m.category == 1).unwrap();
    assert_eq!(object.pixels[..5], [0, 300, 300, 3, 3]);
    assert_eq!((labels.height, labels.width), (4, 3));
}

#[test]
fn image_level_numbers_include_zero_and_empty_items_are_dropped() {
    let (_dir, ds) = fixture();
    assert_eq!(cell(&ds, 0, 3), [Item::Label(6), Item::Label(7)]);
    // `;` alone is a cell of empty items: nothing.
    assert!(cell(&ds, 1, 1).is_empty());
    let labels = ds.read_labels(1).unwrap();
    assert_eq!(
        labels.image_labels,
        [ImageLabel {
            category: 3,
            label: 0
        }]
    );
    assert_eq!(labels.maps.len(), 1);
}

#[test]
fn primary_category_follows_coverage_then_later_category() {
    let (_dir, ds) = fixture();
    let texture = ds.category_index("texture").unwrap();
    let object = ds.category_index("object").unwrap();
    assert_eq!(ds.primary_category(300), object);
    // Equal coverage in object and texture: the later category wins.
    assert_eq!(ds.primary_category(3), texture);
    // No category and label 0 fall to the last one.
    assert_eq!(ds.primary_category(8), texture);
    assert_eq!(ds.primary_category(0), texture);
}

#[test]
fn primary_category_prefers_larger_coverage() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(
        dir.path(),
        "c_object.csv",
        "1,3,wood,1,0.25",
        "1,3,wood,1,0.5",
    );
    let ds = Dataset::open(dir.path(), &Config::default()).unwrap();
    assert_eq!(ds.primary_category(3), ds.category_index("object").unwrap());
}

#[test]
fn category_subset_keeps_file_order_and_moves_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let config = Config {
        categories: Some(vec!["part".into(), "object".into()]),
    };
    let ds = Dataset::open(dir.path(), &config).unwrap();
    let names: Vec<&str> = ds.categories().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["object", "part"]);
    // Texture is not loaded, so wood is an object now; labels of no loaded category go to `part`.
    assert_eq!(ds.primary_category(3), 0);
    assert_eq!(ds.primary_category(6), 1);
    let labels = ds.read_labels(0).unwrap();
    assert_eq!(labels.maps.len(), 3);
    assert!(labels.image_labels.is_empty());
    let bad = Config {
        categories: Some(vec!["scene".into()]),
    };
    let err = Dataset::open(dir.path(), &bad).unwrap_err().to_string();
    assert!(
        err.contains("category `scene` is not in category.csv"),
        "{err}"
    );
}

#[test]
fn images_decode_with_their_size_checked() {
    let (dir, ds) = fixture();
    let img = ds.read_image(1).unwrap();
    assert_eq!(img.dimensions(), (6, 8));
    assert_eq!(img.get_pixel(2, 3).0, [20, 30, 99]);
    ds.validate().unwrap();
    ds.check_files().unwrap();
    replace_in(
        dir.path(),
        "index.csv",
        "a/2.png,val,8,6",
        "a/2.png,val,8,7",
    );
    let ds = Dataset::open(dir.path(), &Config::default()).unwrap();
    let err = ds.read_image(1).unwrap_err().to_string();
    assert_eq!(
        err,
        "index.csv line 3: images/a/2.png: image is 8×6 (height×width), index.csv says 8×7"
    );
}

#[test]
fn missing_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    std::fs::remove_file(dir.path().join("c_part.csv")).unwrap();
    let err = open_err(dir.path());
    assert!(
        err.starts_with("cannot read ") && err.contains("c_part.csv"),
        "{err}"
    );
}

#[test]
fn truncated_index_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let path = dir.path().join("index.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 8]).unwrap();
    let err = open_err(dir.path());
    assert!(
        err.contains("index.csv: line 3: expected 10 fields as in the header, found 7"),
        "{err}"
    );
}

#[test]
fn unreadable_index_is_an_io_error_on_it() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let path = dir.path().join("index.csv");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = open_err(dir.path());
    assert!(
        err.starts_with("cannot read ") && err.contains("index.csv"),
        "{err}"
    );
}

#[test]
fn a_bad_record_after_good_ones_names_its_line() {
    // The index is read record by record: an error on a later line still names it.
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let path = dir.path().join("index.csv");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = open_err(dir.path());
    assert!(
        err.contains("index.csv: line 3: malformed CSV") && err.contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn wrong_column_count_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(
        dir.path(),
        "label.csv",
        "4,wheel,part(1),1,0.1,",
        "4,wheel,part(1),1,0.1,,extra",
    );
    let err = open_err(dir.path());
    assert!(
        err.contains("label.csv: line 5: expected 6 fields as in the header, found 7"),
        "{err}"
    );
}

#[test]
fn missing_label_map_names_file_and_line() {
    let (dir, ds) = fixture();
    std::fs::remove_file(dir.path().join("images/a/1_part_2.png")).unwrap();
    let err = error_chain(&ds.read_labels(0).unwrap_err());
    assert!(
        err.starts_with("index.csv line 2: images/a/1_part_2.png: "),
        "{err}"
    );
    let err = ds.check_files().unwrap_err().to_string();
    assert!(
        err.starts_with("index.csv line 2: images/a/1_part_2.png: "),
        "{err}"
    );
}

#[test]
fn label_map_of_the_wrong_size() {
    let (dir, ds) = fixture();
    write_label_png(&dir.path().join("images/a/2_color.png"), 4, 4, &[2; 16]);
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert_eq!(
        err,
        "index.csv line 3: images/a/2_color.png: label map is 4×4 (height×width), index.csv says 4×3"
    );
    assert_eq!(ds.validate().unwrap_err().to_string(), err);
}

#[test]
fn truncated_label_map() {
    let (dir, ds) = fixture();
    let path = dir.path().join("images/a/2_color.png");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert!(
        err.starts_with("index.csv line 3: images/a/2_color.png: cannot decode label map"),
        "{err}"
    );
}

#[test]
fn paths_that_escape_the_dataset_are_refused() {
    for bad in ["../outside.png", "a/../../outside.png", "/etc/passwd"] {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        replace_in(dir.path(), "index.csv", "a/2_color.png", bad);
        let err = open_err(dir.path());
        assert!(
            err.contains("index.csv: line 3: column `color`: label map"),
            "{err}"
        );
        assert!(err.contains("escapes") || err.contains("absolute"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(dir.path(), "index.csv", "a/1.jpg", "../1.jpg");
    let err = open_err(dir.path());
    assert!(
        err.contains("line 2: image `../1.jpg`: the path escapes"),
        "{err}"
    );
}

#[test]
fn image_level_label_without_a_row() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(dir.path(), "index.csv", "6;7", "6;77");
    let err = open_err(dir.path());
    assert!(
        err.ends_with(
            "index.csv: line 2: column `texture`: label number 77 has no row in label.csv"
        ),
        "{err}"
    );
}

#[test]
fn pixel_label_without_a_row() {
    let (dir, ds) = fixture();
    write_label_png(
        &dir.path().join("images/a/2_color.png"),
        3,
        4,
        &[2, 2, 2, 2, 9, 2, 2, 2, 2, 2, 2, 2],
    );
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert_eq!(
        err,
        "index.csv line 3: images/a/2_color.png: pixel (y 1, x 1) has label 9, which has no row in label.csv"
    );
}

#[test]
fn pixel_label_past_the_last_of_dense_numbers() {
    // Label numbers 1..=9 all with rows: the check takes the map's largest label.
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(dir.path(), "label.csv", "300,car", "9,car");
    replace_in(dir.path(), "c_object.csv", "2,300,car", "2,9,car");
    let object = dir.path().join("images/a/1_object.png");
    write_label_png(&object, 3, 4, &[0, 9, 9, 3, 3, 0, 0, 0, 0, 0, 0, 0]);
    let ds = Dataset::open(dir.path(), &Config::default()).unwrap();
    assert_eq!(ds.n_labels(), 10);
    assert!(ds.read_labels(0).is_ok());
    write_label_png(
        &dir.path().join("images/a/2_color.png"),
        3,
        4,
        &[2, 2, 2, 2, 2, 2, 2, 10, 2, 2, 2, 2],
    );
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert_eq!(
        err,
        "index.csv line 3: images/a/2_color.png: pixel (y 2, x 1) has label 10, which has no row in label.csv"
    );
}

#[test]
fn grey_label_maps_are_refused() {
    let (dir, ds) = fixture();
    image::GrayImage::new(3, 4)
        .save(dir.path().join("images/a/2_color.png"))
        .unwrap();
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert!(err.contains("label maps are 8-bit RGB"), "{err}");
}

/// Writes a 3×4 PNG of `color` with the given bytes per pixel (and palette, if any).
fn write_png(
    path: &Path,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<Vec<u8>>,
) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 3, 4);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if let Some(palette) = palette {
        encoder.set_palette(palette);
    }
    encoder
        .write_header()
        .unwrap()
        .write_image_data(data)
        .unwrap();
}

/// Label maps saved as a palette or with an alpha channel carry the same R + 256·G labels
/// as RGB ones; 16-bit maps are refused.
#[test]
fn palette_and_alpha_label_maps_read_as_rgb() {
    let (dir, ds) = fixture();
    let path = dir.path().join("images/a/2_color.png");
    // Labels 1, 2 and 300 (R 44, G 1), in a palette of three colours.
    let labels: [u16; 12] = [1, 2, 300, 1, 1, 2, 300, 300, 0, 2, 1, 1];
    let index = |l: u16| match l {
        0 => 3u8,
        1 => 0,
        2 => 1,
        _ => 2,
    };
    let palette = vec![1, 0, 9, 2, 0, 9, 44, 1, 9, 0, 0, 0];
    let indices: Vec<u8> = labels.iter().map(|&l| index(l)).collect();
    write_png(
        &path,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &indices,
        Some(palette),
    );
    assert_eq!(ds.read_labels(1).unwrap().maps[0].pixels, labels);
    let rgba: Vec<u8> = labels
        .iter()
        .flat_map(|&l| [(l & 0xff) as u8, (l >> 8) as u8, 5, 255])
        .collect();
    write_png(
        &path,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &rgba,
        None,
    );
    assert_eq!(ds.read_labels(1).unwrap().maps[0].pixels, labels);
    write_png(
        &path,
        png::ColorType::Rgb,
        png::BitDepth::Sixteen,
        &[0; 72],
        None,
    );
    let err = ds.read_labels(1).unwrap_err().to_string();
    assert!(err.contains("label maps are 8-bit RGB"), "{err}");
}

#[test]
fn duplicate_label_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(dir.path(), "label.csv", "5,door", "4,door");
    let err = open_err(dir.path());
    assert!(
        err.ends_with("label.csv: line 6: label number 4 is already defined on line 5"),
        "{err}"
    );
}

#[test]
fn unknown_index_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(dir.path(), "index.csv", "texture\n", "textures\n");
    let err = open_err(dir.path());
    assert!(
        err.contains("column `textures` is neither a fixed column nor a category"),
        "{err}"
    );
}

#[test]
fn non_numeric_size_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    replace_in(
        dir.path(),
        "index.csv",
        "a/2.png,val,8,6",
        "a/2.png,val,eight,6",
    );
    let err = open_err(dir.path());
    assert!(
        err.ends_with("index.csv: line 3: column `ih`: `eight` is not a positive whole number"),
        "{err}"
    );
}

fn write_jpeg(path: &Path, width: u32, height: u32) {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 37) as u8, (y * 53) as u8, ((x + y) * 11) as u8])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&img)
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn jpeg_images_decode_and_truncation_is_an_error() {
    let (dir, ds) = fixture();
    let path = dir.path().join("images/a/1.jpg");
    write_jpeg(&path, 6, 8);
    let img = ds.read_image(0).unwrap();
    assert_eq!(img.dimensions(), (6, 8));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = ds.read_image(0).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "index.csv line 2: images/a/1.jpg: cannot decode JPEG: the file is truncated"
        ),
        "{err}"
    );
    std::fs::write(&path, &bytes[..40]).unwrap();
    let err = ds.read_image(0).unwrap_err().to_string();
    assert!(
        err.starts_with("index.csv line 2: images/a/1.jpg: cannot decode JPEG"),
        "{err}"
    );
    std::fs::write(&path, b"\xff\xd8\xff\xe0 not a jpeg at all").unwrap();
    assert!(ds.read_image(0).is_err());
}
