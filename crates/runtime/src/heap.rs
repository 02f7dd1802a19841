//! The process heap between model phases: memory freed while a component runs is kept for
//! its next allocations (set up by the binary, `kiln`'s `main`), and given back to the system
//! when the component goes idle ([`return_free_heap`], called by [`crate::InUse`]).
//!
//! Why: a VAE decode or a UNet step allocates and frees the same large activations again and
//! again. Returned to the system at each free, every reuse costs a page fault per 4 KiB page
//! and the kernel's zeroing of it — a fifth of an SD1.5 VAE decode on the CPU (measured with
//! `perf`). Kept, they are reused at once; given back between phases, the peak resident memory
//! stays that of the largest phase, not the sum of every phase's leftovers.

/// Gives the allocator's free memory back to the system (glibc's `malloc_trim`: the heap's
/// top, and whole free pages inside it). A no-op where the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn return_free_heap() {
    // SAFETY: `malloc_trim` takes the allocator's own lock and only releases pages of chunks
    // that are free; no memory in use is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives the allocator's free memory back to the system; this allocator keeps no such memory
/// under Kiln's control, so there is nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_free_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returning_free_memory_leaves_live_memory_intact() {
        let live: Vec<u64> = (0..1 << 20).collect();
        drop((0..1 << 22).map(|i| i as u8).collect::<Vec<u8>>());
        return_free_heap();
        assert!(live.iter().enumerate().all(|(i, v)| *v == i as u64));
    }
}
