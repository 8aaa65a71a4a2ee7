//! The learned-utility blender against the prior strength λ **and** the log size: expected
//! reward of the production weights, the learned per-request weights `f(x)` (each loss
//! convention, `post` and `well-posed`) and the oracle, on the simulator's blender world.
//!
//! Each (log size, seed) is one `closeup::blend_study::run` (the study behind `closeup blend
//! eval`, docs/blender.md) with the sensitivity parts switched off: the world is the default
//! blender world with `num_logged_requests` set to the log size; the seed draws the world's
//! log, its held-out requests and the training. Rewards are exact expectations over the
//! held-out requests; "gap closed" is `(learned − production) / (oracle − production)`.
//!
//! Output: markdown tables on stdout (mean ± sd over the seeds) and two SVG figures in `--out`:
//! `blender_lambda_{post,well-posed}.svg` (gap closed against log10 λ, one line per log size)
//! and `blender_log_size.svg` (gap closed against log10 log size, per convention at two λ).
//!
//! Run: `cargo run --release --example blender_sweep -- --threads 1 [--seeds 1,2,3,4,5
//! --lambdas 0,0.001,0.003,0.01,0.03,0.1,0.5,2 --log-sizes 1000,3000,10000,30000
//! --out docs/experiments/figures]`

mod support;

use anyhow::{Context, Result, bail};
use closeup::autograd::{init_thread_pool, num_threads};
use closeup::blend_study::{StudyConfig, StudyReport, run};
use closeup::blender::Convention;
use closeup::figures::{Series, line_chart};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;
use support::{flag, mean_sd};

fn list<T: FromStr>(args: &[String], name: &str, default: &str) -> Result<Vec<T>> {
    let text = match args.iter().position(|a| a == name) {
        None => default.to_string(),
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .clone(),
    };
    text.split(',')
        .map(|s| s.trim().parse::<T>().ok())
        .collect::<Option<Vec<T>>>()
        .with_context(|| format!("{name}: a comma-separated list of numbers, not {text:?}"))
}

/// The gap closed towards `top` from production.
fn gap(v: f64, production: f64, top: f64) -> f64 {
    if (top - production).abs() < 1e-12 {
        0.0
    } else {
        (v - production) / (top - production)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: Vec<u64> = list(&args, "--seeds", "1,2,3,4,5")?;
    let lambdas: Vec<f32> = list(&args, "--lambdas", "0,0.001,0.003,0.01,0.03,0.1,0.5,2")?;
    let sizes: Vec<usize> = list(&args, "--log-sizes", "1000,3000,10000,30000")?;
    let threads: usize = flag(&args, "--threads", 0)?;
    let out = PathBuf::from(flag(
        &args,
        "--out",
        "docs/experiments/figures".to_string(),
    )?);
    if seeds.is_empty() || lambdas.iter().any(|l| !(l.is_finite() && *l >= 0.0)) {
        bail!("--seeds must name a seed and every λ must be finite and >= 0");
    }
    if sizes.iter().any(|&n| n < 2) {
        bail!("--log-sizes: every log needs at least 2 requests");
    }
    init_thread_pool(threads)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();

    // reports[size][seed]
    let mut reports: Vec<Vec<StudyReport>> = Vec::new();
    for &n in &sizes {
        let mut row = Vec::new();
        for &seed in &seeds {
            let mut config = StudyConfig {
                seed,
                lambdas: lambdas.clone(),
                exploration_stds: vec![],
                log_sizes: vec![],
                ..StudyConfig::default()
            };
            config.world.num_logged_requests = n;
            row.push(run(&config).with_context(|| format!("log size {n}, seed {seed}"))?);
            eprintln!(
                "log size {n}, seed {seed}: done ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        reports.push(row);
    }
    let conventions = Convention::ALL;
    let first = &reports[0][0];
    println!(
        "Blender sweep: the default blender world (exploration std {}, {} held-out requests), \
         log sizes {:?}, seeds {:?}, blender `{:?}` hidden, {} epochs; {} kernel thread(s). \
         Expected reward per held-out request (exact), and the gap closed from production \
         towards the oracle, mean ± sd over the seeds.\n",
        first.config.world.exploration_std,
        first.num_eval,
        sizes,
        seeds,
        first.config.blender.hidden,
        first.config.blender.train.epochs,
        num_threads()
    );

    let cell = |v: &[f64], pct: bool| {
        let (m, sd) = mean_sd(v);
        if pct {
            format!("{:.1}% ± {:.1}", 100.0 * m, 100.0 * sd)
        } else {
            format!("{m:.4} ± {sd:.4}")
        }
    };
    let gaps = |si: usize, c: Convention, l: f32| -> Vec<f64> {
        reports[si]
            .iter()
            .map(|r| {
                r.rows
                    .iter()
                    .find(|row| row.convention == c && row.lambda == l)
                    .map_or(f64::NAN, |row| row.gap_closed)
            })
            .collect()
    };
    println!("Baselines per log size (the held-out requests differ with the log size):\n");
    println!(
        "| log size | production | best fixed weights | posterior oracle | oracle | best fixed, gap closed | posterior oracle, gap closed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (si, &n) in sizes.iter().enumerate() {
        let b =
            |f: &dyn Fn(&StudyReport) -> f64| -> Vec<f64> { reports[si].iter().map(f).collect() };
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            cell(&b(&|r| r.baselines.production), false),
            cell(&b(&|r| r.baselines.best_fixed), false),
            cell(&b(&|r| r.baselines.posterior_oracle), false),
            cell(&b(&|r| r.baselines.oracle), false),
            cell(
                &b(&|r| gap(
                    r.baselines.best_fixed,
                    r.baselines.production,
                    r.baselines.oracle
                )),
                true
            ),
            cell(
                &b(&|r| gap(
                    r.baselines.posterior_oracle,
                    r.baselines.production,
                    r.baselines.oracle
                )),
                true
            ),
        );
    }
    for c in conventions {
        println!(
            "\nLearned f(x), convention `{c}`: gap closed towards the oracle (λ × log size):\n"
        );
        let head: Vec<String> = sizes.iter().map(|n| format!(" {n} |")).collect();
        println!("| λ |{}", head.concat());
        println!("|---|{}", "---|".repeat(sizes.len()));
        for &l in &lambdas {
            let cells: Vec<String> = (0..sizes.len())
                .map(|si| format!(" {} |", cell(&gaps(si, c, l), true)))
                .collect();
            println!("| {l} |{}", cells.concat());
        }
    }
    println!(
        "\nExpected reward per request of the learned f(x) (mean over seeds; production in the first row):\n"
    );
    let head: Vec<String> = sizes.iter().map(|n| format!(" {n} |")).collect();
    println!("| policy | λ |{}", head.concat());
    println!("|---|---|{}", "---|".repeat(sizes.len()));
    let prod: Vec<String> = (0..sizes.len())
        .map(|si| {
            let v: Vec<f64> = reports[si].iter().map(|r| r.baselines.production).collect();
            format!(" {:.4} |", mean_sd(&v).0)
        })
        .collect();
    println!("| production | – |{}", prod.concat());
    for c in conventions {
        for &l in &lambdas {
            let cells: Vec<String> = (0..sizes.len())
                .map(|si| {
                    let v: Vec<f64> = reports[si]
                        .iter()
                        .map(|r| {
                            r.rows
                                .iter()
                                .find(|row| row.convention == c && row.lambda == l)
                                .map_or(f64::NAN, |row| row.reward)
                        })
                        .collect();
                    format!(" {:.4} |", mean_sd(&v).0)
                })
                .collect();
            println!("| {c} | {l} |{}", cells.concat());
        }
    }
    let oracle: Vec<String> = (0..sizes.len())
        .map(|si| {
            let v: Vec<f64> = reports[si].iter().map(|r| r.baselines.oracle).collect();
            format!(" {:.4} |", mean_sd(&v).0)
        })
        .collect();
    println!("| oracle | – |{}", oracle.concat());

    // Figures. Reference lines: best fixed weights and the posterior oracle at the largest log.
    let last = sizes.len() - 1;
    let ref_gap = |f: &dyn Fn(&StudyReport) -> f64| {
        mean_sd(&reports[last].iter().map(f).collect::<Vec<_>>()).0
    };
    let best_fixed = ref_gap(&|r| {
        gap(
            r.baselines.best_fixed,
            r.baselines.production,
            r.baselines.oracle,
        )
    });
    let posterior = ref_gap(&|r| {
        gap(
            r.baselines.posterior_oracle,
            r.baselines.production,
            r.baselines.oracle,
        )
    });
    let hlines = [
        ("best fixed weights", best_fixed),
        ("posterior oracle", posterior),
    ];
    for c in conventions {
        let series: Vec<Series> = sizes
            .iter()
            .enumerate()
            .map(|(si, n)| {
                let pts = lambdas
                    .iter()
                    .filter(|l| **l > 0.0)
                    .map(|&l| (f64::from(l).log10(), mean_sd(&gaps(si, c, l)).0))
                    .collect();
                Series::new(format!("log size {n}"), pts)
            })
            .collect();
        let svg = line_chart(
            &format!("Learned f(x), {c}: gap closed towards the oracle"),
            "log10 λ",
            "gap closed (0 = production, 1 = oracle)",
            &series,
            &hlines,
        );
        std::fs::write(out.join(format!("blender_lambda_{c}.svg")), svg)?;
    }
    let mut series = Vec::new();
    for c in conventions {
        for l in [0.01_f32, 0.03] {
            if !lambdas.contains(&l) {
                continue;
            }
            let pts = sizes
                .iter()
                .enumerate()
                .map(|(si, &n)| ((n as f64).log10(), mean_sd(&gaps(si, c, l)).0))
                .collect();
            series.push(Series::new(format!("{c}, λ = {l}"), pts));
        }
    }
    if !series.is_empty() {
        let svg = line_chart(
            "Gap closed towards the oracle against the log size",
            "log10 logged requests",
            "gap closed (0 = production, 1 = oracle)",
            &series,
            &hlines,
        );
        std::fs::write(out.join("blender_log_size.svg"), svg)?;
    }
    println!(
        "\nWall time {:.0} s; figures in {}.",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
