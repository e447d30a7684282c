//! `loss.svg`: training loss (every step) and validation loss (every validation) against the step, drawn as
//! plain SVG so it opens in any browser.

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
    let (w, h, pad) = (720.0, 400.0, 50.0);
    let all = train.iter().chain(&valid);
    let max_step = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let max_loss = all.clone().map(|p| p.1).fold(1e-9, f64::max);
    let x = |s: f64| pad + (w - 2.0 * pad) * s / max_step;
    let y = |l: f64| h - pad - (h - 2.0 * pad) * l / max_loss;
    let path = |points: &[(f64, f64)]| {
        points
            .iter()
            .map(|&(s, l)| format!("{:.1},{:.1}", x(s), y(l)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{r}" y="{lb}" text-anchor="end">step {max_step:.0}</text><text x="5" y="{pad}">{max_loss:.3}</text><text x="5" y="{b}">0</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="{tp}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="{vp}"/>
<text x="{lx}" y="20" fill="#1f77b4">train loss</text><text x="{lx}" y="36" fill="#d62728">validation loss</text>
</svg>
"##,
        b = h - pad,
        r = w - pad,
        lb = h - pad + 20.0,
        lx = w - 160.0,
        tp = path(&train),
        vp = path(&valid),
    );
    tinyalign_data::write_atomic(out, svg.as_bytes()).map_err(|e| TrainError::Io(e.to_string()))
}
