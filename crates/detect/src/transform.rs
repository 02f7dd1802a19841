//! What each [`KeyTransform`] does to shapes and, on the host, to values: the reference the
//! device loaders follow.

use crate::KeyTransform;

impl KeyTransform {
    /// The internal tensor's shape, given the stored shapes of its sources in order; `None` when
    /// the stored shapes do not fit the transform.
    pub fn apply_to_shape(self, sources: &[&[u64]]) -> Option<Vec<u64>> {
        let first = *sources.first()?;
        match self {
            Self::Identity => Some(first.to_vec()),
            Self::SliceRows { part, parts } => {
                let rows = *first.first()?;
                let parts = parts as u64;
                if parts == 0 || part as u64 >= parts || rows % parts != 0 {
                    return None;
                }
                let mut shape = first.to_vec();
                shape[0] = rows / parts;
                Some(shape)
            }
            Self::LinearToConv1x1 => match first {
                [out, inp] => Some(vec![*out, *inp, 1, 1]),
                [_, _, 1, 1] => Some(first.to_vec()),
                _ => None,
            },
            Self::Transpose => match first {
                [rows, cols] => Some(vec![*cols, *rows]),
                _ => None,
            },
            Self::SwapHalves => (first.first()? % 2 == 0).then(|| first.to_vec()),
            Self::ConcatRows => {
                let tail = first.get(1..)?;
                let mut rows = 0u64;
                for shape in sources {
                    if shape.get(1..)? != tail {
                        return None;
                    }
                    rows = rows.checked_add(*shape.first()?)?;
                }
                let mut shape = first.to_vec();
                shape[0] = rows;
                Some(shape)
            }
        }
    }

    /// The internal tensor's values, given each source's stored shape and row-major values in
    /// order; `None` when they do not fit the transform.
    pub fn apply_to_values(self, sources: &[(&[u64], &[f32])]) -> Option<Vec<f32>> {
        let shapes: Vec<&[u64]> = sources.iter().map(|(shape, _)| *shape).collect();
        let out_shape = self.apply_to_shape(&shapes)?;
        for (shape, values) in sources {
            if crate::state_dict::elements(shape) != values.len() as u64 {
                return None;
            }
        }
        let (shape, values) = *sources.first()?;
        let out = match self {
            Self::Identity | Self::LinearToConv1x1 => values.to_vec(),
            Self::SliceRows { part, parts } => {
                let len = values.len() / parts;
                values.get(part * len..(part + 1) * len)?.to_vec()
            }
            Self::Transpose => {
                let (rows, cols) = (*shape.first()? as usize, *shape.get(1)? as usize);
                (0..cols)
                    .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
                    .collect()
            }
            Self::SwapHalves => {
                let (first, second) = values.split_at(values.len() / 2);
                second.iter().chain(first).copied().collect()
            }
            Self::ConcatRows => sources
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
        };
        (out.len() as u64 == crate::state_dict::elements(&out_shape)).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let fused: &[u64] = &[6, 4];
        assert_eq!(
            KeyTransform::SliceRows { part: 1, parts: 3 }.apply_to_shape(&[fused]),
            Some(vec![2, 4])
        );
        assert_eq!(
            KeyTransform::SliceRows { part: 3, parts: 3 }.apply_to_shape(&[fused]),
            None
        );
        assert_eq!(
            KeyTransform::LinearToConv1x1.apply_to_shape(&[&[4, 2]]),
            Some(vec![4, 2, 1, 1])
        );
        assert_eq!(
            KeyTransform::Transpose.apply_to_shape(&[&[4, 2]]),
            Some(vec![2, 4])
        );
        assert_eq!(KeyTransform::SwapHalves.apply_to_shape(&[&[3]]), None);
        let parts: [&[u64]; 3] = [&[2, 4], &[2, 4], &[3, 4]];
        assert_eq!(
            KeyTransform::ConcatRows.apply_to_shape(&parts),
            Some(vec![7, 4])
        );
        assert_eq!(
            KeyTransform::ConcatRows.apply_to_shape(&[&[2, 4], &[2, 5]]),
            None
        );
    }

    #[test]
    fn values() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let shape: &[u64] = &[2, 3];
        assert_eq!(
            KeyTransform::Transpose.apply_to_values(&[(shape, &m)]),
            Some(vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
        );
        assert_eq!(
            KeyTransform::SwapHalves.apply_to_values(&[(shape, &m)]),
            Some(vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0])
        );
        let rows: &[u64] = &[3, 2];
        assert_eq!(
            KeyTransform::SliceRows { part: 2, parts: 3 }.apply_to_values(&[(rows, &m)]),
            Some(vec![5.0, 6.0])
        );
        let one: &[u64] = &[1, 2];
        assert_eq!(
            KeyTransform::ConcatRows.apply_to_values(&[(one, &[1.0, 2.0]), (one, &[3.0, 4.0])]),
            Some(vec![1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(
            KeyTransform::Identity.apply_to_values(&[(shape, &m[..5])]),
            None
        );
    }
}
