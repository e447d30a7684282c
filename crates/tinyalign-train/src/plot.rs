//! Plain-SVG line charts that open in any browser: `loss.svg` (training loss every step, validation loss
//! every validation, against the step) and the comparison charts of `tinyalign compare`.

use std::path::Path;

use crate::TrainError;

pub fn write_loss_svg(metrics: &Path, out: &Path) -> Result<(), TrainError> {
    let lines = crate::read_metrics(metrics)?;
    let train = lines
        .iter()
        .map(|m| (m.step as f64, f64::from(m.loss)))
        .collect();
    let valid = lines
        .iter()
        .filter_map(|m| Some((m.step as f64, f64::from(m.valid_loss?))))
        .collect();
    let svg = line_chart_svg(
        "step",
        "loss",
        &[("train loss", train, 1.0), ("validation loss", valid, 2.0)],
    );
    tinyalign_data::write_atomic(out, svg.as_bytes()).map_err(TrainError::from)
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

/// One bar: its label, value and, when known, an interval drawn as an error bar.
pub type Bar<'a> = (&'a str, f64, Option<[f64; 2]>);

/// A bar chart with error bars (an evaluation's rows), the axis from 0 to the largest value or interval end.
pub fn bar_chart_svg(y_label: &str, bars: &[Bar<'_>]) -> String {
    let (w, h, pad, bottom) = (720.0, 400.0, 50.0, 90.0);
    let max_y = bars
        .iter()
        .map(|b| b.2.map_or(b.1, |[_, hi]| hi.max(b.1)))
        .fold(1e-9, f64::max);
    let y = |v: f64| h - bottom - (h - bottom - pad) * v.max(0.0) / max_y;
    let slot = (w - 2.0 * pad) / bars.len().max(1) as f64;
    let mut body = String::new();
    for (i, (name, value, interval)) in bars.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let (left, centre) = (
            pad + slot * i as f64 + slot * 0.15,
            pad + slot * (i as f64 + 0.5),
        );
        body.push_str(&format!(
            "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"/>\n\
             <text x=\"{centre:.1}\" y=\"{vy:.1}\" text-anchor=\"middle\">{value:.3}</text>\n\
             <text x=\"{centre:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" transform=\"rotate(-30 {centre:.1} {ly:.1})\">{name}</text>\n",
            top = y(*value),
            bw = slot * 0.7,
            bh = y(0.0) - y(*value),
            vy = y(*value) - 4.0,
            ly = h - bottom + 16.0,
        ));
        if let Some([lo, hi]) = interval {
            body.push_str(&format!(
                "<line x1=\"{centre:.1}\" y1=\"{a:.1}\" x2=\"{centre:.1}\" y2=\"{b:.1}\" stroke=\"black\"/>\n\
                 <line x1=\"{l:.1}\" y1=\"{a:.1}\" x2=\"{r:.1}\" y2=\"{a:.1}\" stroke=\"black\"/>\n\
                 <line x1=\"{l:.1}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\" stroke=\"black\"/>\n",
                a = y(*lo),
                b = y(*hi),
                l = centre - 6.0,
                r = centre + 6.0,
            ));
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="5" y="{top}">{y_label} (max {max_y:.3})</text>
{body}</svg>
"##,
        b = h - bottom,
        r = w - pad,
        top = pad - 8.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_interval_end() {
        let svg = bar_chart_svg(
            "WER",
            &[
                ("whisper", 0.36, Some([0.2, 0.5])),
                ("projector", 1.0, None),
            ],
        );
        // The plot spans y 50..310; the projector's bar (1.0 of a 1.0 maximum) fills it.
        assert!(
            svg.contains("y=\"50.0\" width=\"217.0\" height=\"260.0\""),
            "{svg}"
        );
        // The whisper bar: 0.36 → height 93.6; its interval ends at 0.2 → y 258.0 and 0.5 → y 180.0.
        assert!(svg.contains("height=\"93.6\""));
        assert!(svg.contains("y1=\"258.0\" x2=\"205.0\" y2=\"180.0\""));
        assert!(svg.contains(">whisper</text>") && svg.contains(">projector</text>"));
    }
}
