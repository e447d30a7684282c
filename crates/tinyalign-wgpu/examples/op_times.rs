//! Where decoding time goes on this adapter: each op of one SmolLM2-sized decoding step, 100 times, timed
//! with one readback at the end. `cargo run --release -p tinyalign-wgpu --example op_times`.

use std::time::Instant;

use tinyalign_wgpu::ops::{self, Activation, AttentionShape, MatmulKernel};
use tinyalign_wgpu::{Gpu, GpuMatrix};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new_blocking()?;
    println!("adapter: {}", gpu.adapter_description());
    let time = |name: &str, f: &dyn Fn() -> tinyalign_wgpu::GpuTensor| {
        let t = Instant::now();
        let mut last = f();
        for _ in 1..100 {
            last = f();
        }
        gpu.read_blocking(&last).expect("reads");
        println!("{name:<40} {:8.3} ms", t.elapsed().as_secs_f64() * 10.0);
    };
    let x = gpu.upload(&vec![0.1; 576], 1, 576)?;
    let w = GpuMatrix::from_f32(&gpu, 1536, 576, &vec![0.01; 1536 * 576])?;
    let norm_w = gpu.upload(&vec![1.0; 576], 1, 576)?;
    let k = gpu.upload(&vec![0.1; 100 * 192], 100, 192)?;
    let big = gpu.upload(&vec![0.1; 1536], 1, 1536)?;
    for kernel in [
        MatmulKernel::Tiled,
        MatmulKernel::Vector,
        MatmulKernel::Rows8,
        MatmulKernel::Rows8x4,
    ] {
        time(
            &format!("linear 1×576·(1536×576)ᵀ f32 {kernel:?}"),
            &|| ops::linear_with(&gpu, &x, &w, None, Activation::None, kernel).unwrap(),
        );
    }
    let x64 = gpu.upload(&vec![0.1; 64 * 576], 64, 576)?;
    for kernel in [
        MatmulKernel::Tiled,
        MatmulKernel::Rows8,
        MatmulKernel::Rows8x4,
    ] {
        time(
            &format!("linear 64×576·(1536×576)ᵀ f32 {kernel:?}"),
            &|| ops::linear_with(&gpu, &x64, &w, None, Activation::None, kernel).unwrap(),
        );
    }
    time("rms_norm 1×576", &|| {
        ops::rms_norm(&gpu, &x, &norm_w, 1e-5, 1.0).unwrap()
    });
    time("silu_mul 1×1536", &|| {
        ops::silu_mul(&gpu, &big, &big).unwrap()
    });
    time("add 1×576", &|| ops::add(&gpu, &x, &x).unwrap());
    time("attention 1 query, 9/3 heads, 100 keys", &|| {
        ops::attention(
            &gpu,
            &x,
            &k,
            &k,
            AttentionShape {
                heads: 9,
                kv_heads: 3,
                head_dim: 64,
                valid_keys: 100,
                causal_start: Some(99),
            },
        )
        .unwrap()
    });
    let empty = || gpu.upload(&[0.0], 1, 1).unwrap();
    time("an upload (no op)", &empty);
    Ok(())
}
