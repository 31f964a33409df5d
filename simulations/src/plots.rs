//! SVG plots drawn with plotters: latency CDF (and, with groups, one per group size bucket),
//! delivery ratio over time, bytes per node.
//! (SVG only: PNG output would pull a font rasteriser into the build.)

use std::path::Path;

use plotters::prelude::*;

use crate::error::SimError;
use crate::report::Outcome;

type Res = Result<(), Box<dyn std::error::Error>>;

pub fn write_all(o: &Outcome, dir: &Path) -> Result<(), SimError> {
    let name = &o.summary.scenario;
    let wrap = |file: &str, r: Res| r.map_err(|e| SimError::Plot(file.into(), e.to_string()));
    let mut lat: Vec<f64> = o.deliveries.iter().filter_map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    wrap(
        "latency_cdf.svg",
        latency_cdf(
            &dir.join("latency_cdf.svg"),
            &format!("{name}: delivery latency CDF"),
            &[(String::new(), lat)],
        ),
    )?;
    if let Some(g) = &o.summary.groups {
        let mut series: Vec<(String, Vec<f64>)> = g
            .buckets
            .iter()
            .map(|b| (format!("{} members", b.sizes), Vec::new()))
            .collect();
        let bucket_of: Vec<usize> = o.groups.iter().map(|g| g.bucket).collect();
        for r in &o.deliveries {
            if let (Some(group), Some(l)) = (r.group, r.latency_ms)
                && let Some(s) = bucket_of.get(group).and_then(|&b| series.get_mut(b))
            {
                s.1.push(l);
            }
        }
        series.retain(|s| !s.1.is_empty());
        for s in &mut series {
            s.1.sort_by(f64::total_cmp);
        }
        wrap(
            "group_latency_cdf.svg",
            latency_cdf(
                &dir.join("group_latency_cdf.svg"),
                &format!("{name}: group delivery latency CDF per group size"),
                &series,
            ),
        )?;
    }
    wrap(
        "delivery_ratio.svg",
        ratio(&dir.join("delivery_ratio.svg"), name, &o.ratio_over_time),
    )?;
    let mut bytes: Vec<(u64, u64)> = o.nodes.iter().map(|n| (n.bytes_in, n.bytes_out)).collect();
    bytes.sort_by_key(|b| std::cmp::Reverse(b.0 + b.1));
    wrap(
        "bandwidth.svg",
        bandwidth(&dir.join("bandwidth.svg"), name, &bytes),
    )
}

/// One CDF line per (label, sorted latencies); a single unlabelled series draws no legend.
fn latency_cdf(path: &Path, caption: &str, series: &[(String, Vec<f64>)]) -> Res {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = series
        .iter()
        .filter_map(|s| s.1.last().copied())
        .fold(1.0, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, scheduled send → recipient inbox (ms)")
        .y_desc("fraction of delivered messages")
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (label, sorted)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let n = sorted.len().max(1) as f64;
        let drawn = chart.draw_series(LineSeries::new(
            sorted
                .iter()
                .enumerate()
                .map(|(i, &x)| (x, (i + 1) as f64 / n)),
            &color,
        ))?;
        if !label.is_empty() {
            drawn
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if series.iter().any(|s| !s.0.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn ratio(path: &Path, name: &str, series: &[(f64, f64)]) -> Res {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = series.last().map_or(1.0, |p| p.0).max(0.001);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: delivery ratio over time"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc("time since the timeline started (s)")
        .y_desc("delivered / scheduled so far")
        .draw()?;
    chart.draw_series(LineSeries::new(series.iter().copied(), &RED))?;
    root.present()?;
    Ok(())
}

fn bandwidth(path: &Path, name: &str, bytes: &[(u64, u64)]) -> Res {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let kib = |b: u64| b as f64 / 1024.0;
    let ymax = bytes
        .iter()
        .map(|&(i, o)| kib(i.max(o)))
        .fold(1.0, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: bytes per node (sorted by total)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..bytes.len().max(1) as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("node rank")
        .y_desc("KiB over the run")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            bytes.iter().enumerate().map(|(i, b)| (i as f64, kib(b.0))),
            &BLUE,
        ))?
        .label("in")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            bytes.iter().enumerate().map(|(i, b)| (i as f64, kib(b.1))),
            &RED,
        ))?
        .label("out")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
