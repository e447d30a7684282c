//! Plain-SVG line charts that open in any browser: `loss.svg` (training loss every step, validation loss
//! every validation, against the step) and the comparison charts of `tinyalign compare`.

use std::path::Path;

use crate::TrainError;

pub fn write_loss_svg(metrics: &Path, out: &Path) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(metrics)
        .map_err(|e| TrainError::Io(format!("{}: {e}", metrics.display())))?;
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let Some(step) = v["step"].as_f64() else {
            continue;
        };
        if let Some(loss) = v["loss"].as_f64() {
            train.push((step, loss));
        }
        if let Some(loss) = v["valid_loss"].as_f64() {
            valid.push((step, loss));
        }
    }
    let svg = line_chart_svg(
        "step",
        "loss",
        &[("train loss", train, 1.0), ("validation loss", valid, 2.0)],
    );
    tinyalign_data::write_atomic(out, svg.as_bytes()).map_err(|e| TrainError::Io(e.to_string()))
}

/// One line of a chart: its legend name, `(x, y)` points and stroke width.
pub type Series<'a> = (&'a str, Vec<(f64, f64)>, f64);

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A line chart of `(name, points, stroke width)` series on shared axes starting at 0 (y may go below 0
/// when a series does), with the axis maxima written at the ends and a legend.
pub fn line_chart_svg(x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h, pad) = (720.0, 400.0, 50.0);
    let all = || series.iter().flat_map(|s| s.1.iter());
    let max_x = all().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = all().map(|p| p.1).fold(1e-9, f64::max);
    let min_y = all().map(|p| p.1).fold(0.0, f64::min);
    let x = |v: f64| pad + (w - 2.0 * pad) * v / max_x;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - min_y) / (max_y - min_y);
    let mut body = String::new();
    for (i, (name, points, width)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line = points
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b)))
            .collect::<Vec<_>>()
            .join(" ");
        // A dot per point too, so a one-point series (a run's final WER) shows.
        if points.len() < 40 {
            for &(a, b) in points {
                body.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n",
                    x(a),
                    y(b)
                ));
            }
        }
        body.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" points=\"{line}\"/>\n\
             <text x=\"{lx}\" y=\"{ly}\" fill=\"{colour}\">{name}</text>\n",
            lx = w - 230.0,
            ly = 20 + 16 * i,
        ));
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{r}" y="{lb}" text-anchor="end">{x_label} {max_x:.0}</text><text x="5" y="{top}">{y_label} {max_y:.3}</text><text x="5" y="{b}">{min_y:.3}</text>
{body}</svg>
"##,
        b = h - pad,
        r = w - pad,
        lb = h - pad + 20.0,
        top = pad - 8.0,
    )
}
