//! Content hashing of local files: the SHA-256 (lowercase hex) that the planner compares
//! with the store, the uploader sends for verification, and crash recovery matches
//! against the remote's checksum.
//!
//! A leaf at the bottom of the pipeline (it depends on nothing in the crate), so the
//! planner, the uploader and the remote client all hash the same way without importing
//! each other. Hashing reads the whole file and blocks; async callers run it on the
//! blocking pool. [`bytes_hashed`] counts what went through here, process-wide, so a test
//! can show that a file planned with a hash is not read again to upload it.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Read size: large enough that a big file costs few syscalls, small enough to stay off
/// the heap's large-allocation path for every hash.
const BLOCK: usize = 256 * 1024;

static BYTES_HASHED: AtomicU64 = AtomicU64::new(0);

/// SHA-256 (lowercase hex) of a local file, read in 256 KiB blocks. Blocking.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        BYTES_HASHED.fetch_add(n as u64, Ordering::Relaxed);
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Bytes read by [`hash_file`] since the process started (all callers, all threads).
pub fn bytes_hashed() -> u64 {
    BYTES_HASHED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let cases: &[(&[u8], &str)] = &[
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (content, want) in cases {
            std::fs::write(&p, content).unwrap();
            let before = bytes_hashed();
            assert_eq!(hash_file(&p).unwrap(), *want);
            // Other tests hash concurrently: the counter only grows, by at least this file.
            assert!(bytes_hashed() - before >= content.len() as u64);
        }
        let e = hash_file(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
