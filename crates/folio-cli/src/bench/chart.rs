//! An SVG chart of rehydration time against history length: one line per case, log-log.

use std::path::Path;

use plotters::prelude::*;

use super::CaseResult;
use crate::CliError;

/// Writes the chart of `results` to `path`.
pub fn write_svg(path: &Path, title: &str, results: &[CaseResult]) -> Result<(), CliError> {
    let cases = ["cold-keyframed", "full-replay", "raw-sqlx"];
    let points: Vec<(&str, Vec<(u64, f64)>)> = cases
        .iter()
        .map(|case| {
            let pts = results
                .iter()
                .filter(|r| r.case == *case && r.time.median_ns > 0)
                .map(|r| (r.ops.max(1), r.time.median_ns as f64 / 1e6))
                .collect();
            (*case, pts)
        })
        .collect();
    let xs: Vec<u64> = points.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).collect();
    let ys: Vec<f64> = points.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).collect();
    if xs.is_empty() {
        return Err(CliError::fail("nothing to chart"));
    }
    let (x_min, x_max) = (*xs.iter().min().unwrap_or(&1), *xs.iter().max().unwrap_or(&10));
    let y_min = ys.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-4);
    let y_max = ys.iter().cloned().fold(0.0, f64::max).max(y_min * 10.0);
    let chart_error = |e: &dyn std::fmt::Display| CliError::fail(format!("cannot draw {}: {e}", path.display()));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| chart_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            ((x_min as f64 / 1.5)..(x_max as f64 * 1.5)).log_scale(),
            ((y_min / 2.0)..(y_max * 2.0)).log_scale(),
        )
        .map_err(|e| chart_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("operations in the document's history")
        .y_desc("time to load (ms)")
        .draw()
        .map_err(|e| chart_error(&e))?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(100, 100, 100)];
    for ((case, pts), color) in points.into_iter().zip(colors) {
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, y)| (*x as f64, *y)),
                color.stroke_width(2),
            ))
            .map_err(|e| chart_error(&e))?
            .label(case)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|(x, y)| Circle::new((*x as f64, *y), 3, color.filled())))
            .map_err(|e| chart_error(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| chart_error(&e))?;
    root.present().map_err(|e| chart_error(&e))?;
    Ok(())
}
