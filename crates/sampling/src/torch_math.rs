//! Scalar helpers that reproduce how PyTorch's CPU kernels round: `torch.linspace` (computed
//! from both ends with a fused multiply–add, as GCC compiles torch's AVX2 kernel) and the
//! `scalar / tensor` form Python evaluates as `reciprocal(tensor) * scalar`.

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU.
pub(crate) fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// `torch.linspace(start, end, steps, dtype=torch.float64)` on the CPU.
pub(crate) fn linspace_f64(start: f64, end: f64, steps: usize) -> Vec<f64> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f64;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f64, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f64, end)
                    }
                })
                .collect()
        }
    }
}

/// `scalar / tensor` in Python: `tensor.reciprocal() * scalar` (two roundings).
pub(crate) fn rdiv(scalar: f32, value: f32) -> f32 {
    (1.0 / value) * scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_hits_both_ends_exactly() {
        let values = linspace_f32(0.3, -5.1, 101);
        assert_eq!(values[0], 0.3);
        assert_eq!(values[100], -5.1);
        assert_eq!(linspace_f32(2.0, 3.0, 1), vec![2.0]);
        assert!(linspace_f32(2.0, 3.0, 0).is_empty());
    }

    #[test]
    fn linspace_matches_torch_values() {
        // torch.linspace(0, 1, 7) (float32) on x86-64.
        let expected = [
            0.0f32,
            0.166_666_67,
            0.333_333_34,
            0.5,
            0.666_666_6,
            0.833_333_3,
            1.0,
        ];
        assert_eq!(linspace_f32(0.0, 1.0, 7), expected);
    }
}
