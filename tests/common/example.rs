//! The example binaries that `cargo test` builds next to the test binaries
//! (`target/<profile>/examples/NAME`), for tests that run an example as a
//! black box in a child process.

use std::path::PathBuf;

/// The built example `name` in this test binary's profile directory, after
/// checking it is newer than its sources and the library's (a stale binary
/// would test old code).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/TEST-HASH -> target/<profile>/examples/NAME
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test` without --test filters (it builds the \
         examples) or `cargo build --example {name}` first",
        bin.display()
    );
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        root.join("examples").join(format!("{name}.rs")),
        root.join("examples/common/mod.rs"),
    ];
    let mut dirs = vec![root.join("src"), root.join("actors/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    for source in sources {
        let Ok(changed) = std::fs::metadata(&source).and_then(|m| m.modified()) else {
            continue; // an example kept in a directory of its own
        };
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `cargo build --example {name}` \
             (or run `cargo test` without --test filters)",
            bin.display(),
            source.display()
        );
    }
    bin
}
