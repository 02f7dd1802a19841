//! Hand-written PyTorch checkpoint fixtures shared by the integration tests: a protocol-2
//! pickle writer, the `torch.save` zip layout and the legacy layout.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Writes protocol-2 pickle opcodes.
#[derive(Default)]
pub(crate) struct Pickle(Vec<u8>);

impl Pickle {
    pub(crate) fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    pub(crate) fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    pub(crate) fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.op(b"X")
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    pub(crate) fn int(&mut self, v: u32) -> &mut Self {
        self.op(b"J").op(&(v as i32).to_le_bytes())
    }
    pub(crate) fn int_tuple(&mut self, values: &[u32]) -> &mut Self {
        self.op(b"(");
        for &v in values {
            self.int(v);
        }
        self.op(b"t")
    }
    pub(crate) fn empty_ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b")R")
    }
    /// `_rebuild_tensor_v2(persistent_load(('storage', <type>, key, 'cpu', numel)), ...)`.
    pub(crate) fn tensor(
        &mut self,
        storage_type: &str,
        key: &str,
        numel: u32,
        offset: u32,
        shape: &[u32],
        strides: &[u32],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        self.op(b"(")
            .str("storage")
            .global("torch", storage_type)
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ");
        self.int(offset)
            .int_tuple(shape)
            .int_tuple(strides)
            .op(b"\x89");
        self.empty_ordered_dict().op(b"tR")
    }
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.op(b".");
        std::mem::take(&mut self.0)
    }
}

pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn zip_archive(
    pickle: &[u8],
    storages: &[(&str, Vec<u8>)],
    method: CompressionMethod,
) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        let options = SimpleFileOptions::default().compression_method(method);
        zip.start_file(format!("archive/data/{key}"), options)
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// `OrderedDict(a = f32[2,3] from storage 0, b = f16[4] from storage 1, t = a transposed)`.
pub(crate) fn two_tensor_pickle() -> Vec<u8> {
    let mut p = Pickle::new();
    p.empty_ordered_dict().op(b"(");
    p.str("a")
        .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]);
    p.str("b").tensor("HalfStorage", "1", 4, 0, &[4], &[1]);
    p.str("t")
        .tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3]);
    p.op(b"u").finish()
}

pub(crate) fn two_tensor_storages() -> Vec<(&'static str, Vec<u8>)> {
    let halves = [1.0f32, -2.0, 0.25, 8.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    vec![
        ("0", f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
        ("1", halves),
    ]
}

/// A legacy (pre-1.6) checkpoint: `{"w": f32[2]}` viewing elements 1..3 of storage `7`, which
/// holds `[9.0, 1.5, -2.5]`.
pub(crate) fn legacy_checkpoint() -> Vec<u8> {
    let mut bytes = vec![
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
    ];
    bytes.extend_from_slice(&[0x50, 0x19, b'.']);
    bytes.extend_from_slice(&Pickle::new().op(b"M\xe9\x03").finish());
    let mut sys_info = Pickle::new();
    sys_info
        .op(b"}(")
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(b"\x88u");
    bytes.extend_from_slice(&sys_info.finish());
    let mut object = Pickle::new();
    object
        .op(b"}(")
        .str("w")
        .tensor("FloatStorage", "7", 3, 1, &[2], &[1])
        .op(b"u");
    bytes.extend_from_slice(&object.finish());
    bytes.extend_from_slice(&Pickle::new().op(b"]").str("7").op(b"a").finish());
    bytes.extend_from_slice(&3u64.to_le_bytes());
    bytes.extend_from_slice(&f32_bytes(&[9.0, 1.5, -2.5]));
    bytes
}
