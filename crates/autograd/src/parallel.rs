//! The one thread pool.
//!
//! All parallel kernels run on rayon's global pool. [`init_thread_pool`] sizes it once per
//! process (the CLI's `--threads N`); without it rayon uses one thread per core. Kernels are
//! written so that the same seed, inputs and thread count give bit-identical results; element-wise
//! ops and matmuls are also identical across thread counts (see [`crate::kernels`]).

use crate::error::{AutogradError, Result};

/// Sizes the global rayon pool to `threads` (0 = one per core). Call it before any parallel
/// work. Calling it again with the size the pool already has is a no-op.
///
/// # Errors
/// [`AutogradError::ThreadPool`] if the pool was already started with a different size.
pub fn init_thread_pool(threads: usize) -> Result<()> {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let current = rayon::current_num_threads();
            if threads == 0 || threads == current {
                Ok(())
            } else {
                Err(AutogradError::ThreadPool(format!(
                    "cannot use {threads} threads: the pool already runs {current} ({e})"
                )))
            }
        }
    }
}

/// The number of threads kernels may use.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
