//! The device, its pipeline cache and buffer pool, and GPU tensors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wgpu::util::DeviceExt;

use crate::GpuError;

/// Buffers of finished op outputs, by byte size, for the next op of that size.
type Pool = Mutex<HashMap<u64, Vec<wgpu::Buffer>>>;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A row-major `rows × cols` f32 matrix on the GPU. Op outputs go back to the pool when dropped.
#[derive(Debug)]
pub struct GpuTensor {
    buffer: Option<wgpu::Buffer>,
    rows: usize,
    cols: usize,
    pool: Option<Arc<Pool>>,
}

impl GpuTensor {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("a live tensor has its buffer")
    }

    /// The same data seen as `rows × cols` (row-major, so e.g. k consecutive frames become one row).
    pub fn reshaped(mut self, rows: usize, cols: usize) -> Result<Self, GpuError> {
        if rows * cols != self.len() {
            return Err(GpuError::Shape(format!(
                "cannot view {}×{} as {rows}×{cols}",
                self.rows, self.cols
            )));
        }
        self.rows = rows;
        self.cols = cols;
        Ok(self)
    }
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        if let (Some(pool), Some(buffer)) = (&self.pool, self.buffer.take()) {
            // Safe to hand on at once: later ops are recorded after every op that used this buffer, and
            // uploads never write into pooled buffers.
            if let Ok(mut pool) = pool.lock() {
                pool.entry(buffer.size()).or_default().push(buffer);
            }
        }
    }
}

/// A wgpu device with what the ops share.
#[derive(Debug)]
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    pending: Mutex<Option<wgpu::CommandEncoder>>,
    pool: Arc<Pool>,
    /// Bound where a kernel declares a buffer the current call does not use (a bias-free matmul).
    dummy: wgpu::Buffer,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing that holds these locks can leave the data half-updated, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// The first high-performance adapter wgpu finds (on Linux without a GPU: Mesa's llvmpipe), with the
    /// adapter's own limits (the defaults cap storage bindings at 128 MiB).
    // On wasm32 wgpu's handles are not Send (one thread there); natively the pool's Arc is shared.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn new() -> Result<Self, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // Vulkan / Metal / DX12 / WebGPU unless WGPU_BACKEND says otherwise: the GL backend adds nothing for
        // compute and probes for a display server first.
        descriptor.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tinyalign"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        Ok(Self {
            device,
            queue,
            info,
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
            pool: Arc::new(Mutex::new(HashMap::new())),
            dummy,
        })
    }

    /// [`Gpu::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self, GpuError> {
        pollster::block_on(Self::new())
    }

    /// One adapter for the whole process, made on first use (native only): for test suites and benches,
    /// where every case would otherwise open its own device. A failed start is returned, not remembered, so
    /// a later call tries again.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shared_blocking() -> Result<&'static Gpu, GpuError> {
        static SHARED: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
        if let Some(gpu) = SHARED.get() {
            return Ok(gpu);
        }
        let gpu = Self::new_blocking()?;
        // Two threads may both open one; the loser's is dropped here.
        Ok(SHARED.get_or_init(|| gpu))
    }

    /// Adapter name, backend and device type, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn adapter_description(&self) -> String {
        // Browsers may hide the adapter's name.
        let name = if self.info.name.is_empty() {
            "unnamed adapter"
        } else {
            &self.info.name
        };
        format!(
            "{name} ({:?}, {:?})",
            self.info.backend, self.info.device_type
        )
    }

    /// Whether the adapter is a CPU rasteriser (llvmpipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest storage buffer one binding may hold (the adapter's limit, which this device requested).
    pub fn max_binding_bytes(&self) -> u64 {
        self.device.limits().max_storage_buffer_binding_size
    }

    /// The largest buffer this device may create.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.device.limits().max_buffer_size
    }

    pub(crate) fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    /// Uploads `rows × cols` values (not pooled: it may outlive every op).
    pub fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<GpuTensor, GpuError> {
        if data.len() != rows * cols {
            return Err(GpuError::Shape(format!(
                "{} values do not make a {rows}×{cols} matrix",
                data.len()
            )));
        }
        Ok(GpuTensor {
            buffer: Some(self.upload_words(bytes_of_f32(data))),
            rows,
            cols,
            pool: None,
        })
    }

    /// A buffer holding `bytes` (at least 4 of them, so that nothing binds an empty buffer).
    pub(crate) fn upload_words(&self, mut bytes: Vec<u8>) -> wgpu::Buffer {
        bytes.resize(bytes.len().max(4).next_multiple_of(4), 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &bytes,
                usage: STORAGE,
            })
    }

    pub(crate) fn upload_u32(&self, values: &[u32]) -> wgpu::Buffer {
        self.upload_words(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// An op output (`rows × cols`, contents undefined until an op writes it), from the pool when it can.
    pub(crate) fn output(&self, rows: usize, cols: usize) -> GpuTensor {
        let size = ((rows * cols * 4).max(4) as u64).next_multiple_of(4);
        let reused = lock(&self.pool).get_mut(&size).and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: STORAGE,
                mapped_at_creation: false,
            })
        });
        GpuTensor {
            buffer: Some(buffer),
            rows,
            cols,
            pool: Some(self.pool.clone()),
        }
    }

    /// A zero-filled tensor that is not pooled (a KV cache).
    pub(crate) fn zeros(&self, rows: usize, cols: usize) -> GpuTensor {
        GpuTensor {
            buffer: Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: ((rows * cols * 4).max(4) as u64).next_multiple_of(4),
                usage: STORAGE,
                mapped_at_creation: false,
            })),
            rows,
            cols,
            pool: None,
        }
    }

    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut pending = lock(&self.pending);
        let encoder = pending.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(encoder)
    }

    /// Records a dispatch of `entry` of the kernel built by `source` (compiled once per `key`). Binding 0 is
    /// the uniform `params` (padded to 16 bytes), then `buffers` in order.
    pub(crate) fn dispatch(
        &self,
        key: &str,
        entry: &str,
        source: impl FnOnce() -> String,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let pipeline = {
            let mut pipelines = lock(&self.pipelines);
            let cache_key = format!("{key}:{entry}");
            pipelines
                .entry(cache_key)
                .or_insert_with(|| {
                    let module = self
                        .device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(key),
                            source: wgpu::ShaderSource::Wgsl(source().into()),
                        });
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(key),
                            layout: None,
                            module: &module,
                            entry_point: Some(entry),
                            compilation_options: Default::default(),
                            cache: None,
                        })
                })
                .clone()
        };
        let mut words = params.to_vec();
        words.resize(params.len().max(4).next_multiple_of(4), 0);
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &words
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect::<Vec<_>>(),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        self.with_encoder(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(key),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// Records a copy of `rows` rows from `src` (from row `src_row`) into `dst` (from row `dst_row`); both
    /// must have the same row width.
    pub fn copy_rows(
        &self,
        src: &GpuTensor,
        src_row: usize,
        dst: &GpuTensor,
        dst_row: usize,
        rows: usize,
    ) -> Result<(), GpuError> {
        if src.cols != dst.cols || src_row + rows > src.rows || dst_row + rows > dst.rows {
            return Err(GpuError::Shape(format!(
                "copying rows {src_row}..{} of a {}×{} tensor to rows {dst_row}..{} of a {}×{} one",
                src_row + rows,
                src.rows,
                src.cols,
                dst_row + rows,
                dst.rows,
                dst.cols
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        let row_bytes = (src.cols * 4) as u64;
        self.with_encoder(|encoder| {
            encoder.copy_buffer_to_buffer(
                src.buffer(),
                src_row as u64 * row_bytes,
                dst.buffer(),
                dst_row as u64 * row_bytes,
                rows as u64 * row_bytes,
            )
        });
        Ok(())
    }

    /// Submits what is pending and reads rows `start..start + rows` of `t` back.
    pub async fn read_rows(
        &self,
        t: &GpuTensor,
        start: usize,
        rows: usize,
    ) -> Result<Vec<f32>, GpuError> {
        if start + rows > t.rows {
            return Err(GpuError::Shape(format!(
                "reading rows {start}..{} of a tensor with {}",
                start + rows,
                t.rows
            )));
        }
        let bytes = (rows * t.cols * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            // Submit under the lock: another thread's read must not submit later work of this encoder's
            // ops first.
            let mut pending = lock(&self.pending);
            let mut encoder = pending.take().unwrap_or_else(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
            });
            encoder.copy_buffer_to_buffer(
                t.buffer(),
                (start * t.cols * 4) as u64,
                &staging,
                0,
                bytes,
            );
            self.queue.submit([encoder.finish()]);
        }
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        receiver
            .await
            .map_err(|_| GpuError::Readback("the device was lost".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let values = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        staging.unmap();
        Ok(values)
    }

    pub async fn read(&self, t: &GpuTensor) -> Result<Vec<f32>, GpuError> {
        self.read_rows(t, 0, t.rows).await
    }

    /// [`Gpu::read`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, t: &GpuTensor) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.read(t))
    }
}

pub(crate) fn bytes_of_f32(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Workgroups for `n` items at `per_group` each, spread over x and y so neither exceeds 65,535 (the
/// kernels rebuild the flat index with `flat_group`).
pub(crate) fn grid(n: usize, per_group: usize) -> [u32; 3] {
    let groups = n.div_ceil(per_group).max(1) as u32;
    let x = groups.min(65_535);
    [x, groups.div_ceil(x), 1]
}
