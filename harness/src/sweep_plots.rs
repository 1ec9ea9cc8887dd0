//! SVG plots of a capacity sweep: latency percentiles against offered load (one plot per
//! shard count, with the SLO lines, the knee and the capacity marked), achieved against
//! offered load, and capacity against shards with the fitted USL curve. Uses the size and
//! error conversion of [`crate::plots`].

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::plots::{err, labelled_line, SIZE};
use crate::sweep::{CapacityReport, ShardResult};

/// Achieved against offered load, every shard count.
pub const ACHIEVED_FILE: &str = "sweep-achieved.svg";
/// Capacity against shards.
pub const SCALING_FILE: &str = "sweep-scaling.svg";

/// The latency plot of one shard count.
pub fn latency_file(shards: usize) -> String {
    format!("sweep-latency-{shards}-shards.svg")
}

const PALETTE: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
/// SLO lines: colours no percentile line uses.
const SLO_COLORS: [RGBColor; 3] = [
    RGBColor(230, 120, 0),
    RGBColor(140, 70, 20),
    RGBColor(110, 110, 110),
];
/// The capacity line.
const CAPACITY_COLOR: RGBColor = RGBColor(0, 128, 128);

/// Axis labels for rates: whole numbers.
fn whole(v: &f64) -> String {
    format!("{v:.0}")
}

/// Write every plot into `dir`; returns their file names.
pub fn write_plots(dir: &Path, report: &CapacityReport) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for r in &report.results {
        let name = latency_file(r.shards);
        latency(&dir.join(&name), report, r)?;
        files.push(name);
    }
    achieved(&dir.join(ACHIEVED_FILE), report)?;
    files.push(ACHIEVED_FILE.into());
    scaling(&dir.join(SCALING_FILE), report)?;
    files.push(SCALING_FILE.into());
    Ok(files)
}

/// The measured steps of a search, by rate (as the knee reads them).
fn search_steps(r: &ShardResult) -> Vec<&crate::sweep::Step> {
    crate::sweep::knee_steps(&r.steps)
}

fn latency(path: &Path, report: &CapacityReport, r: &ShardResult) -> Result<()> {
    let steps = search_steps(r);
    let ms = |ns: u64| (ns as f64 / 1e6).max(1e-4);
    let series = |pick: fn(&crate::sweep::Step) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .map(|s| (s.offered_per_sec, ms(pick(s))))
            .collect()
    };
    let p50 = series(|s| s.latency_ns.p50);
    let p99 = series(|s| s.latency_ns.p99);
    let p999 = series(|s| s.latency_ns.p99_9);
    let max = series(|s| s.latency_ns.max);
    let slo_ms: Vec<(String, f64)> = report
        .settings
        .slos
        .iter()
        .map(|s| (s.text.clone(), ms(s.bound_ns)))
        .collect();
    let values = p50
        .iter()
        .chain(&p99)
        .chain(&p999)
        .chain(&max)
        .map(|p| p.1)
        .chain(slo_ms.iter().map(|s| s.1));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (y_min, y_max) = if lo.is_finite() && hi > lo {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-3, 1e3)
    };
    let x_max = steps
        .iter()
        .map(|s| s.offered_per_sec)
        .fold(1.0f64, f64::max)
        * 1.05;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency against offered load: {} shard(s)", r.shards),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests per second")
        .y_desc("latency from intended send, ms (log scale)")
        .x_label_formatter(&whole)
        .draw()
        .map_err(err)?;
    for (points, color, label) in [
        (max, MAGENTA, "max"),
        (p999, BLUE, "p99.9"),
        (p99, RED, "p99"),
        (p50, GREEN, "p50"),
    ] {
        labelled_line(&mut chart, points.clone(), color, label)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    for (i, (text, bound)) in slo_ms.into_iter().enumerate() {
        let color = SLO_COLORS[i % SLO_COLORS.len()];
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, bound), (x_max, bound)],
                8,
                4,
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("SLO {text}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some(k) = r.knee.as_ref().and_then(|k| k.knee_per_sec) {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(k, y_min), (k, y_max)],
                6,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("knee {k:.0}/s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    if let Some(c) = r.capacity_per_sec {
        chart
            .draw_series(LineSeries::new(
                vec![(c, y_min), (c, y_max)],
                CAPACITY_COLOR.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("capacity {c:.0}/s"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], CAPACITY_COLOR.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn achieved(path: &Path, report: &CapacityReport) -> Result<()> {
    let top = report
        .results
        .iter()
        .flat_map(search_steps)
        .flat_map(|s| [s.offered_per_sec, s.achieved_per_sec.unwrap_or(0.0)])
        .fold(1.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Achieved against offered load", ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..top, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests per second")
        .y_desc("achieved (decided), requests per second")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (top, top)],
            8,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("achieved = offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (i, r) in report.results.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = search_steps(r)
            .iter()
            .filter_map(|s| s.achieved_per_sec.map(|a| (s.offered_per_sec, a)))
            .collect();
        labelled_line(
            &mut chart,
            points.clone(),
            color,
            format!("{} shard(s)", r.shards),
        )?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn scaling(path: &Path, report: &CapacityReport) -> Result<()> {
    let s = &report.scaling;
    let n_max = report
        .results
        .iter()
        .map(|r| r.shards)
        .max()
        .unwrap_or(1)
        .max(2) as f64
        * 1.1;
    let curve: Vec<(f64, f64)> = s.usl.as_ref().map_or(Vec::new(), |f| {
        (0..=200)
            .map(|i| 1.0 + (n_max - 1.0) * f64::from(i) / 200.0)
            .map(|n| (n, f.at(n)))
            .collect()
    });
    // Each shard count's capacity, with the repeats' achieved range as an error bar.
    let bars: Vec<(f64, f64, f64, f64)> = report
        .results
        .iter()
        .filter_map(|r| {
            let c = r.capacity_per_sec?;
            let (lo, hi) = r
                .repeats
                .as_ref()
                .filter(|p| p.runs > 0)
                .map_or((c, c), |p| (p.achieved_per_sec.min, p.achieved_per_sec.max));
            Some((r.shards as f64, c, lo, hi))
        })
        .collect();
    let y_max = bars
        .iter()
        .flat_map(|b| [b.1, b.3])
        .chain(curve.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    let caption = match (&s.usl, &s.no_fit) {
        (Some(f), _) => format!(
            "Capacity against shards: USL sigma {:.4}, kappa {:.6}, R² {}",
            f.sigma,
            f.kappa,
            f.r_squared.map_or("n/a".into(), |r| format!("{r:.3}"))
        ),
        (None, Some(_)) => format!(
            "Capacity against shards ({} point(s): no USL fit possible)",
            s.points.len()
        ),
        _ => "Capacity against shards".into(),
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("shards")
        .y_desc("capacity under the SLOs, requests per second")
        .y_label_formatter(&whole)
        .draw()
        .map_err(err)?;
    if !curve.is_empty() {
        chart
            .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
            .map_err(err)?
            .label("USL fit")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    // Error bars drawn as paths (plotters' ErrorBar needs a feature we do not build).
    let cap = n_max / 100.0;
    chart
        .draw_series(bars.iter().flat_map(|&(n, c, lo, hi)| {
            let (lo, hi) = (lo.min(c), hi.max(c));
            [
                PathElement::new(vec![(n, lo), (n, hi)], RED.stroke_width(1)),
                PathElement::new(vec![(n - cap, lo), (n + cap, lo)], RED.stroke_width(1)),
                PathElement::new(vec![(n - cap, hi), (n + cap, hi)], RED.stroke_width(1)),
            ]
        }))
        .map_err(err)?;
    chart
        .draw_series(
            bars.iter()
                .map(|&(n, c, _, _)| Circle::new((n, c), 4, RED.filled())),
        )
        .map_err(err)?
        .label("measured capacity (bar: the repeats' achieved range)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
