//! A minimal protocol-2 pickler producing exactly what `torch.save` writes for a
//! `{"state_dict": OrderedDict[str, Tensor]}`: tensors reduced through
//! `torch._utils._rebuild_tensor_v2` with `('storage', torch.<Type>Storage, key, 'cpu', numel)`
//! persistent ids, memo puts after every memoised object and memo gets for repeated globals and
//! interned strings, as CPython's `Pickler` does.

use std::collections::HashMap;

/// Pickle opcodes used.
mod op {
    pub(super) const PROTO: u8 = 0x80;
    pub(super) const EMPTY_DICT: u8 = b'}';
    pub(super) const EMPTY_TUPLE: u8 = b')';
    pub(super) const MARK: u8 = b'(';
    pub(super) const TUPLE: u8 = b't';
    pub(super) const TUPLE1: u8 = 0x85;
    pub(super) const TUPLE2: u8 = 0x86;
    pub(super) const TUPLE3: u8 = 0x87;
    pub(super) const BINUNICODE: u8 = b'X';
    pub(super) const GLOBAL: u8 = b'c';
    pub(super) const BINPUT: u8 = b'q';
    pub(super) const LONG_BINPUT: u8 = b'r';
    pub(super) const BINGET: u8 = b'h';
    pub(super) const LONG_BINGET: u8 = b'j';
    pub(super) const BININT1: u8 = b'K';
    pub(super) const BININT2: u8 = b'M';
    pub(super) const BININT: u8 = b'J';
    pub(super) const LONG1: u8 = 0x8a;
    pub(super) const NEWFALSE: u8 = 0x89;
    pub(super) const REDUCE: u8 = b'R';
    pub(super) const BINPERSID: u8 = b'Q';
    pub(super) const SETITEM: u8 = b's';
    pub(super) const SETITEMS: u8 = b'u';
    pub(super) const STOP: u8 = b'.';
}

/// CPython's `_batch_setitems` batch size.
const BATCH: usize = 1000;

/// One tensor of the state dict as the pickle sees it.
pub(crate) struct PickledTensor<'a> {
    pub(crate) name: &'a str,
    /// `FloatStorage`, `HalfStorage`, `BFloat16Storage`, `LongStorage`, `IntStorage`.
    pub(crate) storage_type: &'static str,
    /// The record name under `archive/data/`.
    pub(crate) storage_key: String,
    pub(crate) shape: &'a [usize],
}

struct Pickler {
    out: Vec<u8>,
    next_memo: u32,
    globals: HashMap<(String, String), u32>,
    interned: HashMap<String, u32>,
}

impl Pickler {
    fn new() -> Pickler {
        Pickler {
            out: vec![op::PROTO, 2],
            next_memo: 0,
            globals: HashMap::new(),
            interned: HashMap::new(),
        }
    }

    fn put(&mut self) -> u32 {
        let index = self.next_memo;
        if let Ok(small) = u8::try_from(index) {
            self.out.extend([op::BINPUT, small]);
        } else {
            self.out.push(op::LONG_BINPUT);
            self.out.extend(index.to_le_bytes());
        }
        self.next_memo += 1;
        index
    }

    fn get(&mut self, index: u32) {
        if let Ok(small) = u8::try_from(index) {
            self.out.extend([op::BINGET, small]);
        } else {
            self.out.push(op::LONG_BINGET);
            self.out.extend(index.to_le_bytes());
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = (module.to_string(), name.to_string());
        if let Some(index) = self.globals.get(&key).copied() {
            self.get(index);
            return;
        }
        self.out.push(op::GLOBAL);
        self.out.extend(format!("{module}\n{name}\n").bytes());
        let index = self.put();
        self.globals.insert(key, index);
    }

    fn string(&mut self, value: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend((value.len() as u32).to_le_bytes());
        self.out.extend(value.bytes());
        self.put();
    }

    /// A string CPython interns (same object every time), so repeats are memo gets.
    fn interned_string(&mut self, value: &str) {
        if let Some(index) = self.interned.get(value).copied() {
            self.get(index);
            return;
        }
        self.out.push(op::BINUNICODE);
        self.out.extend((value.len() as u32).to_le_bytes());
        self.out.extend(value.bytes());
        let index = self.put();
        self.interned.insert(value.to_string(), index);
    }

    fn int(&mut self, value: u64) {
        if let Ok(small) = u8::try_from(value) {
            self.out.extend([op::BININT1, small]);
        } else if let Ok(medium) = u16::try_from(value) {
            self.out.push(op::BININT2);
            self.out.extend(medium.to_le_bytes());
        } else if let Ok(int) = i32::try_from(value) {
            self.out.push(op::BININT);
            self.out.extend(int.to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, minimal length (a sign byte if needed).
            let mut bytes = value.to_le_bytes().to_vec();
            while bytes.len() > 1
                && bytes[bytes.len() - 1] == 0
                && bytes[bytes.len() - 2] & 0x80 == 0
            {
                bytes.pop();
            }
            if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                bytes.push(0);
            }
            self.out.extend([op::LONG1, bytes.len() as u8]);
            self.out.extend(bytes);
        }
    }

    fn int_tuple(&mut self, values: &[usize]) {
        match values.len() {
            0 => {
                self.out.push(op::EMPTY_TUPLE);
                return;
            }
            1..=3 => {
                for value in values {
                    self.int(*value as u64);
                }
                self.out
                    .push([op::TUPLE1, op::TUPLE2, op::TUPLE3][values.len() - 1]);
            }
            _ => {
                self.out.push(op::MARK);
                for value in values {
                    self.int(*value as u64);
                }
                self.out.push(op::TUPLE);
            }
        }
        self.put();
    }

    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend([op::EMPTY_TUPLE, op::REDUCE]);
        self.put();
    }

    fn tensor(&mut self, tensor: &PickledTensor<'_>) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(op::MARK);
        // Persistent id of the storage.
        self.out.push(op::MARK);
        self.interned_string("storage");
        self.global("torch", tensor.storage_type);
        self.string(&tensor.storage_key);
        self.interned_string("cpu");
        let numel: usize = tensor.shape.iter().product();
        self.int(numel as u64);
        self.out.push(op::TUPLE);
        self.put();
        self.out.push(op::BINPERSID);
        // storage_offset, size, stride, requires_grad, backward_hooks.
        self.int(0);
        self.int_tuple(tensor.shape);
        let mut strides = vec![1usize; tensor.shape.len()];
        for axis in (0..tensor.shape.len().saturating_sub(1)).rev() {
            strides[axis] = strides[axis + 1] * tensor.shape[axis + 1];
        }
        self.int_tuple(&strides);
        self.out.push(op::NEWFALSE);
        self.empty_ordered_dict();
        self.out.push(op::TUPLE);
        self.put();
        self.out.push(op::REDUCE);
        self.put();
    }
}

/// `data.pkl` for `{"state_dict": OrderedDict(tensors)}`.
pub(crate) fn state_dict_pickle(tensors: &[PickledTensor<'_>]) -> Vec<u8> {
    let mut pickler = Pickler::new();
    pickler.out.push(op::EMPTY_DICT);
    pickler.put();
    pickler.string("state_dict");
    pickler.empty_ordered_dict();
    for batch in tensors.chunks(BATCH) {
        if batch.len() > 1 {
            pickler.out.push(op::MARK);
        }
        for tensor in batch {
            pickler.string(tensor.name);
            pickler.tensor(tensor);
        }
        pickler.out.push(if batch.len() > 1 {
            op::SETITEMS
        } else {
            op::SETITEM
        });
    }
    pickler.out.push(op::SETITEM);
    pickler.out.push(op::STOP);
    pickler.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tensor_pickle_matches_cpython_bytes() {
        // Bytes of pickle.dumps({"state_dict": OrderedDict(w=torch.zeros(2, 3))}, protocol=2)
        // through torch.save's persistent_id, written out by hand from CPython's pickler logic.
        let tensor = PickledTensor {
            name: "w",
            storage_type: "FloatStorage",
            storage_key: "0".into(),
            shape: &[2, 3],
        };
        let bytes = state_dict_pickle(&[tensor]);
        let expected: Vec<u8> = [
            &b"\x80\x02}q\x00X\x0a\x00\x00\x00state_dictq\x01ccollections\nOrderedDict\nq\x02)Rq\x03"[..],
            &b"X\x01\x00\x00\x00wq\x04ctorch._utils\n_rebuild_tensor_v2\nq\x05((X\x07\x00\x00\x00storageq\x06"[..],
            &b"ctorch\nFloatStorage\nq\x07X\x01\x00\x00\x000q\x08X\x03\x00\x00\x00cpuq\x09K\x06tq\x0aQ"[..],
            &b"K\x00K\x02K\x03\x86q\x0bK\x03K\x01\x86q\x0c\x89h\x02)Rq\x0dtq\x0eRq\x0fss."[..],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn large_ints_use_long1() {
        let mut pickler = Pickler::new();
        pickler.int(3_000_000_000);
        assert_eq!(
            &pickler.out[2..],
            &[op::LONG1, 5, 0x00, 0x5E, 0xD0, 0xB2, 0x00]
        );
    }
}
