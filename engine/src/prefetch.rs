//! Software prefetch hints: the engine's only `unsafe`, kept in one place.

/// Ask the CPU to start loading the cache line holding `*ptr`. A hint only: it never faults,
/// whatever the address, and does nothing on targets without the instruction.
#[inline(always)]
pub(crate) fn prefetch_read<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is an SSE instruction, which every x86_64 CPU has; a prefetch
    // reads nothing architecturally and cannot fault, even on an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Ask the CPU to start loading the cache line holding `*ptr` for writing (owned, so the
/// store that follows does not wait for it). A hint only, like [`prefetch_read`].
#[inline(always)]
pub(crate) fn prefetch_write<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as for `prefetch_read`: a prefetch (here PREFETCHW, which every x86_64 CPU
    // this engine is tuned for has, and others treat as a no-op hint) reads nothing
    // architecturally and cannot fault, even on an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Bytes in a cache line on the targets the engine is tuned for.
const CACHE_LINE: usize = 64;

/// [`prefetch_read`] the cache line holding `*ptr` and the next one: where a linear probe
/// that starts at `ptr` runs on to when its first line is taken.
#[inline(always)]
pub(crate) fn prefetch_probe<T>(ptr: *const T) {
    prefetch_read(ptr);
    prefetch_read(ptr.cast::<u8>().wrapping_add(CACHE_LINE));
}

/// [`prefetch_read`] every cache line `*ptr` spans: its first and its last byte's (the same
/// line for a small value that does not straddle one).
#[inline(always)]
pub(crate) fn prefetch_value<T>(ptr: *const T) {
    prefetch_read(ptr);
    prefetch_read(ptr.cast::<u8>().wrapping_add(std::mem::size_of::<T>() - 1));
}
