//! One SVG line chart per scale curve, drawn with `plotters` (SVG backend only: the viewer lays
//! out the text).

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

/// A named line: `(x, y)` points in x order.
pub struct Series {
    /// The legend's label.
    pub label: String,
    /// The points; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
}

/// What one chart shows.
pub struct Chart<'a> {
    /// The caption.
    pub title: &'a str,
    /// The x axis's label (the x axis is logarithmic: N, S and sizes grow by factors).
    pub x: &'a str,
    /// The y axis's label (linear, from 0).
    pub y: &'a str,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Writes `chart` with `series` to `path` as SVG.
pub fn write(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let finite = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0)
            .collect()
    };
    let all: Vec<(f64, f64)> = series.iter().flat_map(finite).collect();
    if all.is_empty() {
        return Err(anyhow!("{}: no points to plot", chart.title));
    }
    let (x_min, x_max) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
        (lo.min(*x), hi.max(*x))
    });
    let y_max = all.iter().map(|(_, y)| *y).fold(0.0, f64::max);
    // Room around the ends and above the lines for the legend, and a y range even when every
    // value is 0.
    let x_range = (x_min / 1.5)..(x_max * 1.5);
    let y_range = 0.0..(y_max * 1.3).max(1e-9);
    let failed = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range.log_scale(), y_range)
        .map_err(|e| failed(&e))?;
    ctx.configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(*y))
        .draw()
        .map_err(|e| failed(&e))?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points = finite(s);
        ctx.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        ctx.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )
        .map_err(|e| failed(&e))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

/// Axis numbers without a fraction when whole or from 10 up (`1`, `1000`, not `1000.0`).
fn number(v: f64) -> String {
    if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_the_labels_and_one_path_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let series = [
            Series {
                label: "one shard".into(),
                points: vec![(1.0, 100.0), (10.0, 90.0), (100.0, f64::NAN)],
            },
            Series {
                label: "spread".into(),
                points: vec![(1.0, 80.0), (10.0, 70.0)],
            },
        ];
        let chart = Chart {
            title: "req/s by N",
            x: "installed shards",
            y: "requests/s",
        };
        write(&path, &chart, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "req/s by N",
            "installed shards",
            "requests/s",
            "one shard",
            "spread",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 2);
        let empty = [Series {
            label: "none".into(),
            points: vec![(1.0, f64::NAN)],
        }];
        assert!(write(&dir.path().join("e.svg"), &chart, &empty).is_err());
    }

    #[test]
    fn axis_numbers_drop_needless_fractions() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(1000.0), "1000");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(2.5), "2.5");
    }
}
