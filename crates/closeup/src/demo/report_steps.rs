//! `report.md`, steps 6 and 7: the blender and the grid (split from `report.rs` for size).

use super::DemoMetrics;
use super::charts;
use super::report::{f4, figure};
use crate::blend_study;
use crate::grid::{self, hidden_label};
use std::fmt::Write as _;

pub(super) fn blender(out: &mut String, m: &DemoMetrics) {
    let b = &m.blender;
    let _ = writeln!(
        out,
        "## 6. The learned-utility blender\n\nThe blender learns per-request weights f(x) over \
         the task probabilities from a log where the weights were randomized around production \
         (SPEC §2.5), with reward closeup = +1, hide = −2. Policies are scored exactly on held-out \
         requests of the simulator's blender world; \"post\" is the post's objective taken \
         literally, \"well-posed\" the logistic-regression variant (y = 1[R > 0], weight |R|).\n"
    );
    out.push_str(&blend_study::render_markdown(b));
    figure(out, charts::BLENDER, "blender reward per policy");
    let best = b.rows.iter().max_by(|x, y| x.reward.total_cmp(&y.reward));
    if let Some(best) = best {
        let base = &b.baselines;
        let best_wp = b
            .rows
            .iter()
            .filter(|r| r.convention == crate::blender::Convention::WellPosed)
            .max_by(|x, y| x.reward.total_cmp(&y.reward));
        let _ = write!(
            out,
            "Production weights earn {:.4} per request and the oracle {:.4}. The best learned \
             policy ({}, λ = {}) earns {:.4}, closing {:.0}% of that gap ({:.0}% of what any \
             feature-only policy can gain); the best fixed weights earn {:.4}. ",
            base.production,
            base.oracle,
            best.convention,
            best.lambda,
            best.reward,
            100.0 * best.gap_closed,
            100.0 * best.gap_closed_feature_only,
            base.best_fixed
        );
        if best.reward > base.best_fixed {
            out.push_str("Per-request weights beat every fixed weighting, the post's point. ");
        } else {
            out.push_str(
                "Here no learned policy beats the best *fixed* weights: most of the gain comes \
                 from moving the global weights, not from personalizing them. ",
            );
        }
        if let Some(wp) = best_wp {
            let _ = write!(
                out,
                "The best well-posed policy earns {:.4} ({:.0}% of the gap). ",
                wp.reward,
                100.0 * wp.gap_closed
            );
            if wp.reward < base.production {
                out.push_str(
                    "It earns less than production: with y = 1[R > 0] most logged requests are \
                     unrewarded negatives, and the weights move toward what separates rewarded \
                     from unrewarded requests, which is not the same as what maximizes the \
                     reward. ",
                );
            }
        }
        let best_post = b
            .rows
            .iter()
            .filter(|r| r.convention == crate::blender::Convention::Post)
            .map(|r| r.reward)
            .fold(f64::NEG_INFINITY, f64::max);
        if let Some(wp) = best_wp {
            let _ = write!(
                out,
                "In this run the {} convention gives the better policy ({:.4} vs {:.4}). ",
                if best_post >= wp.reward {
                    "post's"
                } else {
                    "well-posed"
                },
                best_post.max(wp.reward),
                best_post.min(wp.reward)
            );
        }
        out.push_str("See `docs/blender.md` for the conventions and the full study.\n\n");
    }
}

pub(super) fn grid_section(out: &mut String, m: &DemoMetrics) {
    let g = &m.grid;
    let p = &m.plan;
    let scaled = p.grid.expert_hidden != p.grid_pinterest_shapes;
    let _ = writeln!(
        out,
        "## 7. Grid over experts and expert shapes\n\nPinterest searched the number of experts \
         and the expert hidden sizes and found more experts better within a range and [256,256] \
         better than [512,512] or [256,256,256]. {}Each point trains {} epoch(s) with the same \
         seed and data.\n",
        if scaled {
            format!(
                "This run uses scaled-down analogues with the same ratios: {} stand for {}. ",
                p.grid
                    .expert_hidden
                    .iter()
                    .map(|h| hidden_label(h))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.grid_pinterest_shapes
                    .iter()
                    .map(|h| hidden_label(h))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        },
        p.grid_epochs
    );
    out.push_str(&grid::render_markdown(g));
    figure(
        out,
        charts::GRID,
        "grid: validation mean AUC per expert shape",
    );
    let noise = (m.model("mmoe").test.mean_auc.unwrap_or(0.0)
        - m.model("mmoe-B").test.mean_auc.unwrap_or(0.0))
    .abs();
    let Some(best) = g.best() else { return };
    let shapes = &p.grid.expert_hidden;
    let first = shapes.first();
    let mut wins = 0;
    let mut groups = 0;
    let mut experts: Vec<usize> = g.rows.iter().map(|r| r.point.experts).collect();
    experts.dedup();
    for &e in &experts {
        let rows: Vec<_> = g.rows.iter().filter(|r| r.point.experts == e).collect();
        if let Some(top) = rows.iter().max_by(|a, b| {
            a.valid
                .mean_auc
                .unwrap_or(0.0)
                .total_cmp(&b.valid.mean_auc.unwrap_or(0.0))
        }) {
            groups += 1;
            if Some(&top.point.expert_hidden) == first {
                wins += 1;
            }
        }
    }
    let spread = {
        let v: Vec<f64> = g.rows.iter().filter_map(|r| r.valid.mean_auc).collect();
        v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
    };
    let _ = writeln!(
        out,
        "The best point is {} (validation mean AUC {}). The {} shape (Pinterest's [256,256]) is \
         the best shape for {wins} of {groups} expert counts. The whole grid spans {spread:.4} of \
         AUC, against {noise:.4} between two seeds of one model (step 5){}\n",
        best.point.label(),
        f4(best.valid.mean_auc),
        first.map_or("first".into(), |h| hidden_label(h)),
        if spread <= 2.0 * noise {
            ": at this scale the grid's differences are within seed noise, so it neither \
             confirms nor contradicts the post's ranking of shapes."
        } else if wins == groups {
            ": the ranking of shapes agrees with the post."
        } else {
            ": the ranking of shapes differs from the post's here; with small data a bigger \
             expert can simply fit better, or overfit sooner."
        }
    );
}
