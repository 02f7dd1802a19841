//! Turns a planned tensor into the bytes of its storage dtype, one tensor at a time (so real-size
//! files stream), computing scaled-fp8 scales on demand.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::layout::Entry;
use crate::storage::{float_bytes, fp8_bytes, fp8_scale, Encoding};

/// Per-file encoding state.
pub(crate) struct Encoder<'a> {
    seed: u64,
    by_name: HashMap<&'a str, &'a Entry>,
    scales: RefCell<HashMap<String, f32>>,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(seed: u64, entries: &'a [Entry]) -> Encoder<'a> {
        let by_name = entries
            .iter()
            .map(|entry| (entry.def.name.as_str(), entry))
            .collect();
        Encoder {
            seed,
            by_name,
            scales: RefCell::new(HashMap::new()),
        }
    }

    /// The scaled-fp8 scale of the weight called `name`.
    fn scale_of(&self, name: &str) -> f32 {
        if let Some(scale) = self.scales.borrow().get(name) {
            return *scale;
        }
        let scale = match self.by_name.get(name) {
            Some(entry) => match entry.encoding {
                Encoding::ScaledFp8(kind) => fp8_scale(&entry.def.float_values(self.seed), kind),
                _ => 1.0,
            },
            None => 1.0,
        };
        self.scales.borrow_mut().insert(name.to_string(), scale);
        scale
    }

    /// The stored bytes of one entry.
    pub(crate) fn bytes(&self, entry: &Entry) -> Vec<u8> {
        match &entry.encoding {
            Encoding::Float(float) => float_bytes(&entry.def.float_values(self.seed), *float),
            Encoding::Fp8(kind) => fp8_bytes(&entry.def.float_values(self.seed), *kind, 1.0),
            Encoding::ScaledFp8(kind) => {
                let scale = self.scale_of(&entry.def.name);
                fp8_bytes(&entry.def.float_values(self.seed), *kind, scale)
            }
            Encoding::ScaleOf(weight) => self.scale_of(weight).to_le_bytes().to_vec(),
            Encoding::Marker(_) => Vec::new(),
            Encoding::Int64 => entry
                .def
                .int_values()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            Encoding::Int32 => entry
                .def
                .int_values()
                .iter()
                .flat_map(|v| (*v as i32).to_le_bytes())
                .collect(),
        }
    }
}
