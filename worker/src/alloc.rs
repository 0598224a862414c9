//! Allocator tuning for inference on the CPU.
//!
//! libtorch allocates its activations (hundreds of MB at 1024^2) with the C allocator. glibc
//! serves allocations that large with fresh `mmap`s and unmaps them on free, so every forward
//! pass page-faults its whole working set in again: on a 2-core machine that was a third of
//! the CPU time, in the kernel. Keeping large blocks in the heap instead makes a 1024^2 pass
//! about 1.4x faster (see BENCHMARKS.md). Memory stays bounded by the largest batch, which
//! the configuration bounds.

/// Keeps large freed blocks for reuse instead of returning them to the kernel at once.
/// Call once at start-up, before the model is loaded. `LAMINA_MALLOC=default` leaves the
/// allocator as it is (for comparisons, or a platform where the tuning hurts).
pub fn tune_for_inference() {
    if std::env::var("LAMINA_MALLOC").is_ok_and(|v| v == "default") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it is called before any thread that
    // allocates through libtorch exists, and the values are within the documented ranges.
    unsafe {
        // One arena: per-thread arenas live in 64 MB heaps, too small for activations, so
        // the inference thread would fall back to mmap whatever the threshold.
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Returns the C heap's free memory to the kernel. Called after a forward pass ran out of
/// memory: its freed blocks would otherwise stay with the process (the tuning above keeps
/// them), leaving no room for the retry in tiles or a thread that must start.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the C heap; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
