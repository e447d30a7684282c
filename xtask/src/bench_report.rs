//! The bench report's parts: rows, the machine's description, criterion's results, and the written
//! `report.json`, `report.md` and `chart.svg`.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::util;

/// One measured (or skipped) figure, with a peer tool's figure on the same input when there is one.
#[derive(Debug, Clone)]
pub struct Row {
    pub stage: String,
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub note: String,
    pub peer: Option<Peer>,
    pub skipped: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub tool: String,
    pub value: Option<f64>,
    pub error: Option<String>,
}

impl Row {
    pub fn timed(stage: &str, name: &str, value: f64, unit: &str, note: &str) -> Self {
        Self {
            stage: stage.into(),
            name: name.into(),
            value: Some(value),
            unit: unit.into(),
            note: note.into(),
            peer: None,
            skipped: None,
        }
    }

    pub fn skipped(stage: &str, name: &str, reason: &str) -> Self {
        Self {
            stage: stage.into(),
            name: name.into(),
            value: None,
            unit: String::new(),
            note: String::new(),
            peer: None,
            skipped: Some(reason.into()),
        }
    }

    pub fn with_peer(mut self, tool: &str, value: Option<f64>, error: Option<String>) -> Self {
        self.peer = Some(Peer {
            tool: tool.into(),
            value,
            error: if value.is_some() { None } else { error },
        });
        self
    }

    /// How many times faster tinyalign is than the peer (> 1: faster), whichever way the unit points.
    pub fn speed_ratio(&self) -> Option<f64> {
        let (ours, theirs) = (self.value?, self.peer.as_ref()?.value?);
        if ours <= 0.0 || theirs <= 0.0 {
            return None;
        }
        Some(if self.unit.ends_with("/s") {
            ours / theirs
        } else {
            theirs / ours
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "stage": self.stage, "name": self.name, "value": self.value, "unit": self.unit,
            "note": self.note, "skipped": self.skipped,
            "peer": self.peer.as_ref().map(|p| json!({"tool": p.tool, "value": p.value, "error": p.error})),
            "speed_ratio": self.speed_ratio(),
        })
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// CPU model, cores, SIMD level, memory, GPU, OS, compiler and commit.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |names: &[&str]| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            names.contains(&k.trim()).then(|| v.trim().to_string())
        })
    };
    let flags = field(&["flags", "Features"]).unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    // The quantised kernels' VNNI path (tinyalign-quant's `Kernel::Avx2Vnni`) detects the same features.
    let vnni =
        has("avx2") && has("fma") && (has("avx_vnni") || (has("avx512_vnni") && has("avx512vl")));
    let simd = if has("avx512f") && vnni {
        "AVX-512: gemm's AVX-512 kernels (encoder, training), the quantised kernels AVX2 with VNNI, the element-wise ones AVX2"
    } else if has("avx512f") {
        "AVX-512: gemm's AVX-512 kernels (encoder, training), the quantised and element-wise kernels AVX2"
    } else if vnni {
        "AVX2 + FMA, the quantised kernels with VNNI"
    } else if has("avx2") && has("fma") {
        "AVX2 + FMA"
    } else if has("asimd") {
        "NEON (asimd): the portable kernels run"
    } else if cfg!(target_arch = "x86_64") {
        "no AVX2: the portable kernels run"
    } else {
        "unknown: the portable kernels run"
    };
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
            Some(
                line.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .unwrap_or_else(|| std::env::consts::OS.into());
    let gpu = command_line(
        "nvidia-smi",
        &["--query-gpu=name,memory.total", "--format=csv,noheader"],
    )
    .unwrap_or_else(|| "none (no nvidia-smi)".into());
    let root = util::root();
    let root = root.to_string_lossy();
    let commit =
        command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = command_line(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_some();
    json!({
        "cpu": field(&["model name", "Model", "Hardware"]).unwrap_or_else(|| std::env::consts::ARCH.into()),
        "arch": std::env::consts::ARCH,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "simd": simd,
        "memory": memory,
        "gpu": gpu,
        "os": os,
        "rustc": command_line("rustc", &["-V"]).unwrap_or_default(),
        "commit": format!("{commit}{}", if dirty { " (with uncommitted changes)" } else { "" }),
    })
}

/// Criterion's results written since `since` (`target/criterion/**/new/{benchmark,estimates}.json`): the
/// median time, and the throughput criterion was told (FLOPs, tokens or samples per iteration).
pub fn criterion_rows(since: SystemTime) -> Result<Vec<Row>> {
    let mut found = Vec::new();
    walk(&util::root().join("target/criterion"), &mut found);
    let mut rows = Vec::new();
    for dir in found {
        let fresh = std::fs::metadata(dir.join("estimates.json"))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            continue;
        }
        let read = |name: &str| -> Result<Value> {
            let path = dir.join(name);
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            serde_json::from_str(&text).with_context(|| path.display().to_string())
        };
        let (benchmark, estimates) = (read("benchmark.json")?, read("estimates.json")?);
        let Some(ns) = estimates["median"]["point_estimate"].as_f64() else {
            continue;
        };
        let group = benchmark["group_id"].as_str().unwrap_or("?");
        let function = benchmark["function_id"].as_str().unwrap_or("?");
        let bytes = benchmark["throughput"]["Bytes"].as_f64();
        let per_iteration = benchmark["throughput"]["Elements"].as_f64().or(bytes);
        let note = per_iteration
            .map(|n| {
                format!(
                    "{:.3e} {}",
                    n / (ns * 1e-9),
                    throughput_unit(group, bytes.is_some())
                )
            })
            .unwrap_or_default();
        let mut row = Row::timed(
            &format!("criterion: {group}"),
            function,
            ns / 1e6,
            "ms",
            &note,
        );
        row.peer = None;
        rows.push((per_iteration.map(|n| n / (ns * 1e-9)), row));
    }
    rows.sort_by(|a, b| (&a.1.stage, &a.1.name).cmp(&(&b.1.stage, &b.1.name)));
    // The training steps' shares of this machine's GEMM peak, all measured in this run.
    let rate = |name: &str| {
        rows.iter()
            .find(|(_, r)| r.name == name)
            .and_then(|(rate, _)| *rate)
    };
    let mut out: Vec<Row> = rows.iter().map(|(_, r)| r.clone()).collect();
    for (group, step) in [
        ("bridgeformer", "train_step_b16_5s"),
        ("ctc_bridgeformer", "ctc_train_step_b16_5s"),
    ] {
        if let (Some(step_rate), Some(peak)) = (rate(step), rate("gemm_peak_1024")) {
            out.push(Row::timed(
                &format!("criterion: {group}"),
                &format!("{step}, share of the GEMM peak"),
                100.0 * step_rate / peak,
                "%",
                "matmul FLOPs of forward + backward per second against a 1024³ f32 GEMM",
            ));
        }
    }
    Ok(out)
}

/// What a group's criterion throughput counts (benches/main.rs sets it per group).
fn throughput_unit(group: &str, bytes: bool) -> &'static str {
    if bytes {
        "B/s (memory streamed)"
    } else if group.starts_with("frontend") || group.starts_with("epoch") {
        "× real time (audio seconds per second)"
    } else if group.starts_with("smollm2") {
        "tokens/s"
    } else {
        "FLOP/s (matmul FLOPs)"
    }
}

fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") && path.join("benchmark.json").exists()
            {
                found.push(path);
            } else if path.file_name().is_none_or(|n| n != "report") {
                walk(&path, found);
            }
        }
    }
}

fn figure(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "—".into(),
        Some(v) if v >= 100.0 => format!("{v:.0} {unit}"),
        Some(v) if v >= 1.0 => format!("{v:.2} {unit}"),
        Some(v) => format!("{v:.4} {unit}"),
    }
}

pub fn write_report(out: &Path, machine: &Value, rows: &[Row], quick: bool) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let report = json!({
        "machine": machine,
        "quick": quick,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    let mut md = String::from("# tinyalign bench report\n\n| machine | |\n|---|---|\n");
    for key in [
        "cpu", "arch", "cores", "simd", "memory", "gpu", "os", "rustc", "commit",
    ] {
        let value = match &machine[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        md.push_str(&format!("| {key} | {value} |\n"));
    }
    md.push_str(&format!(
        "\n{}Peers run on the same input in the same command, interleaved with ours; the speed ratio is \
         how many times faster tinyalign is (> 1: faster). Model loading is left out on both sides.\n\n\
         | stage | what | tinyalign | peer | peer's figure | speed ratio | note |\n|---|---|---|---|---|---|---|\n",
        if quick { "`--quick`: fewer rounds and shorter criterion runs. " } else { "" }
    ));
    for row in rows {
        let (peer, peer_value) = match &row.peer {
            Some(p) => (
                p.tool.clone(),
                p.error
                    .clone()
                    .map_or_else(|| figure(p.value, &row.unit), |e| format!("skipped: {e}")),
            ),
            None => ("".into(), "".into()),
        };
        let ours = match &row.skipped {
            Some(reason) => format!("skipped: {reason}"),
            None => figure(row.value, &row.unit),
        };
        let ratio = row
            .speed_ratio()
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {ours} | {peer} | {peer_value} | {ratio} | {} |\n",
            row.stage,
            row.name,
            row.note.replace('|', "/")
        ));
    }
    md.push_str("\n![speed against the peers](chart.svg)\n");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).with_context(|| out.join(name).display().to_string())
    };
    write(
        "report.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write("report.md", md.as_bytes())?;
    write("chart.svg", chart_svg(rows).as_bytes())
}

/// Horizontal bars of the speed ratios, a line at 1 (parity).
fn chart_svg(rows: &[Row]) -> String {
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((format!("{}: {}", r.stage, r.name), r.speed_ratio()?)))
        .collect();
    let (label_w, bar_w, row_h) = (420.0, 360.0, 22.0);
    let height = 40.0 + row_h * bars.len().max(1) as f64;
    let scale = bars.iter().map(|b| b.1).fold(2.0_f64, f64::max);
    let x = |ratio: f64| label_w + bar_w * ratio / scale;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"18\">speed against the peer tool (× faster; the line is parity)</text>\n",
        w = label_w + bar_w + 60.0
    );
    if bars.is_empty() {
        svg.push_str("<text x=\"10\" y=\"44\">no peer ran on this machine</text>\n");
    }
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let colour = if *ratio >= 1.0 { "#4a8" } else { "#d65" };
        let label = label.replace('&', "&amp;").replace('<', "&lt;");
        svg.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{label}</text>\n\
             <rect x=\"{label_w}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{colour}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.0}\">{ratio:.2}×</text>\n",
            label_w - 6.0,
            y + 14.0,
            y + 3.0,
            x(*ratio) - label_w,
            row_h - 6.0,
            x(*ratio) + 4.0,
            y + 14.0
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"26\" y2=\"{1:.0}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\n</svg>\n",
        x(1.0),
        height - 8.0
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_ratios_point_the_same_way_for_rates_and_times() {
        let rate = Row::timed("llm", "decode", 90.0, "tokens/s", "").with_peer(
            "llama.cpp",
            Some(100.0),
            None,
        );
        assert!((rate.speed_ratio().unwrap() - 0.9).abs() < 1e-12);
        let time = Row::timed("transcribe", "clip", 0.5, "s", "").with_peer("fw", Some(1.0), None);
        assert!((time.speed_ratio().unwrap() - 2.0).abs() < 1e-12);
        let missing =
            Row::timed("x", "y", 1.0, "s", "").with_peer("p", None, Some("not installed".into()));
        assert_eq!(missing.speed_ratio(), None);
        assert_eq!(
            missing.peer.unwrap().error.as_deref(),
            Some("not installed")
        );
    }

    #[test]
    fn the_report_names_skipped_rows_and_draws_each_ratio() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let rows = vec![
            Row::timed("llm", "decode", 90.0, "tokens/s", "").with_peer(
                "llama.cpp",
                Some(100.0),
                None,
            ),
            Row::skipped("personalisation", "5 min", "left out by --quick"),
        ];
        write_report(&dir, &json!({"cpu": "test"}), &rows, true).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("| llm | decode | 90.00 tokens/s | llama.cpp | 100 tokens/s | 0.90× |"),
            "{md}"
        );
        assert!(md.contains("skipped: left out by --quick"), "{md}");
        let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
        assert!(svg.contains("0.90×") && svg.ends_with("</svg>\n"));
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["rows"][0]["speed_ratio"], json!(0.9));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
