//! Writes the seed corpus made by the crate's own writers (`estuary_protocols::fuzzing::seeds`)
//! into `protocols/fuzz/seeds/<target>/`. Files already there (inputs that once found a bug)
//! are kept. Run: `cargo run -p estuary-protocols --example write_fuzz_seeds`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let seeds = estuary_protocols::fuzzing::seeds::all();
    for (target, name, data) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), data)?;
    }
    println!("{} seeds written under {}", seeds.len(), root.display());
    Ok(())
}
