//! Cache hints: a batch issues these for many items before it reads any of them, so that their
//! cache misses overlap instead of being paid one at a time.

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
