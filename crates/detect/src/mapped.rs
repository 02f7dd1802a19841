//! A state dict seen through a key map: internal names with the shapes they will have after
//! their transforms. Every classifier reads this view, so one rule serves every layout.

use std::ops::Bound;

use crate::state_dict::StateDict;
use crate::{KeyMap, KeySource};

/// Internal names → resulting shapes, backed by a [`KeyMap`] over a [`StateDict`].
pub(crate) struct MappedView<'m> {
    map: &'m KeyMap,
    sd: &'m StateDict<'m>,
}

impl<'m> MappedView<'m> {
    pub(crate) fn new(map: &'m KeyMap, sd: &'m StateDict<'m>) -> Self {
        Self { map, sd }
    }

    pub(crate) fn contains(&self, internal: &str) -> bool {
        self.map.contains_key(internal)
    }

    /// The shape the internal tensor has after its transform.
    pub(crate) fn shape(&self, internal: &str) -> Option<Vec<u64>> {
        resulting_shape(self.map.get(internal)?, self.sd)
    }

    /// Dimension `dim` of the internal tensor.
    pub(crate) fn dim(&self, internal: &str, dim: usize) -> Option<u64> {
        self.shape(internal)?.get(dim).copied()
    }

    pub(crate) fn any_with_prefix(&self, prefix: &str) -> bool {
        self.map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// How many consecutive numbered blocks `{prefix}0.`, `{prefix}1.`, … exist.
    pub(crate) fn count_blocks(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|n| self.any_with_prefix(&format!("{prefix}{n}.")))
            .count()
    }

    /// Internal names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'m str> {
        self.map.keys().map(String::as_str)
    }

    /// The values of the internal tensor, when it is stored as-is and values can be read.
    pub(crate) fn f32_values(&self, internal: &str) -> Option<Vec<f32>> {
        let source = self.map.get(internal)?;
        match source.transform {
            crate::KeyTransform::Identity | crate::KeyTransform::LinearToConv1x1 => {
                self.sd.f32_values(source.file, &source.name)
            }
            _ => None,
        }
    }
}

/// The shape of an internal tensor: its sources' stored shapes through its transform.
pub(crate) fn resulting_shape(source: &KeySource, sd: &StateDict<'_>) -> Option<Vec<u64>> {
    let shapes: Vec<&[u64]> = source
        .tensors()
        .map(|(_, name)| sd.shape(name))
        .collect::<Option<_>>()?;
    source.transform.apply_to_shape(&shapes)
}
