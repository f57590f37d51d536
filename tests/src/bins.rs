//! Where the binaries under test are: `$ROBOKU_BIN_DIR`, else the cargo profile dir this test
//! executable was built into (`target/debug/deps/..`).

use std::path::PathBuf;

/// The directory holding `robokud` and `roboku`; panics with the build command when they are missing.
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os("ROBOKU_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("path of the test executable");
            let deps = exe.parent().expect("test executable has a directory");
            // Test executables live in target/<profile>/deps; the binaries one level up.
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent().expect("deps has a parent").to_path_buf()
            } else {
                deps.to_path_buf()
            }
        }
    };
    for name in ["robokud", "roboku"] {
        if !dir.join(name).is_file() {
            panic!(
                "{} not found: build them first: cargo build --workspace --bins (or ./tests/run)",
                dir.join(name).display()
            );
        }
    }
    dir
}

/// Full path of one binary (`robokud` or `roboku`).
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}
