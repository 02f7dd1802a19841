//! One tensor of a layout: its name in the file, its shape, its role (which decides its storage
//! dtype) and where its values come from, plus the builder the family modules enumerate with.

use crate::rng::{fill_normal, stream_id};
use crate::schedule::ScheduleBuffer;

/// What kind of parameter a tensor is. Storage rules key on this: scaled fp8 scales only
/// `Linear` weights (as ComfyUI's `scaled_fp8_ops` replaces only `Linear`), mixed fp8 keeps
/// `Bias`/`Norm` high precision, integer roles never change dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// An `nn.Linear` weight `[out, in]`.
    Linear,
    /// A convolution kernel `[out, in, kh, kw]` (1×1 included).
    Conv,
    /// A lookup table or learned position table.
    Embedding,
    /// A bias vector (of a Linear, a conv or a norm).
    Bias,
    /// A normalisation scale, initialised near 1.
    Norm,
    /// Any other learned float parameter (`logit_scale`, SD3's `pos_embed`).
    Parameter,
    /// A float buffer that is not learned (noise schedule, EMA decay).
    Buffer,
    /// Integer position ids (`int64`).
    Index,
    /// The EMA update counter (`int32`).
    Counter,
}

impl Role {
    /// Whether the tensor is a learned parameter (what parameter counts count).
    pub(crate) fn is_learned(self) -> bool {
        !matches!(self, Role::Buffer | Role::Index | Role::Counter)
    }

    /// Whether the tensor is a matrix weight (the part fp8 checkpoints narrow).
    pub(crate) fn is_matrix_weight(self) -> bool {
        matches!(self, Role::Linear | Role::Conv)
    }
}

/// A run of consecutive elements taken from one canonical tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Run {
    /// `<component>.<internal name>` of the canonical tensor.
    pub(crate) key: String,
    pub(crate) mean: f32,
    pub(crate) std: f32,
    /// First element taken from the canonical tensor.
    pub(crate) offset: usize,
    /// Number of elements taken.
    pub(crate) len: usize,
}

/// Where a tensor's values come from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Values {
    /// Concatenated runs of canonical tensors (a whole tensor is one run; diffusers' `to_q` is a
    /// row slice of the fused `qkv`; open_clip's `in_proj_weight` is q, k and v end to end).
    Runs(Vec<Run>),
    /// The transpose of a canonical `[rows, cols]` matrix (open_clip's `text_projection`).
    Transposed { run: Run, rows: usize, cols: usize },
    /// Every element equal to one value.
    Constant(f64),
    /// `0, 1, 2, ...` (CLIP's `position_ids`).
    Arange,
    /// An LDM noise-schedule buffer.
    Schedule(ScheduleBuffer),
}

/// One tensor as it will be written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorDef {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) role: Role,
    pub(crate) values: Values,
}

impl TensorDef {
    /// Number of elements.
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The same tensor under another name.
    pub(crate) fn renamed(&self, name: impl Into<String>) -> TensorDef {
        TensorDef {
            name: name.into(),
            ..self.clone()
        }
    }

    /// The same values under another name and shape (element count unchanged).
    pub(crate) fn reshaped(&self, name: impl Into<String>, shape: Vec<usize>) -> TensorDef {
        TensorDef {
            name: name.into(),
            shape,
            ..self.clone()
        }
    }

    /// The canonical run covering this whole tensor, when it is one.
    pub(crate) fn whole_run(&self) -> Option<&Run> {
        match &self.values {
            Values::Runs(runs) if runs.len() == 1 => runs.first(),
            _ => None,
        }
    }

    /// Float values of the tensor (integer roles give their values as floats).
    pub(crate) fn float_values(&self, seed: u64) -> Vec<f32> {
        let mut out = vec![0.0f32; self.numel()];
        match &self.values {
            Values::Runs(runs) => {
                let mut position = 0;
                for run in runs {
                    let end = (position + run.len).min(out.len());
                    let stream = stream_id(seed, &run.key);
                    fill_normal(
                        stream,
                        run.offset,
                        run.mean,
                        run.std,
                        &mut out[position..end],
                    );
                    position = end;
                }
            }
            Values::Transposed { run, rows, cols } => {
                let mut source = vec![0.0f32; rows * cols];
                fill_normal(
                    stream_id(seed, &run.key),
                    run.offset,
                    run.mean,
                    run.std,
                    &mut source,
                );
                for row in 0..*rows {
                    for col in 0..*cols {
                        if let Some(slot) = out.get_mut(col * rows + row) {
                            *slot = source[row * cols + col];
                        }
                    }
                }
            }
            Values::Constant(value) => out.fill(*value as f32),
            Values::Arange => {
                for (index, slot) in out.iter_mut().enumerate() {
                    *slot = index as f32;
                }
            }
            Values::Schedule(buffer) => {
                for (slot, value) in out.iter_mut().zip(buffer.values()) {
                    *slot = value as f32;
                }
            }
        }
        out
    }

    /// Integer values (for `Index`/`Counter` roles).
    pub(crate) fn int_values(&self) -> Vec<i64> {
        match &self.values {
            Values::Arange => (0..self.numel() as i64).collect(),
            Values::Constant(value) => vec![*value as i64; self.numel()],
            _ => vec![0; self.numel()],
        }
    }
}

/// Default value distribution for a role: weights ~N(0, 0.02), norm scales ~N(1, 0.02).
fn default_distribution(role: Role) -> (f32, f32) {
    match role {
        Role::Norm => (1.0, 0.02),
        _ => (0.0, 0.02),
    }
}

/// Collects the canonical tensors of one component (`diffusion_model`, `clip_l`, `vae`...).
///
/// Names pushed here are the component's internal names; the canonical value key is
/// `<component>.<name>`, so every layout of the same component shares values.
pub(crate) struct TensorSet {
    component: &'static str,
    defs: Vec<TensorDef>,
}

impl TensorSet {
    pub(crate) fn new(component: &'static str) -> TensorSet {
        TensorSet {
            component,
            defs: Vec::new(),
        }
    }

    /// Adds a tensor with the role's default distribution.
    pub(crate) fn push(&mut self, name: impl Into<String>, shape: Vec<usize>, role: Role) {
        let (mean, std) = default_distribution(role);
        self.push_distributed(name, shape, role, mean, std);
    }

    /// Adds a tensor with an explicit distribution.
    pub(crate) fn push_distributed(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        role: Role,
        mean: f32,
        std: f32,
    ) {
        let name = name.into();
        let len = shape.iter().product();
        let key = format!("{}.{}", self.component, name);
        let values = Values::Runs(vec![Run {
            key,
            mean,
            std,
            offset: 0,
            len,
        }]);
        self.defs.push(TensorDef {
            name,
            shape,
            role,
            values,
        });
    }

    /// `<prefix>.weight [out, in]` and, when `bias`, `<prefix>.bias [out]`.
    pub(crate) fn linear(&mut self, prefix: &str, out: usize, input: usize, bias: bool) {
        self.push(format!("{prefix}.weight"), vec![out, input], Role::Linear);
        if bias {
            self.push(format!("{prefix}.bias"), vec![out], Role::Bias);
        }
    }

    /// `<prefix>.weight [out, in, k, k]` and `<prefix>.bias [out]`.
    pub(crate) fn conv(&mut self, prefix: &str, out: usize, input: usize, kernel: usize) {
        self.push(
            format!("{prefix}.weight"),
            vec![out, input, kernel, kernel],
            Role::Conv,
        );
        self.push(format!("{prefix}.bias"), vec![out], Role::Bias);
    }

    /// `<prefix>.weight [dim]` (~1) and, when `bias`, `<prefix>.bias [dim]`.
    pub(crate) fn norm(&mut self, prefix: &str, dim: usize, bias: bool) {
        self.push(format!("{prefix}.weight"), vec![dim], Role::Norm);
        if bias {
            self.push(format!("{prefix}.bias"), vec![dim], Role::Bias);
        }
    }

    pub(crate) fn into_defs(self) -> Vec<TensorDef> {
        self.defs
    }
}

/// `(name, shape)` of every tensor of a layout, in layout order.
pub(crate) fn name_shapes(defs: Vec<TensorDef>) -> Vec<(String, Vec<usize>)> {
    defs.into_iter().map(|def| (def.name, def.shape)).collect()
}

/// Total element count of a layout.
pub(crate) fn parameter_count(defs: &[TensorDef]) -> u64 {
    defs.iter()
        .filter(|def| def.role.is_learned())
        .map(|def| def.numel() as u64)
        .sum()
}

/// Looks a canonical tensor up by name.
pub(crate) fn find<'a>(defs: &'a [TensorDef], name: &str) -> Option<&'a TensorDef> {
    defs.iter().find(|def| def.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_matches_canonical() {
        let mut set = TensorSet::new("c");
        set.linear("p", 3, 5, false);
        let defs = set.into_defs();
        let canonical = defs[0].float_values(9);
        let Some(run) = defs[0].whole_run().cloned() else {
            panic!("one run")
        };
        let transposed = TensorDef {
            name: "t".into(),
            shape: vec![5, 3],
            role: Role::Linear,
            values: Values::Transposed {
                run,
                rows: 3,
                cols: 5,
            },
        };
        let values = transposed.float_values(9);
        for row in 0..3 {
            for col in 0..5 {
                assert_eq!(values[col * 3 + row], canonical[row * 5 + col]);
            }
        }
    }
}
