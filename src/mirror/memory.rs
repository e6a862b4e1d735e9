//! Giving memory back after a big pass. A full pass over a large tree holds the disk
//! listing, the plan and a chunk of results next to the known entries; once they are
//! freed, glibc keeps most of those pages (freed chunks in the middle of the heap and in
//! the worker threads' arenas are not returned to the kernel by `free`), so the daemon's
//! idle RSS stayed at the pass's peak: 407 MiB idle after a 200,000-file first sync whose
//! entries need a third of that (W9). `malloc_trim(0)` hands every free page back.
//!
//! This is the crate's one `unsafe` block: a call with no arguments that point anywhere,
//! declared by `libc`, on glibc only (other C libraries return memory on their own
//! schedule or lack the call).

/// Returns the allocator's free pages to the kernel (glibc), and says whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(super) fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes a plain integer (the padding to keep at the top of the
    // heap), reads no caller memory, and is thread-safe (it locks each arena in turn).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release_free_memory() -> bool {
    false
}
