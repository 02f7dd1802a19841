//! `Weights`: a model's view of one planner-loaded component — tensors by internal name under a
//! prefix (as candle's `VarBuilder`), widened to the compute dtype on the compute device when a
//! layer asks for them, so fp8, scaled fp8, GGUF and streamed weights look alike to every model.

use std::fmt;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Shape, Tensor};
use kiln_runtime::{HeldTensor, WeightStore};

use crate::error::{ModelError, Result};

/// One weight's place in its store for the kernels' packed forms ([`Weights::packed_cache`]).
pub struct PackedSlot<'a> {
    store: &'a WeightStore,
    name: String,
}

impl kiln_kernels::PackedWeightCache for PackedSlot<'_> {
    fn packed(
        &self,
        pack: &mut dyn FnMut(bool) -> Option<kiln_kernels::PackedWeight>,
    ) -> Option<Arc<kiln_kernels::PackedWeight>> {
        let keep = self.store.keeps_prepared();
        self.store
            .prepared(&self.name, || pack(keep), |packed| packed.bytes() as u64)
    }
}

/// A prefix into a shared [`WeightStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Weights {
    store: Arc<WeightStore>,
    prefix: String,
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weights")
            .field("component", &self.store.component())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Weights {
    /// The root of a loaded component.
    pub fn new(store: Arc<WeightStore>) -> Self {
        Weights {
            store,
            prefix: String::new(),
        }
    }

    /// The same weights one level down: `w.pp("input_blocks").pp(1)`.
    pub fn pp(&self, part: impl fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            part.to_string()
        } else {
            format!("{}.{}", self.prefix, part)
        };
        Weights {
            store: self.store.clone(),
            prefix,
        }
    }

    /// The full internal name of `leaf` under this prefix.
    pub fn path(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{}", self.prefix, leaf)
        }
    }

    /// Whether the component has `leaf` under this prefix.
    pub fn contains(&self, leaf: &str) -> bool {
        self.store.held(&self.path(leaf)).is_ok()
    }

    /// The tensor `leaf`, in the compute dtype on the compute device.
    pub fn get(&self, leaf: &str) -> Result<Tensor> {
        Ok(self.store.get(&self.path(leaf))?)
    }

    /// The tensor `leaf` for a CPU kernel that widens weights per call: as held when it is a
    /// native float tensor on the compute device (a 16-bit weight of an f32 model stays
    /// 16-bit), otherwise as [`get`](Self::get) gives it.
    pub fn get_unwidened(&self, leaf: &str) -> Result<Tensor> {
        Ok(self.store.get_unwidened(&self.path(leaf))?)
    }

    /// The values of `leaf` in place in its file's memory map, for the CPU kernels, when the
    /// store uses it from there ([`HeldTensor::Mapped`]); `None` otherwise.
    pub fn mapped_values(&self, leaf: &str) -> Result<Option<kiln_kernels::WeightValues<'_>>> {
        Ok(self.held(leaf)?.mapped_values().map(|values| match values {
            kiln_runtime::MappedValues::F32(v) => kiln_kernels::WeightValues::F32(v),
            kiln_runtime::MappedValues::F16(v) => kiln_kernels::WeightValues::F16(v),
            kiln_runtime::MappedValues::BF16(v) => kiln_kernels::WeightValues::BF16(v),
        }))
    }

    /// Where the CPU kernels keep `leaf`'s packed bf16 form: in the store, while the component
    /// is in use ([`WeightStore::prepared`]), so a sampling run packs each weight once.
    pub fn packed_cache(&self, leaf: &str) -> PackedSlot<'_> {
        PackedSlot {
            store: &self.store,
            name: self.path(leaf),
        }
    }

    /// Marks the whole component in use until the guard drops (its weights used in place from
    /// their files are mapped ahead, and let go afterwards): see [`WeightStore::in_use`].
    pub fn in_use(&self) -> kiln_runtime::InUse<'_> {
        self.store.in_use()
    }

    /// How the CPU kernels multiply this component's matrix products.
    pub fn products(&self) -> kiln_kernels::Products {
        if self.store.bf16_products() {
            kiln_kernels::Products::Bf16
        } else {
            kiln_kernels::Products::AsInput
        }
    }

    /// The tensor `leaf`, checked to have `shape`.
    pub fn get_shaped(&self, leaf: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let tensor = self.get(leaf)?;
        if tensor.shape() != &shape {
            return Err(ModelError::WeightShape {
                name: self.path(leaf),
                actual: tensor.dims().to_vec(),
                expected: format!("{:?}", shape.dims()),
            });
        }
        Ok(tensor)
    }

    /// The stored shape of `leaf` without widening it.
    pub fn shape(&self, leaf: &str) -> Result<Shape> {
        Ok(self.held(leaf)?.shape().clone())
    }

    /// The tensor as held (for layers that multiply GGUF blocks directly).
    pub fn held(&self, leaf: &str) -> Result<&HeldTensor> {
        Ok(self.store.held(&self.path(leaf))?)
    }

    /// The GGUF blocks of `leaf`, when it is held quantised.
    pub fn quantized(&self, leaf: &str) -> Option<Arc<QTensor>> {
        self.held(leaf)
            .ok()
            .and_then(|held| held.as_quantized().cloned())
    }

    /// The dtype activations are computed in.
    pub fn dtype(&self) -> DType {
        self.store.compute_dtype()
    }

    /// The compute device.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// The number of numbered children under `part` (`count("input_blocks")` → 12), found by
    /// probing `part.N.*` names.
    pub fn count_children(&self, part: &str) -> usize {
        let prefix = format!("{}.", self.path(part));
        let mut max: Option<usize> = None;
        for name in self.store.names() {
            if let Some(rest) = name.strip_prefix(&prefix) {
                if let Some(index) = rest.split('.').next().and_then(|n| n.parse::<usize>().ok()) {
                    max = Some(max.map_or(index, |m| m.max(index)));
                }
            }
        }
        max.map_or(0, |m| m + 1)
    }
}
