//! `nd-report summarize` on the published result files must give exactly the numbers their
//! README lists (two column orders, eleven files).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The published files: `$NETDISSECT_SHARED_DATA/released`, or the project's shared data
/// next to the repository (`../shared/data`).
fn released() -> PathBuf {
    let data = std::env::var_os("NETDISSECT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = data.join("released");
    assert!(
        dir.join("README.md").is_file(),
        "the published result files are not in {} (set NETDISSECT_SHARED_DATA to the \
         directory that holds released/)",
        dir.display()
    );
    dir
}

/// A README row: file, (units, detectors, unique top-label, unique per-category), and the
/// per-category counts in the order the README gives.
type Expected = (String, [u64; 4], Vec<(String, u64)>);

/// The README's table.
fn expected() -> Vec<Expected> {
    let readme =
        std::fs::read_to_string(released().join("README.md")).expect("the released README");
    let header = readme
        .lines()
        .find(|l| l.starts_with("| file |"))
        .expect("the summary table");
    // "unique, per-category rule (object, part, scene, material, texture, color)"
    let order: Vec<String> = header
        .split('(')
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(", ")
        .map(str::to_owned)
        .collect();
    readme
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(".csv"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let number = |s: &str| s.trim().parse::<u64>().unwrap();
            let (total, rest) = cells[4].split_once('(').unwrap();
            let per: Vec<(String, u64)> = order
                .iter()
                .cloned()
                .zip(rest.trim_end_matches(')').split(',').map(number))
                .collect();
            (
                cells[0].to_owned(),
                [
                    number(cells[1]),
                    number(cells[2]),
                    number(cells[3]),
                    number(total),
                ],
                per,
            )
        })
        .collect()
}

#[test]
fn summaries_of_the_published_files_match_their_readme() {
    let expected = expected();
    assert_eq!(expected.len(), 11, "the README lists eleven files");
    let files: Vec<PathBuf> = expected
        .iter()
        .map(|(f, _, _)| released().join(f))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_nd-report"))
        .arg("summarize")
        .arg("--json")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for ((file, totals, per), summary) in expected.iter().zip(got.as_array().unwrap()) {
        assert_eq!(summary["layer"], file.trim_end_matches(".csv"));
        let numbers = [
            summary["units"].as_u64().unwrap(),
            summary["detectors"].as_u64().unwrap(),
            summary["unique_top_label"].as_u64().unwrap(),
            summary["unique_per_category"].as_u64().unwrap(),
        ];
        assert_eq!(&numbers, totals, "{file}");
        for (category, n) in per {
            assert_eq!(
                summary["categories"][category]["unique_per_category"].as_u64(),
                Some(*n),
                "{file} {category}"
            );
        }
    }
}

#[test]
fn the_table_names_every_category_column() {
    let file = released().join("alexnet-places365-conv5.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_nd-report"))
        .arg("summarize")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    let header = text.lines().next().unwrap();
    for c in ["object", "part", "scene", "material", "texture", "color"] {
        assert!(header.contains(c), "{header}");
    }
    assert!(text.contains("alexnet-places365-conv5"), "{text}");
}

#[test]
fn a_file_without_the_format_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "unit,label\n1,car\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nd-report"))
        .arg("summarize")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.csv: line 1: no `category` column"),
        "{stderr}"
    );
}
