//! Slug delta sizes (`cargo bench -p roboku-tests --bench delta`): what `fleet deploy --delta`
//! ships instead of a full slug, for a ~50 MB slug made of source text, vendored packages and
//! binaries (tarred by the system `tar` with fixed names, owners and mtimes, as `slug:build`
//! does), in two cases:
//!
//! 1. one line of one source file changed;
//! 2. a dependency bump: a vendored package (`vendor/pkg-1.2.3`, 2.5 MB) replaced by 1.2.4,
//!    with a tenth of its files changed and its directory renamed.
//!
//! Prints the full slug (`.tar.gz`, what a robot downloads without a delta), the delta, and the
//! time to make and to apply it. Sizes only depend on the content, not on the machine.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Deterministic bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Source-like text: lines of words.
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "def", "return", "self", "import", "for", "in", "if", "else", "value", "robot",
            "motor", "speed", "sensor", "=", "(", ")", ":", "None", "True", "config", "log",
        ];
        let mut out = Vec::with_capacity(n + 80);
        while out.len() < n {
            let words = 3 + self.next() % 9;
            for _ in 0..words {
                out.extend_from_slice(
                    WORDS[(self.next() % WORDS.len() as u64) as usize].as_bytes(),
                );
                out.push(b' ');
            }
            out.push(b'\n');
        }
        out
    }
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A package of `files` source files of `size` bytes each.
fn package(root: &Path, dir: &str, rng: &mut Rng, files: usize, size: usize) {
    for i in 0..files {
        write(root, &format!("{dir}/mod{i:03}.py"), &rng.text(size));
    }
}

fn slug(root: &Path) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    write(root, "Procfile", b"web: python -m nav\n");
    package(root, "nav", &mut rng, 200, 40_000); // 8 MB of app source
    for p in 0..12 {
        package(
            root,
            &format!("vendor/lib{p:02}-0.{p}.0"),
            &mut rng,
            100,
            25_000,
        ); // 30 MB
    }
    package(root, "vendor/pkg-1.2.3", &mut rng, 100, 25_000); // the one bumped below
    write(root, "bin/planner.so", &rng.bytes(6 << 20)); // binaries: incompressible
    write(root, "bin/model.bin", &rng.bytes(4 << 20));
}

/// The tree as a tar, the way `slug:build` makes it reproducible.
fn tar(root: &Path, out: &Path, gzip: bool) -> Vec<u8> {
    let st = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
        ])
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(out)
        .arg("-C")
        .arg(root)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

fn case(name: &str, base: &[u8], target: &[u8], full_gz: usize) {
    let t = Instant::now();
    let d = roboku_wire::delta::encode(base, target);
    let made = t.elapsed();
    let t = Instant::now();
    let mut out = Vec::with_capacity(target.len());
    roboku_wire::delta::apply(base, &d[..], target.len() as u64, &mut out).unwrap();
    let applied = t.elapsed();
    assert!(out == target);
    println!(
        "{name:<22} tar {:>10} B  full .tar.gz {:>10} B  delta {:>9} B ({:.3} % of the .tar.gz)  make {:>6.2} s  apply {:>5.2} s",
        target.len(),
        full_gz,
        d.len(),
        d.len() as f64 * 100.0 / full_gz as f64,
        made.as_secs_f64(),
        applied.as_secs_f64()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("app");
    slug(&root);
    let base = tar(&root, &dir.path().join("v1.tar"), false);
    // 1. One line of one source file.
    let f = root.join("nav/mod100.py");
    let mut src = std::fs::read(&f).unwrap();
    let at = src.len() / 2;
    src.splice(
        at..at,
        *b"        speed = min(speed, LIMIT)  # one changed line\n",
    );
    std::fs::write(&f, &src).unwrap();
    let one_line = tar(&root, &dir.path().join("v2.tar"), false);
    let gz = tar(&root, &dir.path().join("v2.tar.gz"), true).len();
    case("one-line change", &base, &one_line, gz);
    // 2. A dependency bump: the package renamed, a tenth of its files changed.
    let (old, new) = (root.join("vendor/pkg-1.2.3"), root.join("vendor/pkg-1.2.4"));
    std::fs::rename(&old, &new).unwrap();
    let mut rng = Rng(77);
    for i in (0..100).step_by(10) {
        std::fs::write(new.join(format!("mod{i:03}.py")), rng.text(25_000)).unwrap();
    }
    let bump = tar(&root, &dir.path().join("v3.tar"), false);
    let gz = tar(&root, &dir.path().join("v3.tar.gz"), true).len();
    case("dependency bump", &one_line, &bump, gz);
}
