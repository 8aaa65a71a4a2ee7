//! Allocator tuning for the big, short-lived buffers of a training step.
//!
//! A step of the reference model allocates and frees tensors of up to ~40 MB (attention weights
//! `[B·H, L, L]`, FFN activations `[B, L, 256]`). glibc's `malloc` serves blocks above its mmap
//! threshold with a fresh `mmap` and returns them with `munmap`, and trims the heap top back to
//! the OS — so every step page-faults its working set in again (measured: ~20 % of a step in the
//! kernel, zeroing pages). [`retain_freed_memory`] raises the mmap threshold to glibc's maximum,
//! disables trimming and pads heap growth, so freed buffers are reused by the next step.
//! (jemalloc as the global allocator was measured too, and was slower; docs/performance.md.)

/// Keeps freed memory in the process for reuse (glibc only; elsewhere a no-op). Call once at
/// start-up, before the first large allocation; returns whether every setting was accepted.
/// The cost is a resident set that stays at the peak of a step instead of shrinking between
/// steps.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's upper limit of `M_MMAP_THRESHOLD` on 64-bit targets (32 MiB).
        const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;
        let settings = [
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
            (libc::M_TRIM_THRESHOLD, libc::c_int::MAX),
            (libc::M_TOP_PAD, 256 << 20),
        ];
        settings.iter().all(|&(param, value)| {
            // SAFETY: `mallopt` only changes allocator parameters; it takes plain integers,
            // touches no memory of ours and is safe to call at any time (glibc serializes it
            // with the allocator's own lock).
            #[allow(unsafe_code)]
            let ok = unsafe { libc::mallopt(param, value) };
            ok == 1
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_accepted_on_glibc() {
        let ok = super::retain_freed_memory();
        assert_eq!(ok, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Allocation still works afterwards.
        let v = vec![1.0_f32; 10 << 20];
        assert_eq!(v.iter().sum::<f32>(), (10 << 20) as f32);
    }
}
