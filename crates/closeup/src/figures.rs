//! Hand-written SVG figures: line charts, grouped bar charts, horizontal bar charts and the
//! gate heatmap. Plain SVG 1.1 text with a generic `sans-serif` font — no font files, no system
//! libraries — so the pictures render the same in a browser, on GitHub and in an editor.
//!
//! ```
//! use closeup::figures::{Series, line_chart};
//! let svg = line_chart("valid AUC", "epoch", "AUC",
//!     &[Series::new("mmoe", vec![(1.0, 0.61), (2.0, 0.64)])], &[("ceiling", 0.79)]);
//! assert!(svg.starts_with("<svg") && svg.contains("mmoe"));
//! ```

use ndarray::Array2;
use std::fmt::Write as _;

/// Colours of the series, in order (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// One named line of a [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series called `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// Escapes text for SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn header(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        width / 2.0,
        escape(title)
    )
}

/// A "nice" axis range and tick step covering `[lo, hi]`.
fn nice_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if (hi - lo).abs() < 1e-12 {
        (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3))
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn fmt_tick(v: f64, step: f64) -> String {
    let digits = (-step.log10().floor()).max(0.0) as usize + usize::from(step < 1.0);
    format!("{v:.digits$}")
}

/// Plot area and the y axis with grid lines; returns the y-to-pixel map's parameters.
struct Frame {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        self.top + self.h * (1.0 - (v - self.y0) / (self.y1 - self.y0))
    }

    fn draw_y_axis(&self, svg: &mut String, step: f64, label: &str) {
        let mut v = self.y0;
        while v <= self.y1 + step * 1e-6 {
            let y = self.y(v);
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                self.left,
                self.left + self.w,
                self.left - 6.0,
                y + 4.0,
                fmt_tick(v, step)
            );
            v += step;
        }
        let _ = writeln!(
            svg,
            "<text transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
            self.top + self.h / 2.0,
            escape(label),
            self.left,
            self.top,
            self.w,
            self.h
        );
    }
}

fn legend(svg: &mut String, x: f64, y: f64, names: &[&str], dashed_from: usize) {
    for (i, name) in names.iter().enumerate() {
        let yy = y + 16.0 * i as f64;
        let colour = if i >= dashed_from {
            "#555"
        } else {
            PALETTE[i % PALETTE.len()]
        };
        let dash = if i >= dashed_from {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"{colour}\" \
             stroke-width=\"3\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            x + 18.0,
            x + 24.0,
            yy + 4.0,
            escape(name)
        );
    }
}

/// A line chart of `series` (markers at the points) with dashed horizontal reference lines
/// `hlines` (label, y), e.g. a Bayes ceiling. The y range covers every point and line.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    hlines: &[(&str, f64)],
) -> String {
    let (width, height) = (560.0, 340.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = pts.clone().map(|p| p.0).collect();
    let ys: Vec<f64> = pts
        .map(|p| p.1)
        .chain(hlines.iter().map(|h| h.1))
        .filter(|v| v.is_finite())
        .collect();
    let (xmin, xmax) = bounds(&xs, 0.0, 1.0);
    let (ymin, ymax) = bounds(&ys, 0.0, 1.0);
    let (y0, y1, step) = nice_range(ymin, ymax);
    let f = Frame {
        left: 60.0,
        top: 32.0,
        w: 330.0,
        h: height - 80.0,
        y0,
        y1,
    };
    let x = |v: f64| {
        let span = if xmax > xmin { xmax - xmin } else { 1.0 };
        f.left + f.w * (v - xmin) / span
    };
    let mut svg = header(width, height, title);
    f.draw_y_axis(&mut svg, step, y_label);
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let every = ticks.len().div_ceil(10).max(1);
    // Enough decimals to tell neighbouring ticks apart (integers stay integers).
    let gap = ticks
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 1e-12)
        .fold(1.0_f64, f64::min);
    for t in ticks.iter().step_by(every) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(*t),
            f.top + f.h + 16.0,
            fmt_tick(
                *t,
                if t.fract() == 0.0 && gap >= 1.0 {
                    1.0
                } else {
                    gap
                }
            )
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        f.left + f.w / 2.0,
        height - 12.0,
        escape(x_label)
    );
    for (label, v) in hlines {
        let yy = f.y(*v);
        let _ = writeln!(
            svg,
            "<line x1=\"{}\" y1=\"{yy:.1}\" x2=\"{}\" y2=\"{yy:.1}\" stroke=\"#555\" \
             stroke-dasharray=\"5,3\"><title>{}</title></line>",
            f.left,
            f.left + f.w,
            escape(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), f.y(py)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for p in &path {
            let (cx, cy) = p.split_once(',').expect("formatted above");
            let _ = writeln!(
                svg,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
    }
    let mut names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    names.extend(hlines.iter().map(|h| h.0));
    legend(
        &mut svg,
        f.left + f.w + 20.0,
        f.top + 10.0,
        &names,
        series.len(),
    );
    svg.push_str("</svg>\n");
    svg
}

fn bounds(v: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    if v.is_empty() {
        return (lo, hi);
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// Vertical bars grouped by category: one bar per series in each category; the y axis starts
/// at `y_from` (e.g. 0.5 for AUC) or at 0 when `None`. NaN values leave a gap.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    y_from: Option<f64>,
) -> String {
    let groups = categories.len().max(1) as f64;
    let per = series.len().max(1) as f64;
    let width = (110.0 + 190.0 + groups * (per * 18.0 + 22.0)).max(480.0);
    let height = 340.0;
    let vals: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = bounds(&vals, 0.0, 1.0);
    let base = y_from.unwrap_or(0.0_f64.min(lo));
    let (y0, y1, step) = nice_range(base, hi.max(base + 1e-6));
    let f = Frame {
        left: 60.0,
        top: 32.0,
        w: width - 60.0 - 190.0,
        h: height - 90.0,
        y0: y0.max(base),
        y1,
    };
    let mut svg = header(width, height, title);
    f.draw_y_axis(&mut svg, step, y_label);
    let group_w = f.w / groups;
    let bar_w = (group_w - 12.0) / per;
    for (g, cat) in categories.iter().enumerate() {
        let gx = f.left + group_w * g as f64 + 6.0;
        for (i, (_, values)) in series.iter().enumerate() {
            let v = values.get(g).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let top = f.y(v.max(f.y0));
            let bottom = f.y(f.y0.max(0.0_f64.min(f.y1)));
            let (ya, yb) = (top.min(bottom), top.max(bottom));
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{ya:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}: {v:.4}</title></rect>",
                gx + bar_w * i as f64,
                bar_w.max(1.0) - 1.0,
                (yb - ya).max(0.5),
                PALETTE[i % PALETTE.len()],
                escape(cat)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            gx + (group_w - 12.0) / 2.0,
            f.top + f.h + 16.0,
            escape(cat)
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    legend(
        &mut svg,
        f.left + f.w + 20.0,
        f.top + 10.0,
        &names,
        usize::MAX,
    );
    svg.push_str("</svg>\n");
    svg
}

/// Horizontal bars, one per `(label, value)`, with the value printed at the bar's end;
/// `highlight` indexes get the second palette colour.
pub fn hbar_chart(
    title: &str,
    x_label: &str,
    rows: &[(String, f64)],
    highlight: &[usize],
) -> String {
    let label_w = 300.0;
    let bar_h = 22.0;
    let width = label_w + 360.0;
    let height = 60.0 + bar_h * rows.len() as f64 + 30.0;
    let vals: Vec<f64> = rows.iter().map(|r| r.1).filter(|v| v.is_finite()).collect();
    let (lo, hi) = bounds(&vals, 0.0, 1.0);
    let (x0, x1, step) = nice_range(lo.min(0.0), hi.max(0.0));
    let (left, w) = (label_w, 300.0);
    let x = |v: f64| left + w * (v - x0) / (x1 - x0);
    let mut svg = header(width, height, title);
    let top = 34.0;
    let bottom = top + bar_h * rows.len() as f64;
    let mut t = x0;
    while t <= x1 + step * 1e-6 {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{2}</text>",
            x(t),
            bottom + 14.0,
            fmt_tick(t, step)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        left + w / 2.0,
        bottom + 30.0,
        escape(x_label)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = top + bar_h * i as f64;
        let colour = if highlight.contains(&i) {
            PALETTE[1]
        } else {
            PALETTE[0]
        };
        let (a, b) = (x(0.0_f64.max(x0)), x(*v));
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{v:.4}</text>",
            left - 8.0,
            y + bar_h / 2.0 + 4.0,
            escape(label),
            a.min(b),
            y + 3.0,
            (b - a).abs().max(0.5),
            bar_h - 6.0,
            a.max(b) + 4.0,
            y + bar_h / 2.0 + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"#333\"/>",
        x(0.0_f64.max(x0))
    );
    svg.push_str("</svg>\n");
    svg
}

/// The gate heatmap: one cell per (task, expert), darker = more weight, the value printed in
/// the cell. The colour scale runs from 0 to the largest mean weight.
pub fn gate_heatmap(tasks: &[String], gates: &Array2<f64>) -> String {
    let (cell, left, top) = (56.0, 110.0, 46.0);
    let (rows, cols) = gates.dim();
    let width = (left + cell * cols as f64 + 20.0).max(420.0);
    let height = top + cell * rows as f64 + 20.0;
    let max = gates.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let mut svg = header(
        width,
        height,
        "mean gate weight per task (rows) and expert (columns)",
    );
    for e in 0..cols {
        let x = left + cell * (e as f64 + 0.5);
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">e{e}</text>",
            top - 6.0
        );
    }
    for (r, task) in tasks.iter().enumerate() {
        let y = top + cell * r as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + cell / 2.0 + 4.0,
            escape(task)
        );
        for e in 0..cols {
            let v = gates[[r, e]];
            let shade = (v / max).clamp(0.0, 1.0);
            let (cr, cg, cb) = (
                (255.0 - 225.0 * shade) as u8,
                (255.0 - 170.0 * shade) as u8,
                (255.0 - 75.0 * shade) as u8,
            );
            let x = left + cell * e as f64;
            let ink = if shade > 0.6 { "white" } else { "black" };
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
                 fill=\"rgb({cr},{cg},{cb})\" stroke=\"white\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{v:.2}</text>",
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ranges_cover_the_data() {
        let (lo, hi, step) = nice_range(0.61, 0.79);
        assert!(lo <= 0.61 && hi >= 0.79 && step > 0.0);
        let (lo, hi, _) = nice_range(3.0, 3.0);
        assert!(lo < 3.0 && hi > 3.0);
    }

    #[test]
    fn line_chart_x_ticks_keep_the_decimals_they_need() {
        let s = |xs: &[f64]| Series::new("s", xs.iter().map(|&x| (x, 1.0)).collect());
        let ticks = |svg: &str| -> Vec<String> {
            svg.lines()
                .filter(|l| l.starts_with("<text") && l.contains("y=\"308\""))
                .map(|l| {
                    l.split('>')
                        .nth(1)
                        .unwrap()
                        .trim_end_matches("</text")
                        .to_string()
                })
                .collect()
        };
        let svg = line_chart("t", "x", "y", &[s(&[1.0, 2.0, 3.0])], &[]);
        assert_eq!(ticks(&svg), ["1", "2", "3"]);
        let svg = line_chart("t", "x", "y", &[s(&[3.0, 3.477, 4.0, 4.477])], &[]);
        assert_eq!(ticks(&svg), ["3.00", "3.48", "4.00", "4.48"]);
        let svg = line_chart("t", "x", "y", &[s(&[0.0164, 0.0185, 0.0337])], &[]);
        assert_eq!(ticks(&svg), ["0.0164", "0.0185", "0.0337"]);
    }

    #[test]
    fn charts_are_well_formed() {
        let cats = vec!["a".to_string(), "b&c".to_string()];
        let svg = bar_chart(
            "t",
            "y",
            &cats,
            &[("s".into(), vec![0.6, f64::NAN])],
            Some(0.5),
        );
        assert!(svg.contains("b&amp;c") && svg.ends_with("</svg>\n"));
        let svg = hbar_chart("t", "x", &[("neg".into(), -0.1), ("pos".into(), 0.2)], &[1]);
        assert_eq!(svg.matches("<rect").count(), 3);
        let svg = gate_heatmap(&["repin".into()], &ndarray::array![[0.25, 0.75]]);
        assert!(svg.contains("0.75"));
    }
}
