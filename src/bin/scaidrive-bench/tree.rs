//! Generated test data: a tree of files with random (incompressible, all distinct)
//! contents spread over a two-level folder hierarchy, and single large files. Seeded, so
//! two runs of the benchmark upload the same shapes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

#[derive(Clone, Copy, Debug)]
pub struct TreeSpec {
    pub files: usize,
    pub folders: usize,
    pub min_size: usize,
    pub max_size: usize,
    pub seed: u64,
}

/// What was written, with paths relative to the root (forward slashes).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// Parents before children.
    pub folders: Vec<String>,
    pub files: Vec<(String, u64)>,
    pub bytes: u64,
}

/// The folder layout: about √n top-level folders, the rest spread under them, so that
/// `folders` is the total number of directories below the root.
fn folder_names(n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let tops = ((n as f64).sqrt().ceil() as usize).clamp(1, n);
    let mut out: Vec<String> = (0..tops).map(|i| format!("d{i:03}")).collect();
    for j in 0..n.saturating_sub(tops) {
        out.push(format!("d{:03}/s{:04}", j % tops, j));
    }
    out
}

pub fn generate(root: &Path, spec: TreeSpec) -> Result<Tree> {
    std::fs::create_dir_all(root)?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let folders = folder_names(spec.folders);
    for f in &folders {
        std::fs::create_dir_all(root.join(f)).with_context(|| format!("creating {f}"))?;
    }
    let mut tree = Tree {
        folders: folders.clone(),
        ..Tree::default()
    };
    let mut buf = vec![0u8; spec.max_size];
    for i in 0..spec.files {
        let size = rng.random_range(spec.min_size..=spec.max_size);
        rng.fill_bytes(&mut buf[..size]);
        let rel = match folders.is_empty() {
            true => format!("f{i:06}.bin"),
            false => format!("{}/f{i:06}.bin", folders[i % folders.len()]),
        };
        std::fs::write(root.join(&rel), &buf[..size]).with_context(|| format!("writing {rel}"))?;
        tree.bytes += size as u64;
        tree.files.push((rel, size as u64));
    }
    Ok(tree)
}

/// Overwrites a file with new random bytes of the same size (a "save" in an editor).
pub fn rewrite(path: &Path, size: usize, rng: &mut StdRng) -> Result<()> {
    let mut buf = vec![0u8; size];
    rng.fill_bytes(&mut buf);
    std::fs::write(path, &buf).with_context(|| format!("rewriting {}", path.display()))
}

/// Writes one large file of random bytes in 4 MiB blocks.
pub fn large_file(path: &Path, len: u64, seed: u64) -> Result<PathBuf> {
    let mut rng = StdRng::seed_from_u64(seed);
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut block = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    w.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("syncing a large file")?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_layout_has_the_requested_count_parents_first() {
        for n in [0, 1, 2, 25, 500, 5000] {
            let f = folder_names(n);
            assert_eq!(f.len(), n, "n = {n}");
            for (i, name) in f.iter().enumerate() {
                if let Some((parent, _)) = name.split_once('/') {
                    let p = f.iter().position(|x| x == parent).expect("parent listed");
                    assert!(p < i, "{parent} after {name}");
                }
            }
        }
    }
}
