//! Helpers shared by the repository's examples (`mod support;` in each): command-line flags, the
//! mean ± sd summaries of the experiment tables, and ([`study`]) training and scoring one model
//! configuration over several seeds. Each example uses a subset.
#![allow(dead_code)]

use anyhow::{Context, Result};
use std::str::FromStr;

pub mod study;

/// The value after `--name` in `args`, parsed, or `default` when the flag is absent.
pub fn flag<T: FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .ok()
            .with_context(|| format!("{name}: cannot parse {:?}", args[i + 1])),
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// `mean ± sd` with four decimals, for the markdown tables.
pub fn pm((mean, sd): (f64, f64)) -> String {
    format!("{mean:.4} ± {sd:.4}")
}
