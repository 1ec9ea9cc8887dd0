//! SVG plots of a measured run: the latency percentile spectrum (log x axis in 1/(1-p)),
//! latency over time and throughput over time. Text is left to the SVG viewer (plotters'
//! SVG backend writes `<text>` elements and needs no font files).

use std::path::Path;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::measure::Measurement;
use crate::report::{IntervalInfo, Report};

/// The latency percentile spectrum.
pub const SPECTRUM_FILE: &str = "latency-spectrum.svg";
/// Latency percentiles per interval.
pub const LATENCY_OVER_TIME_FILE: &str = "latency-over-time.svg";
/// Offered and decided requests per second, per interval.
pub const THROUGHPUT_OVER_TIME_FILE: &str = "throughput-over-time.svg";

/// Size of every plot, px.
pub(crate) const SIZE: (u32, u32) = (960, 540);
/// Points per decade of the spectrum.
const SPECTRUM_STEPS_PER_DECADE: u32 = 40;

/// A plotters error as ours.
pub(crate) fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("cannot draw a plot: {e}")
}

/// Write the three plots into `dir`; returns their file names.
pub fn write_plots(dir: &Path, report: &Report, m: &Measurement) -> Result<Vec<String>> {
    let title = format!(
        "{} ({}), {}",
        report.dataset.path, report.settings.mode, report.settings.target
    );
    spectrum(&dir.join(SPECTRUM_FILE), &title, &m.latency, &m.service)?;
    latency_over_time(&dir.join(LATENCY_OVER_TIME_FILE), &title, report)?;
    throughput_over_time(&dir.join(THROUGHPUT_OVER_TIME_FILE), &title, report)?;
    Ok(vec![
        SPECTRUM_FILE.into(),
        LATENCY_OVER_TIME_FILE.into(),
        THROUGHPUT_OVER_TIME_FILE.into(),
    ])
}

/// (1/(1-p), value in ms) points from p = 0 to the last percentile the count can tell.
fn spectrum_points(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    let steps = (x_max.log10() * f64::from(SPECTRUM_STEPS_PER_DECADE)).ceil() as u32;
    for j in 0..=steps {
        let x = 10f64.powf(f64::from(j) / f64::from(SPECTRUM_STEPS_PER_DECADE));
        let q = 1.0 - 1.0 / x;
        points.push((x, h.value_at_quantile(q) as f64 / 1e6));
    }
    points.push((x_max, h.max() as f64 / 1e6));
    points
}

/// `1/(1-p)` as a percentile label: 10 -> `90%`, 1000 -> `99.9%`.
fn percentile_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let digits = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{:.*}%", digits, 100.0 * (1.0 - 1.0 / x))
}

fn spectrum(
    path: &Path,
    title: &str,
    latency: &Histogram<u64>,
    service: &Histogram<u64>,
) -> Result<()> {
    // The x axis reaches the decade where one more request would be needed to tell more.
    let count = latency.len().max(service.len()).max(10) as f64;
    let x_max = 10f64.powf(count.log10().ceil());
    let lat = spectrum_points(latency, x_max);
    let svc = spectrum_points(service, x_max);
    let y_max = lat
        .iter()
        .chain(&svc)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency by percentile: {title}"),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale in 1/(1-p))")
        .y_desc("ms")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(lat, RED.stroke_width(2)))
        .map_err(err)?
        .label("latency (from intended send)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(svc, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("service time (from actual submit)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn latency_over_time(path: &Path, title: &str, report: &Report) -> Result<()> {
    let interval_s = report.settings.interval_ns as f64 / 1e9;
    let measured: Vec<_> = report
        .intervals
        .iter()
        .filter(|i| i.latency_ns.count > 0)
        .collect();
    let t = |start_ns: u64| start_ns as f64 / 1e9;
    let series = |pick: fn(&IntervalInfo) -> u64| -> Vec<(f64, f64)> {
        measured
            .iter()
            .map(|i| (t(i.start_ns), (pick(i) as f64 / 1e6).max(1e-4)))
            .collect()
    };
    let p50 = series(|i| i.latency_ns.p50);
    let p99 = series(|i| i.latency_ns.p99);
    let max = series(|i| i.latency_ns.max);
    let svc99 = series(|i| i.service_ns.p99);
    let x_max = report
        .intervals
        .last()
        .map_or(1.0, |i| t(i.start_ns) + interval_s)
        .max(interval_s);
    let values = || {
        p50.iter()
            .chain(&p99)
            .chain(&max)
            .chain(&svc99)
            .map(|p| p.1)
    };
    let y_min = values().fold(f64::INFINITY, f64::min);
    let y_max = values().fold(0.0f64, f64::max);
    let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
        (y_min / 2.0, y_max * 2.0)
    } else {
        (1e-3, 1e3)
    };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Latency over time: {title}"), ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "seconds since the start (intervals of {interval_s} s)"
        ))
        .y_desc("ms (log scale)")
        .draw()
        .map_err(err)?;
    for (points, color, label) in [
        (max, MAGENTA, "latency max"),
        (p99, RED, "latency p99"),
        (p50, GREEN, "latency p50"),
        (svc99, BLUE, "service time p99"),
    ] {
        labelled_line(&mut chart, points, color, label)?;
    }
    warmup_line(&mut chart, report, (y_min, y_max))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// A solid two-pixel line through `points` with its entry in the legend.
pub(crate) fn labelled_line<
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: impl Into<String>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

/// A dashed vertical line at the end of the warmup, if there is one.
fn warmup_line<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    report: &Report,
    (y_min, y_max): (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if report.settings.warmup_ns == 0 {
        return Ok(());
    }
    let x = report.settings.warmup_ns as f64 / 1e9;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x, y_min), (x, y_max)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("end of warmup")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    Ok(())
}

/// (seconds, requests per second) per interval; the report leaves idle intervals out, so a
/// gap goes down to zero and back up instead of drawing a line across it.
fn rate_series(report: &Report, pick: fn(&IntervalInfo) -> u64) -> Vec<(f64, f64)> {
    let interval_ns = report.settings.interval_ns;
    let interval_s = interval_ns as f64 / 1e9;
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut next_ns: Option<u64> = None;
    for i in &report.intervals {
        if let Some(expected) = next_ns.filter(|&n| n != i.start_ns) {
            points.push((expected as f64 / 1e9, 0.0));
            points.push(((i.start_ns - interval_ns) as f64 / 1e9, 0.0));
        }
        points.push((i.start_ns as f64 / 1e9, pick(i) as f64 / interval_s));
        next_ns = Some(i.start_ns + interval_ns);
    }
    points
}

fn throughput_over_time(path: &Path, title: &str, report: &Report) -> Result<()> {
    let interval_s = report.settings.interval_ns as f64 / 1e9;
    let offered = rate_series(report, |i| i.offered);
    let decided = rate_series(report, |i| i.decided);
    let x_max = report
        .intervals
        .last()
        .map_or(1.0, |i| i.start_ns as f64 / 1e9 + interval_s)
        .max(interval_s);
    let target = report.run.target_rate_per_sec;
    let y_max = offered
        .iter()
        .chain(&decided)
        .map(|p| p.1)
        .chain(target)
        .fold(1.0f64, f64::max)
        * 1.15;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Throughput over time: {title}"), ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "seconds since the start (intervals of {interval_s} s)"
        ))
        .y_desc("requests per second")
        .draw()
        .map_err(err)?;
    if let Some(t) = target {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, t), (x_max, t)],
                8,
                4,
                GREEN.stroke_width(2),
            ))
            .map_err(err)?
            .label("target rate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    }
    for (points, color, label) in [
        (offered, BLUE, "offered (submitted)"),
        (decided, RED, "decided"),
    ] {
        labelled_line(&mut chart, points, color, label)?;
    }
    warmup_line(&mut chart, report, (0.0, y_max))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(1e5), "99.999%");
    }

    #[test]
    fn idle_intervals_drop_to_zero() {
        let interval = |start_ns, offered| IntervalInfo {
            start_ns,
            offered,
            decided: offered,
            latency_ns: Default::default(),
            service_ns: Default::default(),
        };
        let mut report: Report = serde_json::from_str(include_str!("../tests/data/report-v1.json"))
            .expect("the sample report parses");
        report.settings.interval_ns = 1_000_000_000;
        report.intervals = vec![
            interval(0, 10),
            interval(1_000_000_000, 20),
            interval(5_000_000_000, 30),
        ];
        assert_eq!(
            rate_series(&report, |i| i.offered),
            [
                (0.0, 10.0),
                (1.0, 20.0),
                (2.0, 0.0),
                (4.0, 0.0),
                (5.0, 30.0)
            ]
        );
    }

    #[test]
    fn spectrum_reaches_the_max() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=100u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let pts = spectrum_points(&h, 100.0);
        assert_eq!(
            pts.first().unwrap(),
            &(1.0, h.value_at_quantile(0.0) as f64 / 1e6)
        );
        assert_eq!(pts.last().unwrap().1, h.max() as f64 / 1e6);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
