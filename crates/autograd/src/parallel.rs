//! The one thread pool.
//!
//! All parallel kernels run on rayon's global pool. [`init_thread_pool`] sizes it once per
//! process (the CLI's `--threads N`); without it rayon uses one thread per core. The CLI then
//! runs its long commands on a pool thread ([`run_in_pool`]), so that each parallel op starts
//! from a worker rather than waking the pool from outside and sleeping until it is done. Kernels are
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
        // The main thread's stack size: whole commands run on pool threads (`run_in_pool`).
        .stack_size(8 << 20)
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

/// Runs `f` on a thread of the pool and returns its result (the calling thread waits). Called
/// from outside the pool — e.g. from `main` — every parallel kernel inside `f` then starts
/// from a worker: it runs its share on that worker and wakes the others, instead of handing
/// the whole job to the pool and sleeping until it is done (a sleep and a wake-up of the
/// calling thread per parallel op). Inside the pool it just calls `f`.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::join(f, || ()).0
    }
}

#[cfg(test)]
mod tests {
    use super::run_in_pool;

    #[test]
    fn run_in_pool_runs_on_a_pool_thread_and_returns_the_result() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "tests run outside the pool"
        );
        let (inside, value) = run_in_pool(|| (rayon::current_thread_index().is_some(), 7));
        assert!(inside);
        assert_eq!(value, 7);
        // Nested and inside another pool: `f` runs right there, in that pool.
        assert_eq!(run_in_pool(|| run_in_pool(|| 5)), 5);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| run_in_pool(rayon::current_num_threads)), 3);
    }
}
