// Shared by every kernel: activations and the flat index of a 2-D dispatch (x ≤ 65535 groups per axis).

const ACT_NONE: u32 = 0u;
const ACT_GELU: u32 = 1u;
const ACT_RELU: u32 = 2u;

// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): WGSL has no erf, and Whisper's GELU is the erf form.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

fn gelu_erf(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}

fn activate(x: f32, act: u32) -> f32 {
    if (act == ACT_GELU) {
        return gelu_erf(x);
    }
    if (act == ACT_RELU) {
        return max(x, 0.0);
    }
    return x;
}

fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}
