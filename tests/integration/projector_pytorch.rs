//! Two real (small) trained projectors against the PyTorch reference `tests/fixtures/projector/
//! tinyalign_projector.py`, whose outputs `make_projector_fixtures.py` committed: a pooled BridgeFormer and
//! an MLP with a CTC head, on inputs both sides generate with the same integer recipe.

use tinyalign_projector::{Projector, ProjectorManifest};
use tinyalign_weights::st::read_safetensors;

use crate::common::{fixture, load_npy, max_abs_diff};

/// `make_projector_fixtures.py`'s `lcg_values`: an integer LCG, each value `(state >> 8) / 2²⁴ · 2 − 1`
/// (exact in f32).
fn lcg_values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn load(name: &str) -> Projector {
    let dir = fixture(&format!("projector/{name}"));
    let manifest = ProjectorManifest::read(&dir).unwrap();
    let bytes = std::fs::read(dir.join("projector.safetensors")).unwrap();
    let weights = read_safetensors(&bytes, name).unwrap();
    Projector::load(manifest.projector, &weights, tinyalign_nn::cpu()).unwrap()
}

const LENGTHS: [usize; 2] = [150, 30];

/// Outputs (RMS ≈ 0.13) within 1e-5 of PyTorch's.
#[test]
fn pooled_bridgeformer_matches_pytorch() {
    let p = load("pooled");
    for frames in LENGTHS {
        let features = lcg_values(frames * 384, frames as u32);
        let (out, tokens) = p.project(&features).unwrap();
        let want = load_npy(&format!("projector/pooled.{frames}.npy"));
        assert_eq!([tokens, 576], want.shape[..], "{frames} frames");
        let (diff, at) = max_abs_diff(&out, &want.data);
        eprintln!("pooled, {frames} frames: max |Δ| = {diff:.2e}");
        assert!(diff <= 1e-5, "{frames} frames: {diff} at {at}");
    }
}

/// Per-frame outputs within 1e-5, and the CTC head's logits over 8 classes and the blank within 1e-5 of
/// the largest logit.
#[test]
fn ctc_mlp_matches_pytorch() {
    let p = load("ctc");
    let rows: Vec<f32> = lcg_values(8 * 576, 99).iter().map(|v| v * 0.17).collect();
    let table = p.ctc_table_subset(&rows).unwrap();
    for frames in LENGTHS {
        let features = lcg_values(frames * 384, frames as u32);
        let (out, logits, n) = p.project_ctc(&features, &table).unwrap();
        let want = load_npy(&format!("projector/ctc.{frames}.npy"));
        assert_eq!([n, 576], want.shape[..], "{frames} frames");
        let (diff, at) = max_abs_diff(&out, &want.data);
        eprintln!("ctc, {frames} frames: max |Δ| = {diff:.2e}");
        assert!(diff <= 1e-5, "{frames} frames: {diff} at {at}");
        let want = load_npy(&format!("projector/ctc.{frames}.logits.npy"));
        assert_eq!([n, 9], want.shape[..]);
        let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (diff, at) = max_abs_diff(&logits, &want.data);
        assert!(
            diff <= 1e-5 * scale,
            "{frames} frames, logits: {diff} at {at}"
        );
    }
}
