//! Images decode to the bytes PIL gives, since both reference implementations read images
//! with `PIL.Image.open(f).convert("RGB")`.

use std::path::{Path, PathBuf};
use std::process::Command;

use mozjpeg::ColorSpace;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A YCCK JPEG (Adobe transform 2) of a CMYK pattern: libjpeg writes them, PIL cannot.
fn write_ycck(path: &Path, width: usize, height: usize, progressive: bool) {
    let mut cmyk = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        for x in 0..width {
            let sweep = |i: usize, n: usize| (i * 255 / (n - 1)) as u8;
            let noise = (((x * 131 + y * 71) * 2_654_435_761) >> 13) as u8;
            cmyk.extend([
                sweep(x, width),
                noise,
                sweep(y, height),
                (x * 5 + y * 9) as u8,
            ]);
        }
    }
    let mut compress = mozjpeg::Compress::new(ColorSpace::JCS_CMYK);
    compress.set_color_space(ColorSpace::JCS_YCCK);
    compress.set_size(width, height);
    compress.set_quality(88.0);
    if progressive {
        compress.set_progressive_mode();
    }
    let mut started = compress.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&cmyk).unwrap();
    std::fs::write(path, started.finish().unwrap()).unwrap();
}

/// CMYK JPEGs as PIL writes them (Adobe transform 0), one without the Adobe marker, YCCK
/// ones (luma and K subsampled 2×2, baseline and progressive), an RGB and a greyscale one:
/// every byte we decode equals PIL's.
#[test]
fn four_channel_jpegs_decode_to_pils_rgb_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images/pil");
    std::fs::create_dir_all(&images).unwrap();
    write_ycck(&images.join("ycck.jpg"), 53, 45, false);
    write_ycck(&images.join("ycck_progressive.jpg"), 32, 64, true);

    let output = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/python/pil_jpegs.py"))
        .arg("fixtures")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pil_jpegs.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<(String, String, Option<u8>)> = serde_json::from_slice(&output.stdout).unwrap();
    let kinds: Vec<(&str, Option<u8>)> = listed
        .iter()
        .map(|(_, mode, adobe)| (mode.as_str(), *adobe))
        .collect();
    for kind in [
        ("CMYK", Some(0)),
        ("CMYK", None),
        ("CMYK", Some(2)),
        ("RGB", None),
        ("L", None),
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} fixture in {listed:?}");
    }

    let dataset = nd_broden::Dataset::open(dir.path(), &nd_broden::Config::default()).unwrap();
    assert_eq!(dataset.rows().len(), listed.len());
    for (row, (image, mode, adobe)) in listed.iter().enumerate() {
        let ours = dataset.read_image(row).unwrap().into_raw();
        let stem = image
            .strip_prefix("pil/")
            .unwrap()
            .strip_suffix(".jpg")
            .unwrap();
        let pil = std::fs::read(dir.path().join(format!("expected/{stem}.rgb"))).unwrap();
        assert_eq!(ours.len(), pil.len(), "{image}");
        let differing = ours.iter().zip(&pil).filter(|(a, b)| a != b).count();
        let worst = ours
            .iter()
            .zip(&pil)
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert_eq!(
            differing,
            0,
            "{image} ({mode}, Adobe transform {adobe:?}): {differing} of {} bytes differ from PIL's, by up to {worst}",
            pil.len()
        );
    }
}
