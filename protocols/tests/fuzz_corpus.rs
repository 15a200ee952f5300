//! Replays the committed fuzz corpus on stable: every file in `fuzz/seeds/<target>/` goes
//! through that target's entry point (`estuary_protocols::fuzzing`), the same code the
//! libFuzzer binaries in `fuzz/` run. Seeds include every input that once made a target fail,
//! so a regression fails CI without a nightly toolchain.

use estuary_protocols::fuzzing::TARGETS;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_fuzz_binary_has_an_entry_point_and_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| section.lines().find_map(|l| l.trim().strip_prefix("name = ")).map(|n| n.trim_matches('"')))
        .collect();
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let mut sorted_bins = bins.clone();
    sorted_bins.sort();
    let mut sorted_names = names.clone();
    sorted_names.sort();
    assert_eq!(sorted_bins, sorted_names, "fuzz/Cargo.toml's binaries and fuzzing::TARGETS differ");
    for name in names {
        let seeds = std::fs::read_dir(fuzz_dir().join("seeds").join(name)).map(|d| d.count()).unwrap_or(0);
        assert!(seeds > 0, "target {name} has no seeds in fuzz/seeds/{name}");
    }
}

#[test]
fn the_corpus_replays_without_a_finding() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, run) in TARGETS {
        let dir = fuzz_dir().join("seeds").join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a directory entry").path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("a seed file");
            replayed += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                failures.push(format!("{name}/{}: {message}", file.file_name().unwrap_or_default().to_string_lossy()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {replayed} corpus inputs fail:\n{}", failures.len(), failures.join("\n"));
    assert!(replayed >= TARGETS.len(), "only {replayed} inputs replayed");
}

/// The seeds the crate's writers make now (the committed ones may be older: the RTMP ones hold
/// random handshake bytes) run through their targets without a finding too.
#[test]
fn freshly_made_seeds_run_clean() {
    let seeds = estuary_protocols::fuzzing::seeds::all();
    // MP4's seeds are the files of issue 28, committed as they were.
    for (target, _) in TARGETS.iter().filter(|(t, _)| *t != "mp4") {
        assert!(seeds.iter().any(|(t, ..)| t == target), "no seed is made for {target}");
    }
    for (target, name, data) in seeds {
        let (_, run) = TARGETS.iter().find(|(t, _)| *t == target).expect("a known target");
        run(&data);
        assert!(!data.is_empty(), "{target}/{name} is empty");
    }
}
