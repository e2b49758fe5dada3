//! Cache hints: a batch issues these for many items before it reads any of them, so that their
//! cache misses overlap instead of being paid one at a time; and huge pages for tables read at
//! random, so that those reads do not also miss the TLB.

/// Asks the CPU to start loading the cache line of `r` without waiting for it.
#[inline]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it reads nothing the program sees and
    // cannot fault (and `r` is a valid reference besides).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Asks the kernel to back the 2 MiB-aligned stretches of `len` elements from `ptr` (a buffer
/// of ours, e.g. a `Vec`'s capacity) with transparent huge pages, where THP is in `madvise`
/// mode. A million devices' slots and index words are read at random: with 4 KiB pages nearly
/// every such read misses the TLB too. Only a hint, and its failure is harmless.
pub fn huge_pages<T>(ptr: *const T, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = ptr as usize;
        let end = start + len * std::mem::size_of::<T>();
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if from < to {
            // SAFETY: advice on whole pages inside one allocation of ours; MADV_HUGEPAGE changes
            // how the kernel backs them, never their contents, and reads no memory.
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}
