//! A view of named weights under a dotted prefix (`pp("model.encoder")`), turning them into device tensors
//! with their shapes checked. The same constructor either loads a tensor from a file's [`TensorMap`] or, for
//! a model about to be trained, initialises it (PyTorch's default rule for that layer, seeded per key) and
//! records it, so a fresh model and a loaded one are built by one code path.

use tinyalign_weights::{TensorMap, WeightsError};

use crate::{Cpu, NnDevice, Tensor1, Tensor2};

/// Errors while building layers from weights.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Config(String),
}

/// How a parameter starts when it is initialised instead of loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// U(−bound, bound): PyTorch's `Linear`/`Conv1d` default with bound = 1/√fan_in.
    Uniform(f32),
    /// N(0, std²).
    Normal(f32),
    Constant(f32),
}

/// Creates parameters for a model that starts from scratch, deterministically: each tensor's values
/// depend only on the seed and its key, never on construction order.
#[derive(Debug)]
pub struct Initializer {
    seed: u64,
    created: std::sync::Mutex<TensorMap>,
}

impl Initializer {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            created: std::sync::Mutex::new(TensorMap::new(format!("initialised (seed {seed})"))),
        }
    }

    fn create(&self, key: &str, shape: &[usize], init: Init) -> Vec<f32> {
        let n: usize = shape.iter().product();
        // splitmix64 seeded by FNV-1a of the key.
        let mut state = key
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64 ^ self.seed, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let mut uniform = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let data: Vec<f32> = match init {
            Init::Uniform(bound) => (0..n)
                .map(|_| ((uniform() * 2.0 - 1.0) * f64::from(bound)) as f32)
                .collect(),
            Init::Normal(std) => (0..n)
                .map(|_| {
                    // Box–Muller; 1 − u keeps the logarithm finite.
                    let (u, v) = (1.0 - uniform(), uniform());
                    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * f64::from(std))
                        as f32
                })
                .collect(),
            Init::Constant(c) => vec![c; n],
        };
        if let Ok(mut created) = self.created.lock() {
            created.insert(
                key.to_string(),
                tinyalign_weights::Tensor::new(shape.to_vec(), data.clone()),
            );
        }
        data
    }

    /// Everything created so far, by key.
    pub fn created(&self) -> TensorMap {
        self.created.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Load(&'a TensorMap),
    Init(&'a Initializer),
}

/// Weights under a key prefix, made into tensors on device `D`.
#[derive(Debug, Clone)]
pub struct Weights<'a, D: NnDevice = Cpu> {
    source: Source<'a>,
    prefix: String,
    dev: D,
}

impl<'a, D: NnDevice> Weights<'a, D> {
    /// Loads every parameter from `map` (a missing or mis-shaped key is an error naming it).
    pub fn new(map: &'a TensorMap, dev: D) -> Self {
        Self {
            source: Source::Load(map),
            prefix: String::new(),
            dev,
        }
    }

    /// Initialises every parameter (for training from scratch).
    pub fn init(initializer: &'a Initializer, dev: D) -> Self {
        Self {
            source: Source::Init(initializer),
            prefix: String::new(),
            dev,
        }
    }

    /// The view under `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            source: self.source,
            prefix: self.key(&name.to_string()),
            dev: self.dev.clone(),
        }
    }

    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The full key of `name` under this view (`key("")` is the prefix with its trailing dot).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether `name` is there to load (always true when initialising).
    pub fn contains(&self, name: &str) -> bool {
        match self.source {
            Source::Load(map) => map.contains(&self.key(name)),
            Source::Init(_) => true,
        }
    }

    /// Host data of `name`, which must have exactly `shape` (loaded only: initialising needs a rule, see
    /// [`Self::param`]).
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, NnError> {
        match self.source {
            Source::Load(map) => Ok(map.get_shaped(&self.key(name), shape)?.data.clone()),
            Source::Init(_) => Err(NnError::Config(format!(
                "{} has no initialisation rule: load it from a file instead",
                self.key(name)
            ))),
        }
    }

    /// Host data of parameter `name`: loaded (shape checked) or initialised by `init`.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, NnError> {
        match self.source {
            Source::Load(_) => self.host(name, shape),
            Source::Init(initializer) => Ok(initializer.create(&self.key(name), shape, init)),
        }
    }

    pub fn tensor1(&self, name: &str, n: usize) -> Result<Tensor1<D>, NnError> {
        Ok(self.dev.tensor_from_vec(self.host(name, &[n])?, (n,)))
    }

    /// A vector parameter, loaded or initialised.
    pub fn param1(&self, name: &str, n: usize, init: Init) -> Result<Tensor1<D>, NnError> {
        Ok(self
            .dev
            .tensor_from_vec(self.param(name, &[n], init)?, (n,)))
    }

    pub fn tensor2(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor2<D>, NnError> {
        Ok(self
            .dev
            .tensor_from_vec(self.host(name, &[rows, cols])?, (rows, cols)))
    }
}
