//! The allocator's settings, for a process whose large buffers are few and reused.

/// Allocations of this size or more are mapped on their own and given back to the system as
/// soon as they are freed. glibc raises this threshold (up to 32 MiB) whenever such a block is
/// freed; after the first part buffer went back, blocks of a few hundred KiB (the state of the
/// compressor the `parquet` crate makes anew for every page) came from the heap and fragmented
/// it: a Parquet export with gzip held about twice the memory its buffers need
/// (docs/performance.md, "Parquet's peak memory"). Setting it also stops the raising.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 << 10;

/// Applies the settings; call once, first thing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's malloc, under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
