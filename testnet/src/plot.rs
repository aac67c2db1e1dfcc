//! `--plot FILE.png`: the distribution of measured latencies as a cumulative curve (share of
//! deliveries done by each time), drawn with `plotters` into a PNG. Text needs a TrueType
//! font: the first of [`FONTS`] found is used; without one the chart is drawn unlabelled.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// Fonts tried for labels, in order.
pub const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> bool {
    for f in FONTS {
        if let Ok(bytes) = std::fs::read(f) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Draws the cumulative distribution of `samples_ms` into `path`.
pub fn cdf(path: &Path, title: &str, samples_ms: &[f64]) -> Result<()> {
    let mut s: Vec<f64> = samples_ms
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    let labels = register_font();
    let max = s[s.len() - 1].max(1.0) * 1.05;
    let n = s.len() as f64;
    let points: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..max, 0.0..1.0)
        .map_err(|e| anyhow!("{e}"))?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("milliseconds")
            .y_desc("share delivered")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
