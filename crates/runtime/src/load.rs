//! `WeightStore`: one component of a checkpoint loaded as its plan says, tensor by tensor, by
//! internal name, with key transforms applied and every tensor in a form its device can hold.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, Component, ComponentKind, KeySource, KeyTransform};
use kiln_weights::{
    f32_to_e4m3fn_saturating, f32_to_e5m2_saturating, FileFormat, StorageDType, TensorInfo,
    WeightFile,
};

use crate::capability::{BackendKind, CapabilityProfile};
use crate::held::{hold_blocks, hold_target, HeldTensor, HoldTarget};
use crate::kept::{Kept, KeptForms};
use crate::plan::{ComponentPlan, HeldAs, LoadMode, Widening};
use crate::RuntimeError;

/// A component in use ([`WeightStore::in_use`]); dropping it lets the store's mapped pages go.
#[must_use = "the component counts as in use only while the guard lives"]
#[derive(Debug)]
pub struct InUse<'a> {
    store: &'a WeightStore,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.store.kept.end_use();
        self.store.release_pages();
        crate::heap::return_free_heap();
    }
}

/// Kept derived forms ([`WeightStore::prepared`]) may take this share of the memory available
/// when a component goes into use: 1/2.
const KEPT_SHARE_OF_AVAILABLE: u64 = 2;

/// Bytes of tensors loaded between two releases of the files' resident pages.
const RELEASE_EVERY_BYTES: u64 = 128 << 20;

/// The weights of one component, held per its [`ComponentPlan`].
///
/// Resident components hold every tensor on the compute device. Streamed ones (`--lowvram`,
/// `--novram`, or a part larger than the device's budget) keep tensors on the device, in load
/// order, up to the plan's [`ComponentPlan::resident_budget_bytes`], and hold the rest in host
/// memory, already in the form the device holds; [`WeightStore::get`] copies such a tensor over
/// and widens it there when its layer runs, so a part larger than device memory still runs.
#[derive(Debug)]
pub struct WeightStore {
    component: ComponentKind,
    compute: DType,
    /// Matrix products in bf16 with f32 sums around f32 activations (the plan's
    /// [`ComponentPlan::bf16_products`]).
    bf16_products: bool,
    device: Device,
    load_mode: LoadMode,
    tensors: BTreeMap<String, HeldTensor>,
    /// Tensors held in host memory and copied to the device per use (streamed parts only).
    in_host: BTreeSet<String>,
    /// Forms the layers derive from weights and keep while the component is in use.
    kept: KeptForms,
}

/// Refuses to put `dtype` on a device whose profile cannot hold it: the invariant of this crate.
fn ensure_holdable(
    tensor: &str,
    held: HeldAs,
    profile: &CapabilityProfile,
) -> Result<(), RuntimeError> {
    let holdable = match held {
        HeldAs::Dtype(dtype) => profile.can_hold_candle(dtype),
        HeldAs::Quantized(g) => profile.can_hold(StorageDType::Gguf(g)),
    };
    if holdable {
        Ok(())
    } else {
        Err(RuntimeError::CannotHold {
            tensor: tensor.to_string(),
            dtype: held.to_string(),
            profile: profile.name.clone(),
        })
    }
}

/// Applies a key-map transform to a host tensor.
fn transform(tensor: Tensor, how: KeyTransform, name: &str) -> Result<Tensor, RuntimeError> {
    let shape_error = || RuntimeError::TransformShape {
        tensor: name.to_string(),
        transform: format!("{how:?}"),
        shape: tensor.dims().to_vec(),
    };
    let candle = RuntimeError::candle(format!("tensor `{name}`: applying {how:?}"));
    match how {
        KeyTransform::Identity => Ok(tensor),
        KeyTransform::SliceRows { part, parts } => {
            let rows = tensor.dims().first().copied().ok_or_else(shape_error)?;
            if parts == 0 || part >= parts || rows % parts != 0 {
                return Err(shape_error());
            }
            let size = rows / parts;
            tensor.narrow(0, part * size, size).map_err(candle)
        }
        KeyTransform::LinearToConv1x1 => match *tensor.dims() {
            [out, inp] => tensor.reshape((out, inp, 1, 1)).map_err(candle),
            [_, _, 1, 1] => Ok(tensor),
            _ => Err(shape_error()),
        },
        KeyTransform::Transpose => {
            if tensor.rank() != 2 {
                return Err(shape_error());
            }
            tensor.t().and_then(|t| t.contiguous()).map_err(candle)
        }
        KeyTransform::SwapHalves => {
            let rows = tensor.dims().first().copied().ok_or_else(shape_error)?;
            if rows % 2 != 0 {
                return Err(shape_error());
            }
            let half = rows / 2;
            tensor
                .narrow(0, half, half)
                .and_then(|second| {
                    let first = tensor.narrow(0, 0, half)?;
                    Tensor::cat(&[&second, &first], 0)
                })
                .map_err(candle)
        }
        // The parts were joined when they were read (see `LoadContext::assemble`).
        KeyTransform::ConcatRows => Ok(tensor),
    }
}

/// The fp8 codes of a stored tensor in `format`: its own bytes when it is stored in that format,
/// else decoded to f32 and re-encoded (saturating, so an outlier clamps instead of becoming NaN).
fn fp8_codes(
    file: &WeightFile,
    info: &TensorInfo,
    format: StorageDType,
    name: &str,
) -> Result<Vec<u8>, RuntimeError> {
    let weights = |source| RuntimeError::Weights {
        tensor: name.to_string(),
        source,
    };
    if info.dtype == format {
        return Ok(file.raw_bytes(&info.name).map_err(weights)?.into_owned());
    }
    let encode = match format {
        StorageDType::F8E4M3 => f32_to_e4m3fn_saturating,
        StorageDType::F8E5M2 => f32_to_e5m2_saturating,
        other => {
            return Err(RuntimeError::UnsupportedTensorDType {
                tensor: name.to_string(),
                dtype: other,
            })
        }
    };
    let values = file.to_f32_vec(&info.name).map_err(weights)?;
    Ok(values.into_iter().map(encode).collect())
}

/// Where city96's GGUF converter records the real shape of a tensor it stored flattened.
const GGUF_ORIG_SHAPE: &str = "comfy.gguf.orig_shape.";

/// The logical shape of a stored tensor: its stored shape, except for GGUF tensors whose real
/// shape is recorded in `comfy.gguf.orig_shape.<name>` (which must hold the same elements).
fn logical_shape(file: &WeightFile, info: &TensorInfo) -> Result<Vec<usize>, RuntimeError> {
    if file.format() != FileFormat::Gguf {
        return Ok(info.shape.clone());
    }
    let Some(recorded) = file
        .metadata()
        .get(&format!("{GGUF_ORIG_SHAPE}{}", info.name))
    else {
        return Ok(info.shape.clone());
    };
    let bad = || RuntimeError::LogicalShape {
        file: file.path().to_path_buf(),
        tensor: info.name.clone(),
        recorded: recorded.clone(),
        stored: info.shape.clone(),
    };
    let inner = recorded
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(bad)?;
    let shape = inner
        .split(',')
        .map(|dim| dim.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    let elements = |dims: &[usize]| dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match (elements(&shape), elements(&info.shape)) {
        (Some(logical), Some(stored)) if logical == stored && !shape.is_empty() => Ok(shape),
        _ => Err(bad()),
    }
}

/// The per-tensor scale of a scaled-fp8 weight (`X.weight` → `X.scale_weight`), if the key map has
/// one.
fn scale_for(
    name: &str,
    keys: &BTreeMap<String, KeySource>,
    files: &[WeightFile],
) -> Result<Option<f32>, RuntimeError> {
    let Some(stem) = name.strip_suffix("weight") else {
        return Ok(None);
    };
    let Some(source) = keys.get(&format!("{stem}scale_weight")) else {
        return Ok(None);
    };
    let file = files
        .get(source.file)
        .ok_or_else(|| RuntimeError::FileIndexOutOfRange {
            tensor: name.to_string(),
            file: source.file,
            files: files.len(),
        })?;
    let values = file
        .to_f32_vec(&source.name)
        .map_err(|source| RuntimeError::Weights {
            tensor: name.to_string(),
            source,
        })?;
    Ok(values.first().copied())
}

/// What loading one tensor needs to know besides the tensor itself.
struct LoadContext<'a> {
    plan: &'a ComponentPlan,
    profile: &'a CapabilityProfile,
    /// Where held tensors live: the device when resident, the host when streamed.
    home: &'a Device,
    files: &'a [WeightFile],
    keys: &'a BTreeMap<String, KeySource>,
    /// The plan forces fp8 storage on a float file (`UNETLoader`'s `weight_dtype`), so float
    /// matrices are converted to it. In a file that is fp8 itself, the tensors it keeps in
    /// bf16/f32 (SD3's `pos_embed` and patch-embedding conv, norms) stay as stored, as ComfyUI
    /// loads them.
    forces_fp8_matrices: bool,
    /// A resident CPU plan: float tensors stored as they are held are used in place from the
    /// file's memory map ([`HeldTensor::Mapped`]) instead of copied.
    maps_in_place: bool,
}

impl LoadContext<'_> {
    /// The stored tensors an internal tensor is read from, in order.
    fn parts<'f>(
        &'f self,
        name: &str,
        source: &KeySource,
    ) -> Result<Vec<(&'f WeightFile, &'f TensorInfo)>, RuntimeError> {
        source
            .tensors()
            .map(|(index, stored)| {
                let file =
                    self.files
                        .get(index)
                        .ok_or_else(|| RuntimeError::FileIndexOutOfRange {
                            tensor: name.to_string(),
                            file: index,
                            files: self.files.len(),
                        })?;
                let info = file
                    .get(stored)
                    .ok_or_else(|| RuntimeError::TensorMissing {
                        component: self.plan.component,
                        name: format!("{name} (stored as `{stored}`)"),
                    })?;
                Ok((file, info))
            })
            .collect()
    }

    /// Reads every part with `read` (host tensors in the held element form), joins them along
    /// dimension 0 when the key concatenates, and applies the key's transform.
    fn assemble(
        &self,
        name: &str,
        source: &KeySource,
        parts: &[(&WeightFile, &TensorInfo)],
        read: impl Fn(&WeightFile, &TensorInfo) -> Result<Tensor, RuntimeError>,
    ) -> Result<Tensor, RuntimeError> {
        let mut tensors = parts
            .iter()
            .map(|(file, info)| read(file, info))
            .collect::<Result<Vec<_>, _>>()?;
        let joined = if tensors.len() == 1 {
            tensors.remove(0)
        } else {
            let shapes = || {
                parts
                    .iter()
                    .flat_map(|(_, info)| info.shape.clone())
                    .collect()
            };
            if tensors.iter().any(|t| t.rank() == 0) {
                return Err(RuntimeError::TransformShape {
                    tensor: name.to_string(),
                    transform: format!("{:?}", source.transform),
                    shape: shapes(),
                });
            }
            Tensor::cat(&tensors, 0).map_err(|_| RuntimeError::TransformShape {
                tensor: name.to_string(),
                transform: format!("{:?}", source.transform),
                shape: shapes(),
            })?
        };
        transform(joined, source.transform, name)
    }

    /// Every fp8 matrix weight of a scaled-fp8 component must have its `scale_weight` (ComfyUI
    /// would silently use 1.0 and produce a wrong image); checked before anything is loaded.
    fn check_scales(&self) -> Result<(), RuntimeError> {
        for (name, source) in self.keys {
            let Some(stem) = name.strip_suffix("weight") else {
                continue;
            };
            if stem.ends_with("scale_") || self.keys.contains_key(&format!("{stem}scale_weight")) {
                continue;
            }
            for (file, info) in self.parts(name, source)? {
                if info.dtype.is_fp8() && info.shape.len() == 2 {
                    let stored_stem = info.name.strip_suffix("weight").unwrap_or(&info.name);
                    return Err(RuntimeError::ScaleMissing {
                        file: file.path().to_path_buf(),
                        tensor: info.name.clone(),
                        scale: format!("{stored_stem}scale_weight"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The tensor in place in its file's map, when this plan maps tensors and this one is a
    /// single stored float tensor of `dtype`, untransformed, in its logical shape and aligned.
    fn mapped(
        &self,
        source: &KeySource,
        parts: &[(&WeightFile, &TensorInfo)],
        dtype: DType,
    ) -> Result<Option<HeldTensor>, RuntimeError> {
        let [(file, info)] = parts else {
            return Ok(None);
        };
        let stored_as_held = info.dtype.candle_dtype() == Some(dtype)
            && matches!(dtype, DType::F32 | DType::F16 | DType::BF16);
        if !self.maps_in_place
            || source.transform != KeyTransform::Identity
            || !stored_as_held
            || logical_shape(file, info)? != info.shape
        {
            return Ok(None);
        }
        let Some(bytes) = file.mapped(&info.name) else {
            return Ok(None);
        };
        let held = HeldTensor::Mapped {
            bytes,
            dtype,
            shape: info.shape.as_slice().into(),
        };
        // A misaligned tensor (possible in hand-made files) is copied instead.
        Ok(held.mapped_values().is_some().then_some(held))
    }

    fn load(&self, name: &str, source: &KeySource) -> Result<HeldTensor, RuntimeError> {
        let parts = self.parts(name, source)?;
        let Some((file, info)) = parts.first().copied() else {
            return Err(RuntimeError::TensorMissing {
                component: self.plan.component,
                name: name.to_string(),
            });
        };
        let converts_to_storage = info.shape.len() >= 2 && self.forces_fp8_matrices;
        let target = hold_target(
            info.dtype,
            converts_to_storage,
            self.plan.storage_dtype,
            self.plan.compute_dtype,
            self.profile,
        )
        .ok_or_else(|| RuntimeError::UnsupportedTensorDType {
            tensor: name.to_string(),
            dtype: info.dtype,
        })?;
        ensure_holdable(name, target.held_as(), self.profile)?;
        let weights = |source| RuntimeError::Weights {
            tensor: name.to_string(),
            source,
        };
        let candle = |what: &str| RuntimeError::candle(format!("tensor `{name}`: {what}"));
        let scale = || -> Result<Option<f32>, RuntimeError> {
            if self.plan.widening == Widening::ScaledFp8 {
                scale_for(name, self.keys, self.files)
            } else {
                Ok(None)
            }
        };
        let fp8_codes_tensor = |format: StorageDType| {
            move |file: &WeightFile, info: &TensorInfo| {
                let codes = fp8_codes(file, info, format, name)?;
                Tensor::from_vec(codes, info.shape.as_slice(), &Device::Cpu)
                    .map_err(RuntimeError::candle(format!("tensor `{name}`: fp8 codes")))
            }
        };
        match target {
            HoldTarget::Native(dtype) => {
                if let Some(mapped) = self.mapped(source, &parts, dtype)? {
                    return Ok(mapped);
                }
                let host = self.assemble(name, source, &parts, |file, info| {
                    let shape = logical_shape(file, info)?;
                    file.load(&info.name, dtype, &Device::Cpu)
                        .map_err(weights)?
                        .reshape(shape)
                        .map_err(candle("reshaping to the logical shape"))
                })?;
                let tensor = host.to_device(self.home).map_err(candle("upload"))?;
                Ok(HeldTensor::Native(tensor))
            }
            HoldTarget::Fp8Bytes(format) => {
                let codes = self.assemble(name, source, &parts, fp8_codes_tensor(format))?;
                let shape = codes.shape().clone();
                let flat = codes
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<u8>())
                    .map_err(candle("reading fp8 codes"))?;
                HeldTensor::fp8_bytes(flat, format, shape, scale()?, self.home)
            }
            HoldTarget::Fp8Native => {
                let codes =
                    self.assemble(name, source, &parts, fp8_codes_tensor(StorageDType::F8E4M3))?;
                let shape = codes.shape().clone();
                let flat = codes
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<u8>())
                    .map_err(candle("reading fp8 codes"))?;
                let tensor =
                    Tensor::from_raw_buffer(&flat, DType::F8E4M3, shape.dims(), &Device::Cpu)
                        .and_then(|t| t.to_device(self.home))
                        .map_err(candle("uploading f8e4m3"))?;
                Ok(HeldTensor::Fp8Native {
                    tensor,
                    scale: scale()?,
                })
            }
            HoldTarget::Quantized(_) => {
                // GGUF blocks cannot be sliced, transposed or joined without dequantising.
                if source.transform != KeyTransform::Identity || parts.len() != 1 {
                    return Err(RuntimeError::TransformShape {
                        tensor: name.to_string(),
                        transform: format!("{:?}", source.transform),
                        shape: info.shape.clone(),
                    });
                }
                let shape = logical_shape(file, info)?;
                let q = file
                    .load_quantized(&info.name, self.home)
                    .map_err(weights)?;
                hold_blocks(q, &shape)
            }
        }
    }
}

impl WeightStore {
    /// Loads every tensor of `component` (its key map indexes `files`) as `plan` says, for a device
    /// described by `profile`, onto `device` (resident) or host memory (streamed).
    ///
    /// `profile` decides the held forms, `device` is where they go: tests run a simulated Metal
    /// profile on the CPU and still get fp8 as `U8` bytes. The plan is checked against the profile
    /// first, and every tensor again before it is placed.
    pub fn from_files(
        files: &[WeightFile],
        component: &Component,
        plan: &ComponentPlan,
        profile: &CapabilityProfile,
        device: &Device,
    ) -> Result<WeightStore, RuntimeError> {
        plan.check(profile)?;
        let home = match plan.load_mode {
            LoadMode::Resident => device.clone(),
            LoadMode::Streamed => Device::Cpu,
        };
        let file_is_fp8 = component.scaled_fp8.is_some()
            || crate::dtype_rules::dominant_storage(component).is_fp8();
        let context = LoadContext {
            plan,
            profile,
            home: &home,
            files,
            keys: &component.keys,
            forces_fp8_matrices: plan.storage_dtype.is_fp8() && !file_is_fp8,
            maps_in_place: profile.backend == BackendKind::Cpu
                && plan.load_mode == LoadMode::Resident
                && device.is_cpu(),
        };
        if component.scaled_fp8.is_some() && plan.widening == Widening::ScaledFp8 {
            context.check_scales()?;
        }
        let mut tensors = BTreeMap::new();
        let mut in_host = BTreeSet::new();
        let mut resident = 0u64;
        // Every held tensor is a copy: the files' pages are let go as loading goes, so they
        // never count in the process's memory next to the copies.
        let mut loaded_since_release = 0u64;
        for (name, source) in &component.keys {
            let mut held = context.load(name, source)?;
            loaded_since_release += held.bytes();
            if loaded_since_release >= RELEASE_EVERY_BYTES {
                files.iter().for_each(WeightFile::release_pages);
                loaded_since_release = 0;
            }
            if plan.load_mode == LoadMode::Streamed {
                // ComfyUI's partial load: what fits the budget moves to the device once.
                let bytes = held.bytes();
                if resident.saturating_add(bytes) <= plan.resident_budget_bytes {
                    held = held.to_device(device)?;
                    resident += bytes;
                } else {
                    in_host.insert(name.clone());
                }
            }
            tensors.insert(name.clone(), held);
        }
        files.iter().for_each(WeightFile::release_pages);
        Ok(WeightStore {
            component: plan.component,
            compute: plan.compute_dtype,
            bf16_products: plan.bf16_products,
            device: device.clone(),
            load_mode: plan.load_mode,
            tensors,
            in_host,
            kept: KeptForms::default(),
        })
    }

    /// Loads `plan.component` of `checkpoint` (see [`from_files`](Self::from_files)).
    pub fn load(
        checkpoint: &Checkpoint,
        plan: &ComponentPlan,
        profile: &CapabilityProfile,
        device: &Device,
    ) -> Result<WeightStore, RuntimeError> {
        let component = checkpoint.detection().component(plan.component).ok_or(
            RuntimeError::ComponentMissing {
                component: plan.component,
            },
        )?;
        WeightStore::from_files(checkpoint.files(), component, plan, profile, device)
    }

    /// A resident store of tensors already in memory (all held natively, converted to
    /// `compute` on `device`): for random-weight benchmarks and model unit tests.
    pub fn from_tensors(
        component: ComponentKind,
        compute: DType,
        device: &Device,
        tensors: BTreeMap<String, Tensor>,
    ) -> Result<WeightStore, RuntimeError> {
        let mut held = BTreeMap::new();
        for (name, tensor) in tensors {
            let tensor = tensor
                .to_device(device)
                .and_then(|t| t.to_dtype(compute))
                .map_err(RuntimeError::candle("placing an in-memory weight"))?;
            held.insert(name, HeldTensor::Native(tensor));
        }
        Ok(WeightStore {
            component,
            compute,
            bf16_products: false,
            device: device.clone(),
            load_mode: LoadMode::Resident,
            tensors: held,
            in_host: BTreeSet::new(),
            kept: KeptForms::default(),
        })
    }

    /// A copy in which each tensor of `replacements` (internal name → new value) is held
    /// natively: in its former native dtype when it was held natively, otherwise in the compute
    /// dtype, placed where the original was (the compute device, or host memory when streamed).
    /// Every other tensor is shared with `self`. Used to merge LoRA deltas into weights.
    /// Fails on a name the store does not hold or a shape that differs from the original.
    pub fn with_replaced(
        &self,
        replacements: BTreeMap<String, Tensor>,
    ) -> Result<WeightStore, RuntimeError> {
        let mut tensors = self.tensors.clone();
        for (name, value) in replacements {
            let old = self.held(&name)?;
            if value.shape() != old.shape() {
                return Err(RuntimeError::TransformShape {
                    tensor: name,
                    transform: "replacement".to_string(),
                    shape: value.dims().to_vec(),
                });
            }
            // A 16-bit weight held for an f32 computation on the CPU stands in for ComfyUI's
            // f32 copy there: its merged value stays f32, as ComfyUI's does.
            let native = match old {
                HeldTensor::Native(tensor) => Some(tensor.dtype()),
                HeldTensor::Mapped { dtype, .. } => Some(*dtype),
                _ => None,
            };
            let dtype = match native {
                Some(DType::F16 | DType::BF16)
                    if self.compute == DType::F32 && old.device().is_cpu() =>
                {
                    DType::F32
                }
                Some(dtype) => dtype,
                None => self.compute,
            };
            let placed = value
                .to_device(&old.device())
                .and_then(|t| t.to_dtype(dtype))
                .map_err(RuntimeError::candle(format!("replacing weight `{name}`")))?;
            tensors.insert(name, HeldTensor::Native(placed));
        }
        Ok(WeightStore {
            component: self.component,
            compute: self.compute,
            bf16_products: self.bf16_products,
            device: self.device.clone(),
            load_mode: self.load_mode,
            tensors,
            in_host: self.in_host.clone(),
            kept: KeptForms::default(),
        })
    }

    /// The compute device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Which component this is.
    pub fn component(&self) -> ComponentKind {
        self.component
    }

    /// The dtype [`get`](Self::get) returns.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// Resident or streamed.
    pub fn load_mode(&self) -> LoadMode {
        self.load_mode
    }

    /// The internal names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor as held.
    pub fn held(&self, name: &str) -> Result<&HeldTensor, RuntimeError> {
        self.tensors
            .get(name)
            .ok_or_else(|| RuntimeError::TensorMissing {
                component: self.component,
                name: name.to_string(),
            })
    }

    /// The tensor in the compute dtype on the component's device. A streamed tensor is copied
    /// there in its held (8-bit, quantised or native) form and widened there, so the transfer
    /// moves the fewest bytes; the copy is dropped with the returned tensor.
    pub fn get(&self, name: &str) -> Result<Tensor, RuntimeError> {
        self.fetch(name, &self.device)
    }

    /// The tensor for a kernel that widens its weight per call (kiln-kernels' CPU convolution and
    /// linear layer): the held tensor itself when it is a native float tensor in place on the
    /// compute device, so a 16-bit weight of an f32 computation is never copied out wider;
    /// otherwise [`get`](Self::get).
    pub fn get_unwidened(&self, name: &str) -> Result<Tensor, RuntimeError> {
        match self.held(name)? {
            HeldTensor::Native(tensor)
                if tensor.dtype().is_float()
                    && tensor.device().same_device(&self.device)
                    && !self.in_host.contains(name) =>
            {
                Ok(tensor.clone())
            }
            _ => self.get(name),
        }
    }

    /// Marks the component in use until the returned guard drops: the pages of its tensors
    /// used in place from their files are mapped ahead in bulk, and let go when the guard drops
    /// (the component idles in the page cache, not in the process's memory). Free heap memory
    /// is given back to the system at both ends, so what the allocator keeps for reuse while
    /// the component runs does not outlive it (`heap.rs`).
    pub fn in_use(&self) -> InUse<'_> {
        crate::heap::return_free_heap();
        self.populate();
        self.kept
            .begin_use(|| crate::host::available_memory() / KEPT_SHARE_OF_AVAILABLE);
        InUse { store: self }
    }

    /// A form derived from tensor `name` by `build` (a weight packed for a CPU kernel, say),
    /// kept while the component is in use so later calls in the same run reuse it: the first
    /// call builds it, the last [`InUse`] guard lets it go. Outside use it is built for the
    /// caller alone, as it is for a streamed component. When `name` is used in place from its
    /// file, its pages are let go once the form is kept (the form stands in for it; a later
    /// read faults them back in). Forms are kept up to half the memory available when the
    /// component went into use (`bytes` sizes each); past that they are built per call. `None`
    /// when `build` gives nothing.
    pub fn prepared<T: std::any::Any + Send + Sync>(
        &self,
        name: &str,
        build: impl FnOnce() -> Option<T>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Option<std::sync::Arc<T>> {
        if !self.keeps_prepared() {
            return build().map(std::sync::Arc::new);
        }
        match self.kept.get_or_build(name, build, bytes) {
            Kept::Found(form) => Some(form),
            Kept::Built(form) => {
                if let Some(held) = self.tensors.get(name) {
                    held.release_pages();
                }
                Some(form)
            }
            Kept::Unkept(form) => form,
        }
    }

    /// Whether [`prepared`](Self::prepared) would keep a form now (the component is in use and
    /// resident; the memory budget is checked when the form is offered). A streamed component
    /// is one that memory cannot hold whole: keeping a derived form of every weight would hold
    /// it whole after all (and off the page cache's reclaim).
    pub fn keeps_prepared(&self) -> bool {
        self.load_mode == LoadMode::Resident && self.kept.in_use()
    }

    /// Forms kept by [`prepared`](Self::prepared) now.
    pub fn prepared_count(&self) -> usize {
        self.kept.count()
    }

    /// Lets go of the resident pages of the tensors used in place from their files, when the
    /// component goes idle (the next use reads them back from the page cache); tensors the store
    /// owns are kept.
    pub fn release_pages(&self) {
        self.tensors.values().for_each(HeldTensor::release_pages);
    }

    /// Maps the pages of the tensors used in place from their files ahead of use, in one call
    /// per tensor instead of a fault per page.
    pub fn populate(&self) {
        self.tensors.values().for_each(HeldTensor::populate);
    }

    /// Whether matrix products multiply in bf16 (f32 sums) around f32 activations.
    pub fn bf16_products(&self) -> bool {
        self.bf16_products
    }

    /// The tensor in the compute dtype on `device`: the held form is moved, then widened there.
    pub fn fetch(&self, name: &str, device: &Device) -> Result<Tensor, RuntimeError> {
        let held = self.held(name)?;
        if held.device().same_device(device) && !self.in_host.contains(name) {
            held.widen(self.compute)
        } else {
            held.to_device(device)?.widen(self.compute)
        }
    }

    /// True when `name` waits in host memory and is copied to the device each time it is used.
    pub fn is_streamed(&self, name: &str) -> bool {
        self.in_host.contains(name)
    }

    /// Bytes held on the compute device (for a streamed part: the share kept there by its
    /// resident budget).
    pub fn resident_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|(name, _)| !self.in_host.contains(*name))
            .map(|(_, held)| held.bytes())
            .fold(0, u64::saturating_add)
    }

    /// Bytes held in host memory waiting to be streamed.
    pub fn streamed_bytes(&self) -> u64 {
        self.held_bytes() - self.resident_bytes()
    }

    /// Bytes of every held tensor, wherever it is.
    pub fn held_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(HeldTensor::bytes)
            .fold(0, u64::saturating_add)
    }
}
