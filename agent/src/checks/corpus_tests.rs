//! Every file of `fuzz/corpus/<target>/` (seeds, what the fuzzers kept, inputs that once found a
//! bug) through its target's check, on the stable toolchain.

use super::TARGETS;
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_passes_its_check() {
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for (target, check) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read corpus dir {}: {e}", dir.display()))
            .map(|e| e.expect("corpus dir entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus files in {}", dir.display());
        counts.push(format!("{target} {}", files.len()));
        for file in files {
            let data =
                std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus files failing their check: {failures:#?}"
    );
    eprintln!("corpus files checked: {}", counts.join(", "));
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (target, _) in TARGETS {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        assert!(
            text.contains("robokud::checks::"),
            "{} does not call the shared check",
            file.display()
        );
    }
}
