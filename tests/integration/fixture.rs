//! A dataset and activation cube small enough to work out every threshold, mask, count and
//! IoU by hand, run through quantile, segment, score and report as libraries, for both
//! upsampling modes and both denominators.
//!
//! Dataset: two images with 4×4 label maps; categories color, object, texture (last).
//! Labels: 1 red-c, 2 blue-c (color), 3 car (object), 4 striped (texture).
//!   image 0: colour red in columns 0–1 and blue in columns 2–3; car on the top-left 2×2;
//!            image-level texture `striped`.
//!   image 1: colour all blue; car on pixel (0, 0); image-level texture `0`.
//!   truth: red 8, blue 24, car 5, striped 16, label 0 16.
//! Activations: one layer `conv` of 2 units with 2×2 maps (upsampled ×2):
//!   unit 0: image 0 [[9, 0], [0, 0]], image 1 all 0;
//!   unit 1: image 0 all 0, image 1 [[0, 0], [0, 8]].
//!   top = 0.125 over 8 values: pos = 0.875 · 7 = 6.125, so T0 = 0.125 · 9 = 1.125 and
//!   T1 = 0.125 · 8 = 1.
//!   The layer's receptive field, as an extraction records it: offset −1, size 3, stride 4
//!   input pixels (8×8 images), so cell centres at input pixels 0 and 4, label pixels 0
//!   and 2; the receptive-field tests that say so assume them mid-cell (1 and 3) instead.

use std::collections::BTreeMap;
use std::path::Path;

use nd_arrays::fields::{Field, FieldChoice, Fields};
use nd_arrays::masks::{MASKS_DIR, MaskGroup, Run};
use nd_arrays::{ActivationGroup, LayerShape};
use nd_score::Denominator;
use nd_segment::Upsample;
use serde_json::json;

fn label_png(path: &Path, labels: [u16; 16]) {
    let img = image::RgbImage::from_fn(4, 4, |x, y| {
        let l = labels[(y * 4 + x) as usize];
        image::Rgb([(l & 0xff) as u8, (l >> 8) as u8, 0])
    });
    img.save(path).unwrap();
}

/// The dataset, image 0's texture cell being `texture` (`4` above).
fn dataset_with(root: &Path, texture: &str) -> nd_broden::Dataset {
    std::fs::create_dir_all(root.join("images")).unwrap();
    let files = [
        (
            "category.csv",
            "name,first,last,count,frequency\ncolor,1,2,2,2\nobject,3,3,1,2\ntexture,4,4,1,1\n",
        ),
        (
            "label.csv",
            "number,name,category,frequency,coverage,syns\n1,red-c,color(1),1,0.5,\n2,blue-c,color(2),2,0.75,\n3,car,object(2),2,0.15,\n4,striped,texture(1),1,1.0,\n",
        ),
        (
            "c_color.csv",
            "code,number,name,frequency,coverage\n1,1,red-c,1,0.5\n2,2,blue-c,2,0.75\n",
        ),
        (
            "c_object.csv",
            "code,number,name,frequency,coverage\n1,3,car,2,0.15\n",
        ),
        (
            "c_texture.csv",
            "code,number,name,frequency,coverage\n1,4,striped,1,1.0\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(root.join(name), text).unwrap();
    }
    std::fs::write(
        root.join("index.csv"),
        format!(
            "image,split,ih,iw,sh,sw,color,object,texture\n\
             0.png,train,8,8,4,4,0_color.png,0_object.png,{texture}\n\
             1.png,val,8,8,4,4,1_color.png,1_object.png,0\n"
        ),
    )
    .unwrap();
    let images = root.join("images");
    for i in 0..2 {
        image::RgbImage::new(8, 8)
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    label_png(
        &images.join("0_color.png"),
        [1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2],
    );
    label_png(
        &images.join("0_object.png"),
        [3, 3, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    label_png(&images.join("1_color.png"), [2; 16]);
    let mut car = [0; 16];
    car[0] = 3;
    label_png(&images.join("1_object.png"), car);
    nd_broden::Dataset::open(root, &Default::default()).unwrap()
}

fn activations(store: &nd_store::Store) -> nd_store::Artifact {
    let spec = nd_store::Spec::new(
        "extract",
        1,
        json!({ "rows": [0, 2], "fixture": "by hand" }),
    );
    let pending = store.begin(&spec).unwrap();
    let group = ActivationGroup::create(&pending.dir().join(nd_arrays::ACTIVATIONS_DIR)).unwrap();
    let shape = LayerShape {
        images: 2,
        units: 2,
        height: 2,
        width: 2,
    };
    let mut writer = group.create_layer("conv", shape).unwrap();
    #[rustfmt::skip]
    writer.push(&[
        9.0, 0.0, 0.0, 0.0,   0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,   0.0, 0.0, 0.0, 8.0,
    ]).unwrap();
    writer.finish().unwrap();
    group.set_layers(&["conv".to_owned()]).unwrap();
    let field = json!({ "offset": [-1, -1], "size": [3, 3], "stride": [4, 4] });
    let outputs = json!({ "input_size": [8, 8], "fields": { "conv": field } });
    pending.commit(BTreeMap::new(), outputs).unwrap()
}

/// Pixels (y, x) of a 4×4 mask as runs.
fn runs(pixels: &[(u32, u32)]) -> Vec<Run> {
    let mut mask = [false; 16];
    for &(y, x) in pixels {
        mask[(y * 4 + x) as usize] = true;
    }
    let mut out = Vec::new();
    nd_arrays::masks::encode_runs(mask, &mut out);
    out
}

struct Pipeline {
    _dir: tempfile::TempDir,
    store: nd_store::Store,
    dataset: nd_broden::Dataset,
    activations: nd_store::Artifact,
    thresholds: nd_store::Artifact,
}

fn pipeline() -> Pipeline {
    pipeline_with("4")
}

/// The pipeline with image 0's texture cell `texture`.
fn pipeline_with(texture: &str) -> Pipeline {
    let dir = tempfile::tempdir().unwrap();
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let dataset = dataset_with(&dir.path().join("data"), texture);
    let activations = activations(&store);
    let thresholds = nd_quantile::run(
        &store,
        std::slice::from_ref(&activations),
        &nd_quantile::Config {
            top: 0.125,
            ..Default::default()
        },
    )
    .unwrap()
    .artifact;
    Pipeline {
        _dir: dir,
        store,
        dataset,
        activations,
        thresholds,
    }
}

#[test]
fn thresholds_by_hand() {
    let p = pipeline();
    let rows =
        nd_tables::thresholds::read_rows(&p.thresholds.dir.join(nd_tables::thresholds::FILE))
            .unwrap();
    let t: Vec<f64> = rows.iter().map(|r| r.threshold).collect();
    assert_eq!(t, [1.125, 1.0]);
}

/// The masks of an upsampling mode; receptive-field centres assumed mid-cell, as the
/// by-hand figures below take them.
fn masks(
    p: &Pipeline,
    upsample: Upsample,
) -> (nd_store::Artifact, Vec<nd_arrays::masks::ImageMasks>) {
    masks_with(p, upsample, Fields::AssumeCentred)
}

fn masks_with(
    p: &Pipeline,
    upsample: Upsample,
    fields: Fields,
) -> (nd_store::Artifact, Vec<nd_arrays::masks::ImageMasks>) {
    let artifact = nd_segment::run(
        &p.store,
        &p.dataset,
        &p.activations,
        &p.thresholds,
        &nd_segment::Config {
            upsample,
            fields,
            progress: false,
        },
    )
    .unwrap()
    .artifact;
    let group = MaskGroup::open(&artifact.dir.join(MASKS_DIR)).unwrap();
    let read = group.open_layer("conv").unwrap().read_images(0..2).unwrap();
    (artifact, read)
}

#[test]
fn bilinear_masks_by_hand() {
    // Unit 0, image 0: row 0 of the input blends to 9, 6.75, 2.25, 0 across; output rows
    // take it at weights 1, 0.75, 0.25, 0. Above 1.125: 3 + 3 + 2 pixels.
    // Unit 1, image 1: the mirror image, above 1.0.
    let p = pipeline();
    let (_, read) = masks(&p, Upsample::Bilinear);
    assert_eq!(
        read[0],
        [(
            0,
            runs(&[
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 0),
                (1, 1),
                (1, 2),
                (2, 0),
                (2, 1)
            ])
        )]
    );
    assert_eq!(
        read[1],
        [(
            1,
            runs(&[
                (1, 2),
                (1, 3),
                (2, 1),
                (2, 2),
                (2, 3),
                (3, 1),
                (3, 2),
                (3, 3)
            ])
        )]
    );
}

#[test]
fn receptive_field_masks_by_hand() {
    // Cell centres at label pixels 1 and 3: pixels 0–1 copy cell 0, pixel 2 is the mean,
    // pixel 3 copies cell 1. Unit 0: 9, 9, 4.5, 0 across and down; unit 1: 4 and 8 in the
    // bottom-right 2×2 only.
    let p = pipeline();
    let (_, read) = masks(&p, Upsample::ReceptiveField);
    assert_eq!(
        read[0],
        [(
            0,
            runs(&[
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 0),
                (1, 1),
                (1, 2),
                (2, 0),
                (2, 1),
                (2, 2)
            ])
        )]
    );
    assert_eq!(read[1], [(1, runs(&[(2, 2), (2, 3), (3, 2), (3, 3)]))]);
}

#[test]
fn true_receptive_field_masks_by_hand() {
    // The recorded field centres cells at label pixels 0 and 2: pixel 0 copies cell 0,
    // pixel 1 is the mean, pixels 2–3 copy cell 1. Unit 0: 9, 4.5, 0, 0 across and down,
    // 2.25 at (1, 1); unit 1: 8 in the bottom-right 2×2, 4 beside it, 2 at (1, 1).
    let p = pipeline();
    let (recorded, read) = masks_with(&p, Upsample::ReceptiveField, Fields::Model);
    assert_eq!(read[0], [(0, runs(&[(0, 0), (0, 1), (1, 0), (1, 1)]))]);
    assert_eq!(
        read[1],
        [(
            1,
            runs(&[
                (1, 1),
                (1, 2),
                (1, 3),
                (2, 1),
                (2, 2),
                (2, 3),
                (3, 1),
                (3, 2),
                (3, 3)
            ])
        )]
    );
    // The same field given by the user: the same masks and key (the key holds the fields
    // used, whatever their source).
    let given = Fields::Overrides(BTreeMap::from([(
        "conv".to_owned(),
        FieldChoice::Field(Field {
            offset: [-1, -1],
            size: [3, 3],
            stride: [4, 4],
        }),
    )]));
    let (same, again) = masks_with(&p, Upsample::ReceptiveField, given);
    assert_eq!(same.key(), recorded.key());
    assert_eq!(again, read);
    // Another field: other masks, another key. Centres at label pixels 1 and 3 are the
    // mid-cell assumption, which gives its masks exactly.
    let shifted = Fields::Overrides(BTreeMap::from([(
        "conv".to_owned(),
        FieldChoice::Field(Field {
            offset: [1, 1],
            size: [3, 3],
            stride: [4, 4],
        }),
    )]));
    let (other, moved) = masks_with(&p, Upsample::ReceptiveField, shifted);
    assert_ne!(other.key(), recorded.key());
    let (assumed_artifact, assumed) = masks(&p, Upsample::ReceptiveField);
    assert_eq!(moved, assumed);
    assert_ne!(assumed_artifact.key(), other.key());
}

#[test]
fn receptive_fields_missing_or_wrong_are_named() {
    let p = pipeline();
    let config = |fields: Fields| nd_segment::Config {
        upsample: Upsample::ReceptiveField,
        fields,
        progress: false,
    };
    let run = |fields: Fields| {
        nd_segment::run(
            &p.store,
            &p.dataset,
            &p.activations,
            &p.thresholds,
            &config(fields),
        )
        .unwrap_err()
        .to_string()
    };
    let unknown = run(Fields::Overrides(BTreeMap::from([(
        "conv9".to_owned(),
        FieldChoice::AssumeCentred,
    )])));
    assert!(
        unknown.contains(
            "a field is given for layer `conv9`, which the activations do not hold (they hold conv)"
        ),
        "{unknown}"
    );
    let zero = run(Fields::Overrides(BTreeMap::from([(
        "conv".to_owned(),
        FieldChoice::Field(Field {
            offset: [0, 0],
            size: [3, 3],
            stride: [0, 4],
        }),
    )])));
    assert_eq!(zero, "field of layer `conv`: stride 0 is not positive");
    // Bilinear needs no field: none is checked.
    assert!(
        nd_segment::spec(
            &p.dataset,
            &p.activations,
            &p.thresholds,
            &nd_segment::Config::default()
        )
        .is_ok()
    );
}

/// (unit, label) → (truth, activation, intersect, iou) of the score table.
fn scores(
    p: &Pipeline,
    upsample: Upsample,
    denominator: Denominator,
) -> BTreeMap<(u32, u32), (u64, u64, u64, f64)> {
    let (masks, _) = masks(p, upsample);
    let artifact = nd_score::run(
        &p.store,
        &p.dataset,
        &masks,
        &nd_score::Config {
            denominator,
            tally_depth: None,
        },
    )
    .unwrap()
    .artifact;
    let rows = nd_tables::scores::read_rows(&artifact.dir.join(nd_tables::scores::FILE)).unwrap();
    rows.iter()
        .map(|r| {
            (
                (r.unit, r.label),
                (r.truth, r.activation, r.intersect, r.iou),
            )
        })
        .collect()
}

#[test]
fn lite_scores_by_hand() {
    let s = scores(&pipeline(), Upsample::Bilinear, Denominator::Lite);
    // Unit 0's 8-pixel mask in image 0: 6 red, 2 blue, 4 car, and striped everywhere; it
    // overlaps color, object and texture, so each category's activation is 8.
    assert_eq!(s[&(0, 1)], (8, 8, 6, 6.0 / 10.0));
    assert_eq!(s[&(0, 2)], (24, 8, 2, 2.0 / 30.0));
    assert_eq!(s[&(0, 3)], (5, 8, 4, 4.0 / 9.0));
    assert_eq!(s[&(0, 4)], (16, 8, 8, 8.0 / 16.0));
    // Unit 1's mask in image 1: all blue, and the image-level label 0, which in lite marks
    // its category (texture, the last) as present; object is not overlapped.
    assert_eq!(s[&(1, 2)], (24, 8, 8, 8.0 / 24.0));
    assert_eq!(s[&(1, 0)], (16, 8, 8, 8.0 / 16.0));
    // Best-of-category rows with no intersection: car for object (the only one).
    assert_eq!(s[&(1, 3)], (5, 0, 0, 0.0));
    // Red does not intersect unit 1 and is not its best color label: no row.
    assert!(!s.contains_key(&(1, 1)));
    // Label 0 is in texture; striped intersects unit 0 more, so no row for (0, 0).
    assert!(!s.contains_key(&(0, 0)));
}

#[test]
fn original_scores_by_hand() {
    let s = scores(&pipeline(), Upsample::Bilinear, Denominator::Original);
    // Image 0 carries color, object and texture labels: unit 0 as in lite.
    assert_eq!(s[&(0, 1)], (8, 8, 6, 0.6));
    assert_eq!(s[&(0, 3)], (5, 8, 4, 4.0 / 9.0));
    // Image 1 carries color and object labels (car at a pixel the mask misses) but label 0
    // never marks texture: object's activation is 8, texture's is 0.
    assert_eq!(s[&(1, 3)], (5, 8, 0, 0.0));
    assert_eq!(s[&(1, 0)], (16, 0, 8, 8.0 / 8.0));
    assert_eq!(s[&(1, 2)], (24, 8, 8, 8.0 / 24.0));
}

/// Image 0 also carries the image-level texture `0`, given twice (`4;0;0`), which unit 0's
/// mask meets: label 0's truth 16 + 16 (lite: 16·2 + 16), intersection 8 (lite: 16). Lite
/// counts label 0 against the unit's texture activation (8); the original has no
/// activation term for label 0 and counts the repeated `0` once.
#[test]
fn label_zero_by_the_rules_of_each_reference() {
    let p = pipeline_with("4;0;0");
    let lite = scores(&p, Upsample::Bilinear, Denominator::Lite);
    assert_eq!(lite[&(0, 0)], (48, 8, 16, 16.0 / 40.0));
    assert_eq!(lite[&(0, 4)], (16, 8, 8, 8.0 / 16.0));
    let original = scores(&p, Upsample::Bilinear, Denominator::Original);
    assert_eq!(original[&(0, 0)], (32, 0, 8, 8.0 / 24.0));
    assert_eq!(original[&(0, 4)], (16, 8, 8, 8.0 / 16.0));
    // Unit 1 meets label 0 in image 1 only, where texture is not present in the original.
    assert_eq!(original[&(1, 0)], (32, 0, 8, 8.0 / 24.0));
}

/// The original's tally depth: per image and layer, the entries other than intersections
/// come first. Image 0: 0 full-mask units, 1 image-level item, 3 pixel labels (red, blue,
/// car) and 1 other unit: (1·2 − 1) + 1·3 + 2·1 = 6 entries, so a depth of 8 leaves room
/// for 2 of unit 0's 3 intersections (red 6, car 4, blue 2): blue's is dropped. Image 1:
/// 5 entries, unit 1's one intersection (blue 8) fits. A depth of 6 leaves image 0 no room
/// before its intersections, where the original drops other entries too: refused.
#[test]
fn the_originals_tally_depth_by_hand() {
    let p = pipeline();
    let (masks, _) = masks(&p, Upsample::Bilinear);
    let score = |tally_depth| {
        nd_score::run(
            &p.store,
            &p.dataset,
            &masks,
            &nd_score::Config {
                denominator: Denominator::Original,
                tally_depth,
            },
        )
    };
    let exact = score(None).unwrap().artifact;
    let truncated = score(Some(8)).unwrap().artifact;
    assert_ne!(exact.key(), truncated.key());
    let counts = nd_score::read_counts(&truncated).unwrap();
    let exact_counts = nd_score::read_counts(&exact).unwrap();
    let n = counts.n_labels;
    // Unit 0's blue (label 2): 2 pixels dropped; red and car kept; unit 1's blue kept.
    assert_eq!(exact_counts.layers[0].inter[2], 2);
    assert_eq!(counts.layers[0].inter[2], 0);
    assert_eq!(counts.layers[0].inter[1], 6);
    assert_eq!(counts.layers[0].inter[3], 4);
    assert_eq!(counts.layers[0].inter[n + 2], 8);
    // Truths and activations are not intersections: unchanged.
    assert_eq!(counts.truth, exact_counts.truth);
    assert_eq!(counts.layers[0].act, exact_counts.layers[0].act);
    assert_eq!(
        counts.layers[0].dropped,
        nd_score::Dropped {
            images: 1,
            entries: 1,
            pixels: 2,
            overflows: 0
        }
    );
    assert_eq!(
        truncated.manifest.outputs["layers"][0]["dropped"],
        json!({ "images": 1, "entries": 1, "pixels": 2, "overflows": 0 })
    );
    // Deep enough: the exact counts.
    let deep = nd_score::read_counts(&score(Some(9)).unwrap().artifact).unwrap();
    assert_eq!(deep.layers[0].inter, exact_counts.layers[0].inter);
    let err = score(Some(6)).unwrap_err().to_string();
    assert!(
        err.starts_with("tally_depth = 6: in 1 image, layer `conv` has more entries than the depth before any intersection"),
        "{err}"
    );
    // The lite denominator counts exactly: a depth is refused with it.
    let lite = nd_score::run(
        &p.store,
        &p.dataset,
        &masks,
        &nd_score::Config {
            denominator: Denominator::Lite,
            tally_depth: Some(2048),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        lite.contains("use it with the original denominator"),
        "{lite}"
    );
}

#[test]
fn receptive_field_scores_by_hand() {
    let s = scores(&pipeline(), Upsample::ReceptiveField, Denominator::Lite);
    // Unit 0: 9 pixels, 6 red, 3 blue, 4 car, 9 striped.
    assert_eq!(s[&(0, 1)], (8, 9, 6, 6.0 / 11.0));
    assert_eq!(s[&(0, 2)], (24, 9, 3, 3.0 / 30.0));
    assert_eq!(s[&(0, 3)], (5, 9, 4, 4.0 / 10.0));
    assert_eq!(s[&(0, 4)], (16, 9, 9, 9.0 / 16.0));
    // Unit 1: 4 pixels, all blue, label 0 over all of them.
    assert_eq!(s[&(1, 2)], (24, 4, 4, 4.0 / 24.0));
    assert_eq!(s[&(1, 0)], (16, 4, 4, 4.0 / 16.0));
}

/// The report of the bilinear masks scored with a denominator, at an IoU threshold of 0.45.
fn bilinear_report(p: &Pipeline, denominator: Denominator) -> nd_store::Artifact {
    let (masks, _) = masks(p, Upsample::Bilinear);
    let config = nd_score::Config {
        denominator,
        tally_depth: None,
    };
    let scores = nd_score::run(&p.store, &p.dataset, &masks, &config)
        .unwrap()
        .artifact;
    let config = nd_report::Config {
        iou_threshold: 0.45,
        ..Default::default()
    };
    nd_report::run(&p.store, &scores, None, &config)
        .unwrap()
        .artifact
}

#[test]
fn report_by_hand() {
    let p = pipeline();
    // Unit 0: red-c 0.6 (color), car 0.44 (object), striped 0.5 (texture) → red-c.
    // Unit 1: blue-c 0.33, car 0, label 0 (empty name) 0.5 → the empty label, texture.
    let report = bilinear_report(&p, Denominator::Lite);
    let (categories, layers) = nd_report::read_summaries(&report).unwrap();
    assert_eq!(categories, ["color", "object", "texture"]);
    let conv = &layers[0];
    assert_eq!(
        (conv.units, conv.detectors, conv.unique_top_label),
        (2, 2, 2)
    );
    // Per category, IoU > 0.45: color {red-c}, texture {striped (unit 0), "" (unit 1)}.
    assert_eq!(conv.unique_per_category, 3);
    assert_eq!(conv.categories["texture"].unique_per_category, 2);
    assert_eq!(conv.categories["object"].unique_per_category, 0);
    let tally = std::fs::read_to_string(report.dir.join("tally-conv.csv")).unwrap();
    let lines: Vec<&str> = tally.lines().collect();
    assert_eq!(
        lines[0],
        "unit,category,label,score,color-label,color-truth,color-activation,color-intersect,color-iou,\
         object-label,object-truth,object-activation,object-intersect,object-iou,\
         texture-label,texture-truth,texture-activation,texture-intersect,texture-iou"
    );
    assert_eq!(
        lines[1],
        "1,color,red-c,0.6,red-c,8,8,6,0.6,car,5,8,4,0.4444444444444444,striped,16,8,8,0.5"
    );
    // Unit 2 overlaps no object: NetDissect-Lite's argmax over all-zero IoUs names label 0,
    // with its truth, the unit's activation in label 0's category (texture) and its
    // intersection with label 0, and an IoU of 0.
    assert_eq!(
        lines[2],
        "2,texture,,0.5,blue-c,24,8,8,0.3333333333333333,,16,8,8,0,,16,8,8,0.5"
    );
    // The tally reads back and gives the same summary.
    let path = report.dir.join("tally-conv.csv");
    let (cats, rows) = nd_report::tally::read(&path).unwrap();
    let units: Vec<_> = rows.iter().map(|r| r.labels()).collect();
    let again = nd_report::summarize("conv", &units, &cats, 0.45);
    assert_eq!(
        (
            again.detectors,
            again.unique_top_label,
            again.unique_per_category
        ),
        (2, 2, 3)
    );

    // With the original's denominator, label 0 has no activation term: its IoU for unit 2
    // is 8 / (16 − 8) = 1 (texture is not present in image 1, where the mask is), and
    // tally.csv writes an activation of 0 wherever it names label 0.
    let report = bilinear_report(&p, Denominator::Original);
    let tally = std::fs::read_to_string(report.dir.join("tally-conv.csv")).unwrap();
    let lines: Vec<&str> = tally.lines().collect();
    assert_eq!(
        lines[1],
        "2,texture,,1,blue-c,24,8,8,0.3333333333333333,,16,0,8,0,,16,0,8,1"
    );
}
