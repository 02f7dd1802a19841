//! A pickle interpreter that never executes code: it understands the opcodes PyTorch's
//! `torch.save` emits and builds inert values from them.
//!
//! Python's unpickler imports any `module.name` a pickle names (`GLOBAL`) and calls it (`REDUCE`),
//! so a checkpoint can run arbitrary code (`os.system`, `builtins.eval`, …). Here a global is
//! looked up in a fixed allow-list the moment the pickle names it; anything else stops the read
//! with [`WeightsError::PickleRefused`] before a single later opcode runs. Allow-listed globals are
//! never "called" either: `REDUCE` on `torch._utils._rebuild_tensor_v2` is *interpreted* by
//! [`Machine::reduce`], which records storage, offset, shape and strides. Classes that only ever
//! matter as opaque leftovers (a Lightning `ModelCheckpoint` callback, a NumPy scalar, a
//! `torch.dtype`) become [`Value::Opaque`], which nothing can call or inspect. This mirrors the
//! set ComfyUI accepts with `torch.load(weights_only=True)` plus its `add_safe_globals` list.
//!
//! Resource bounds: every length is checked against the remaining input before it is read; the
//! stack, the mark stack and the memo are capped; there is no recursion (containers live in an
//! arena and reference each other by index, so self-referencing pickles are harmless).

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::{StorageDType, WeightsError};

/// Cap on stack entries, marks and memo entries (each ≥ 16 bytes, so ≤ a few hundred MB even
/// for adversarial input; real checkpoints use thousands).
const MAX_ENTRIES: usize = 1 << 22;

/// Most tensor dimensions accepted (torch itself allows 64).
const MAX_RANK: usize = 64;

/// Values an opcode may copy, per input byte, summed over the whole pickle. Most opcodes copy
/// O(1) values, but `OrderedDict(list)` and `_codecs.encode(text)` copy a whole memoised
/// argument, so repeating them on one big argument would otherwise grow quadratically with the
/// input size.
const COPY_BUDGET_PER_BYTE: usize = 16;

/// A pickled value, as far as Kiln cares.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in 64 bits (kept only so the pickle can be walked).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    // Contents only matter to `Debug` output when diagnosing a checkpoint.
    Bytes(#[allow(dead_code)] Rc<[u8]>),
    Tuple(Rc<[Value]>),
    /// A list or set, by arena index.
    List(usize),
    /// A dict or `OrderedDict`, by arena index.
    Dict(usize),
    /// An allow-listed global, not yet applied.
    Global(Global),
    /// A storage named by a persistent id.
    Storage(Rc<StorageRef>),
    /// A tensor view of a storage.
    Tensor(Rc<TensorRef>),
    /// An allow-listed object Kiln keeps but never looks into (named for diagnostics).
    Opaque(#[allow(dead_code)] &'static str),
}

/// A storage as torch's persistent id describes it:
/// `('storage', <type>, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// Zip entry name under `data/`, or the legacy format's storage key.
    pub(crate) key: Rc<str>,
    pub(crate) dtype: StorageDType,
    /// Elements, as the pickle claims (checked against the real bytes by the caller).
    pub(crate) numel: u64,
    /// Legacy format only: a view `(view_key, element offset, element count)` into `key`.
    pub(crate) view: Option<(Rc<str>, u64, u64)>,
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<StorageRef>,
    /// Element type: the storage's, or (`_rebuild_tensor_v3`) the explicit dtype argument;
    /// `Err` names a torch dtype Kiln cannot hold. Offset and strides count these elements.
    pub(crate) dtype: Result<StorageDType, &'static str>,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<u64>,
    pub(crate) strides: Vec<u64>,
}

/// The globals a pickle may name, and what each means to the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    RebuildTensorV2,
    RebuildTensor,
    /// `_rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, …)`: an
    /// untyped (byte) storage viewed as `dtype`, for dtypes without a typed storage class.
    RebuildTensorV3,
    RebuildParameter,
    RebuildFromTypeV2,
    OrderedDict,
    TorchSize,
    CodecsEncode,
    /// A typed storage class (`torch.HalfStorage`, …) or `torch.UntypedStorage` (bytes).
    StorageType(StorageDType),
    /// A `torch.<dtype>` object; `Err` names a dtype Kiln cannot hold.
    DType(Result<StorageDType, &'static str>),
    /// A class or function whose result is kept as an inert [`Value::Opaque`].
    Inert(&'static str),
}

/// `(module, name, meaning)`. Everything not listed is refused.
const ALLOW_LIST: &[(&str, &str, Global)] = &[
    (
        "torch._utils",
        "_rebuild_tensor_v2",
        Global::RebuildTensorV2,
    ),
    ("torch._utils", "_rebuild_tensor", Global::RebuildTensor),
    (
        "torch._utils",
        "_rebuild_tensor_v3",
        Global::RebuildTensorV3,
    ),
    (
        "torch._utils",
        "_rebuild_parameter",
        Global::RebuildParameter,
    ),
    (
        "torch._utils",
        "_rebuild_parameter_with_state",
        Global::RebuildParameter,
    ),
    (
        "torch._tensor",
        "_rebuild_from_type_v2",
        Global::RebuildFromTypeV2,
    ),
    ("collections", "OrderedDict", Global::OrderedDict),
    ("torch", "Size", Global::TorchSize),
    ("_codecs", "encode", Global::CodecsEncode),
    (
        "torch",
        "DoubleStorage",
        Global::StorageType(StorageDType::F64),
    ),
    (
        "torch",
        "FloatStorage",
        Global::StorageType(StorageDType::F32),
    ),
    (
        "torch",
        "HalfStorage",
        Global::StorageType(StorageDType::F16),
    ),
    (
        "torch",
        "BFloat16Storage",
        Global::StorageType(StorageDType::BF16),
    ),
    (
        "torch",
        "Float8_e4m3fnStorage",
        Global::StorageType(StorageDType::F8E4M3),
    ),
    (
        "torch",
        "Float8_e5m2Storage",
        Global::StorageType(StorageDType::F8E5M2),
    ),
    (
        "torch",
        "LongStorage",
        Global::StorageType(StorageDType::I64),
    ),
    (
        "torch",
        "IntStorage",
        Global::StorageType(StorageDType::I32),
    ),
    (
        "torch",
        "ShortStorage",
        Global::StorageType(StorageDType::I16),
    ),
    (
        "torch",
        "CharStorage",
        Global::StorageType(StorageDType::I8),
    ),
    (
        "torch",
        "ByteStorage",
        Global::StorageType(StorageDType::U8),
    ),
    (
        "torch",
        "BoolStorage",
        Global::StorageType(StorageDType::Bool),
    ),
    (
        "torch",
        "UntypedStorage",
        Global::StorageType(StorageDType::U8),
    ),
    // torch ≥ 2.1 pickles byte storages (fp8 tensors among them) under this path.
    (
        "torch.storage",
        "UntypedStorage",
        Global::StorageType(StorageDType::U8),
    ),
    (
        "torch.nn.parameter",
        "Parameter",
        Global::Inert("torch.nn.parameter.Parameter"),
    ),
    ("torch", "Tensor", Global::Inert("torch.Tensor")),
    ("torch", "device", Global::Inert("torch.device")),
    ("torch", "float64", Global::DType(Ok(StorageDType::F64))),
    ("torch", "float32", Global::DType(Ok(StorageDType::F32))),
    ("torch", "float16", Global::DType(Ok(StorageDType::F16))),
    ("torch", "bfloat16", Global::DType(Ok(StorageDType::BF16))),
    (
        "torch",
        "float8_e4m3fn",
        Global::DType(Ok(StorageDType::F8E4M3)),
    ),
    (
        "torch",
        "float8_e5m2",
        Global::DType(Ok(StorageDType::F8E5M2)),
    ),
    ("torch", "int64", Global::DType(Ok(StorageDType::I64))),
    ("torch", "int32", Global::DType(Ok(StorageDType::I32))),
    ("torch", "int16", Global::DType(Ok(StorageDType::I16))),
    ("torch", "int8", Global::DType(Ok(StorageDType::I8))),
    ("torch", "uint8", Global::DType(Ok(StorageDType::U8))),
    ("torch", "bool", Global::DType(Ok(StorageDType::Bool))),
    // Harmless dtypes Kiln cannot hold: a tensor of one is an `UnknownDType` error, not a refusal.
    ("torch", "uint16", Global::DType(Err("torch.uint16"))),
    ("torch", "uint32", Global::DType(Err("torch.uint32"))),
    ("torch", "uint64", Global::DType(Err("torch.uint64"))),
    ("torch", "complex64", Global::DType(Err("torch.complex64"))),
    (
        "torch",
        "complex128",
        Global::DType(Err("torch.complex128")),
    ),
    (
        "torch",
        "float8_e4m3fnuz",
        Global::DType(Err("torch.float8_e4m3fnuz")),
    ),
    (
        "torch",
        "float8_e5m2fnuz",
        Global::DType(Err("torch.float8_e5m2fnuz")),
    ),
    (
        "torch",
        "float8_e8m0fnu",
        Global::DType(Err("torch.float8_e8m0fnu")),
    ),
    // ComfyUI's `add_safe_globals` list, for old Lightning `.ckpt` files.
    (
        "pytorch_lightning.callbacks.model_checkpoint",
        "ModelCheckpoint",
        Global::Inert("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    ),
    (
        "numpy.core.multiarray",
        "scalar",
        Global::Inert("numpy.core.multiarray.scalar"),
    ),
    ("numpy", "dtype", Global::Inert("numpy.dtype")),
    (
        "numpy.dtypes",
        "Float64DType",
        Global::Inert("numpy.dtypes.Float64DType"),
    ),
];

fn resolve_global(file: &Path, module: &str, name: &str) -> Result<Global, WeightsError> {
    ALLOW_LIST
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|(_, _, global)| *global)
        .ok_or_else(|| WeightsError::PickleRefused {
            file: file.to_path_buf(),
            global: format!("{module}.{name}"),
        })
}

/// A list/set or dict that later opcodes may still append to.
#[derive(Debug)]
pub(crate) enum Container {
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

/// The result of one pickle: the root value and the arena its containers live in.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub(crate) root: Value,
    arena: Vec<Container>,
    /// Every storage the pickle loaded by persistent id, in order.
    pub(crate) storages: Vec<Rc<StorageRef>>,
    /// Bytes of input the pickle occupied, up to and including `STOP`.
    pub(crate) consumed: usize,
}

impl Unpickled {
    /// The `(key, value)` pairs of a dict value; `None` for anything else.
    pub(crate) fn dict_entries(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match value {
            Value::Dict(id) => match self.arena.get(*id) {
                Some(Container::Dict(entries)) => Some(entries),
                _ => None,
            },
            _ => None,
        }
    }

    /// The items of a list value; `None` for anything else.
    pub(crate) fn list_items(&self, value: &Value) -> Option<&[Value]> {
        match value {
            Value::List(id) => match self.arena.get(*id) {
                Some(Container::List(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }
}

struct Machine<'a> {
    file: &'a Path,
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Container>,
    storages: Vec<Rc<StorageRef>>,
    /// Values left to copy; see [`COPY_BUDGET_PER_BYTE`].
    copy_budget: usize,
}

/// Runs the pickle at the start of `input` up to its `STOP` opcode.
pub(crate) fn unpickle(file: &Path, input: &[u8]) -> Result<Unpickled, WeightsError> {
    let mut machine = Machine {
        file,
        input,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
        storages: Vec::new(),
        copy_budget: input
            .len()
            .saturating_mul(COPY_BUDGET_PER_BYTE)
            .saturating_add(1 << 16),
    };
    let root = machine.run()?;
    Ok(Unpickled {
        root,
        arena: machine.arena,
        storages: machine.storages,
        consumed: machine.pos,
    })
}

impl Machine<'_> {
    fn error(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Pickle {
            file: self.file.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, len: u64) -> Result<&[u8], WeightsError> {
        let remaining = self.input.len() - self.pos;
        if len > remaining as u64 {
            return Err(self.error(format!(
                "a field at byte {} needs {len} bytes, only {remaining} remain",
                self.pos
            )));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.input[start..self.pos])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WeightsError> {
        let bytes = self.take(N as u64)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn u64(&mut self) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// A newline-terminated text argument (protocol 0 opcodes and `GLOBAL`).
    fn line(&mut self) -> Result<&str, WeightsError> {
        let rest = &self.input[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error("unterminated text argument"));
        };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.error("text argument is not UTF-8"))
    }

    fn push(&mut self, value: Value) -> Result<(), WeightsError> {
        if self.stack.len() >= MAX_ENTRIES {
            return Err(self.error("stack too deep"));
        }
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, WeightsError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("stack underflow"))
    }

    fn top(&self) -> Result<&Value, WeightsError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("stack underflow"));
        }
        self.stack
            .last()
            .ok_or_else(|| self.error("stack underflow"))
    }

    /// Pops everything above the last `MARK`, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, WeightsError> {
        let Some(height) = self.marks.pop() else {
            return Err(self.error("no MARK to pop to"));
        };
        Ok(self.stack.split_off(height))
    }

    fn charge_copy(&mut self, values: usize) -> Result<(), WeightsError> {
        self.copy_budget = self
            .copy_budget
            .checked_sub(values)
            .ok_or_else(|| self.error("pickle copies more data than its size can justify"))?;
        Ok(())
    }

    fn new_container(&mut self, container: Container) -> Result<usize, WeightsError> {
        if self.arena.len() >= MAX_ENTRIES {
            return Err(self.error("too many containers"));
        }
        self.arena.push(container);
        Ok(self.arena.len() - 1)
    }

    fn memo_put(&mut self, index: u32) -> Result<(), WeightsError> {
        if self.memo.len() >= MAX_ENTRIES && !self.memo.contains_key(&index) {
            return Err(self.error("memo too large"));
        }
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), WeightsError> {
        let Some(value) = self.memo.get(&index).cloned() else {
            return Err(self.error(format!("memo entry {index} was never stored")));
        };
        self.push(value)
    }

    fn string(&mut self, len: u64) -> Result<(), WeightsError> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| self.error("string is not UTF-8"))?;
        self.push(Value::Str(text))
    }

    /// Python 2 `str` (`BINSTRING`): bytes decoded as Latin-1, as `torch.load` does by default.
    fn latin1_string(&mut self, len: u64) -> Result<(), WeightsError> {
        let text: String = self.take(len)?.iter().map(|&b| char::from(b)).collect();
        self.push(Value::Str(Rc::from(text)))
    }

    fn bytes(&mut self, len: u64) -> Result<(), WeightsError> {
        let bytes = Rc::from(self.take(len)?);
        self.push(Value::Bytes(bytes))
    }

    /// Two's-complement little-endian integer of `len` bytes (`LONG1`/`LONG4`).
    fn long(&mut self, len: u64) -> Result<(), WeightsError> {
        let bytes = self.take(len)?;
        let value = if bytes.is_empty() {
            Value::Int(0)
        } else if bytes.len() <= 8 {
            let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
                0xFF
            } else {
                0
            };
            let mut wide = [fill; 8];
            wide[..bytes.len()].copy_from_slice(bytes);
            Value::Int(i64::from_le_bytes(wide))
        } else {
            Value::BigInt
        };
        self.push(value)
    }

    fn text_int(&mut self) -> Result<(), WeightsError> {
        let line = self.line()?.trim_end_matches('L').to_string();
        let value = match line.as_str() {
            // Protocol 0 spells booleans as INT 00 / 01.
            "00" => Value::Bool(false),
            "01" => Value::Bool(true),
            text => match text.parse::<i64>() {
                Ok(v) => Value::Int(v),
                Err(_)
                    if !text.is_empty()
                        && text
                            .trim_start_matches('-')
                            .bytes()
                            .all(|b| b.is_ascii_digit()) =>
                {
                    Value::BigInt
                }
                Err(_) => return Err(self.error(format!("bad integer literal `{text}`"))),
            },
        };
        self.push(value)
    }

    fn text_memo_index(&mut self) -> Result<u32, WeightsError> {
        let line = self.line()?.to_string();
        line.parse::<u32>()
            .map_err(|_| self.error(format!("bad memo index `{line}`")))
    }

    fn run(&mut self) -> Result<Value, WeightsError> {
        loop {
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(self.error(format!("unsupported pickle protocol {protocol}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_ENTRIES {
                        return Err(self.error("too many marks"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let value = self.top()?.clone();
                    self.push(value)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    let len = self.u8()?;
                    self.long(len.into())?;
                }
                0x8b => {
                    let len = i32::from_le_bytes(self.take_array()?);
                    let len =
                        u64::try_from(len).map_err(|_| self.error("negative LONG4 length"))?;
                    self.long(len)?;
                }
                b'I' | b'L' => self.text_int()?,
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let line = self.line()?.to_string();
                    let v = line
                        .parse::<f64>()
                        .map_err(|_| self.error(format!("bad float literal `{line}`")))?;
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let len = self.u32()?;
                    self.string(len.into())?;
                }
                0x8c => {
                    let len = self.u8()?;
                    self.string(len.into())?;
                }
                0x8d => {
                    let len = self.u64()?;
                    self.string(len)?;
                }
                b'U' => {
                    let len = self.u8()?;
                    self.latin1_string(len.into())?;
                }
                b'T' => {
                    let len = i32::from_le_bytes(self.take_array()?);
                    let len =
                        u64::try_from(len).map_err(|_| self.error("negative BINSTRING length"))?;
                    self.latin1_string(len)?;
                }
                b'C' => {
                    let len = self.u8()?;
                    self.bytes(len.into())?;
                }
                b'B' => {
                    let len = self.u32()?;
                    self.bytes(len.into())?;
                }
                0x8e | 0x96 => {
                    let len = self.u64()?;
                    self.bytes(len)?;
                }
                b')' => self.push(Value::Tuple(Rc::from(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::from(items)))?;
                }
                0x85..=0x87 => {
                    let count = usize::from(opcode - 0x84);
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + count {
                        return Err(self.error("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - count);
                    self.push(Value::Tuple(Rc::from(items)))?;
                }
                b']' | 0x8f => {
                    let id = self.new_container(Container::List(Vec::new()))?;
                    self.push(Value::List(id))?;
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    let id = self.new_container(Container::List(items))?;
                    self.push(Value::List(id))?;
                }
                b'}' => {
                    let id = self.new_container(Container::Dict(Vec::new()))?;
                    self.push(Value::Dict(id))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let entries = pairs(items).ok_or_else(|| self.error("DICT with odd items"))?;
                    let id = self.new_container(Container::Dict(entries))?;
                    self.push(Value::Dict(id))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let entries =
                        pairs(items).ok_or_else(|| self.error("SETITEMS with odd items"))?;
                    self.extend_dict(entries)?;
                }
                b'q' => {
                    let index = self.u8()?;
                    self.memo_put(index.into())?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memo_put(index)?;
                }
                0x94 => {
                    let index =
                        u32::try_from(self.memo.len()).map_err(|_| self.error("memo too large"))?;
                    self.memo_put(index)?;
                }
                b'p' => {
                    let index = self.text_memo_index()?;
                    self.memo_put(index)?;
                }
                b'h' => {
                    let index = self.u8()?;
                    self.memo_get(index.into())?;
                }
                b'j' => {
                    let index = self.u32()?;
                    self.memo_get(index)?;
                }
                b'g' => {
                    let index = self.text_memo_index()?;
                    self.memo_get(index)?;
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let global = resolve_global(self.file, &module, &name)?;
                    self.push(Value::Global(global))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.error("STACK_GLOBAL needs two strings"));
                    };
                    let global = resolve_global(self.file, &module, &name)?;
                    self.push(Value::Global(global))?;
                }
                b'i' => {
                    // INST: a global named inline, applied to the marked items.
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let global = resolve_global(self.file, &module, &name)?;
                    let args = self.pop_mark()?;
                    let result = self.reduce(Value::Global(global), &args, 0)?;
                    self.push(result)?;
                }
                b'o' => {
                    // OBJ: class then arguments above the mark.
                    let mut items = self.pop_mark()?.into_iter();
                    let class = items
                        .next()
                        .ok_or_else(|| self.error("OBJ without a class"))?;
                    let args: Vec<Value> = items.collect();
                    let result = self.reduce(class, &args, 0)?;
                    self.push(result)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.error("REDUCE/NEWOBJ arguments are not a tuple"));
                    };
                    let result = self.reduce(callable, &args, 0)?;
                    self.push(result)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.error("NEWOBJ_EX arguments are not a tuple"));
                    };
                    let result = self.reduce(class, &args, 0)?;
                    self.push(result)?;
                }
                b'b' => {
                    // BUILD sets object state (`__setstate__`); tensors' and parameters' state
                    // (hooks, attributes) carries no weights, so it is dropped.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(&pid)?;
                    self.push(storage)?;
                }
                b'P' => {
                    return Err(self.error("text persistent ids (PERSID) are not used by torch"))
                }
                0x82..=0x84 => return Err(self.error("extension-registry opcodes are refused")),
                0x97 | 0x98 => return Err(self.error("out-of-band buffers are not supported")),
                other => {
                    return Err(self.error(format!(
                        "unsupported opcode {other:#04x} at byte {}",
                        self.pos - 1
                    )))
                }
            }
        }
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), WeightsError> {
        let target = self.top()?.clone();
        match target {
            Value::List(id) => match self.arena.get_mut(id) {
                Some(Container::List(list)) => {
                    list.extend(items);
                    Ok(())
                }
                _ => Err(self.error("APPEND target is not a list")),
            },
            _ => Err(self.error("APPEND target is not a list")),
        }
    }

    fn extend_dict(&mut self, entries: Vec<(Value, Value)>) -> Result<(), WeightsError> {
        let target = self.top()?.clone();
        match target {
            Value::Dict(id) => match self.arena.get_mut(id) {
                Some(Container::Dict(dict)) => {
                    dict.extend(entries);
                    Ok(())
                }
                _ => Err(self.error("SETITEM target is not a dict")),
            },
            _ => Err(self.error("SETITEM target is not a dict")),
        }
    }

    /// Interprets `callable(*args)` for allow-listed globals; never calls anything.
    fn reduce(
        &mut self,
        callable: Value,
        args: &[Value],
        depth: u8,
    ) -> Result<Value, WeightsError> {
        let Value::Global(global) = callable else {
            return Err(self.error("REDUCE on something that is not an allow-listed global"));
        };
        match global {
            Global::RebuildTensorV2 | Global::RebuildTensor => self.rebuild_tensor(args, None),
            Global::RebuildTensorV3 => match args.get(6) {
                Some(Value::Global(Global::DType(dtype))) => {
                    self.rebuild_tensor(args, Some(*dtype))
                }
                _ => Err(self.error("_rebuild_tensor_v3 without a dtype")),
            },
            Global::RebuildParameter => match args.first() {
                Some(tensor @ Value::Tensor(_)) => Ok(tensor.clone()),
                _ => Err(self.error("_rebuild_parameter without a tensor")),
            },
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): apply func to args once; the subclass is
                // irrelevant to the weights.
                let (Some(func), Some(Value::Tuple(inner))) = (args.first(), args.get(2)) else {
                    return Err(self.error("_rebuild_from_type_v2 with unexpected arguments"));
                };
                if depth > 0 {
                    return Err(self.error("nested _rebuild_from_type_v2"));
                }
                self.reduce(func.clone(), &inner.clone(), depth + 1)
            }
            Global::OrderedDict => {
                let mut entries = Vec::new();
                if let Some(source) = args.first() {
                    let Value::List(id) = source else {
                        return Err(self.error("OrderedDict from something that is not a list"));
                    };
                    let len = match self.arena.get(*id) {
                        Some(Container::List(items)) => items.len(),
                        _ => return Err(self.error("OrderedDict from a non-list")),
                    };
                    self.charge_copy(len)?;
                    let items = match self.arena.get(*id) {
                        Some(Container::List(items)) => items.clone(),
                        _ => Vec::new(),
                    };
                    for item in items {
                        match item {
                            Value::Tuple(pair) if pair.len() == 2 => {
                                entries.push((pair[0].clone(), pair[1].clone()))
                            }
                            _ => return Err(self.error("OrderedDict item is not a pair")),
                        }
                    }
                }
                let id = self.new_container(Container::Dict(entries))?;
                Ok(Value::Dict(id))
            }
            Global::TorchSize => match args.first() {
                Some(Value::Tuple(dims)) => Ok(Value::Tuple(dims.clone())),
                None => Ok(Value::Tuple(Rc::from(Vec::new()))),
                _ => Err(self.error("torch.Size of something that is not a tuple")),
            },
            Global::CodecsEncode => match args.first() {
                // How protocol-2 pickles spell `bytes`: `_codecs.encode(text, "latin1")`.
                Some(Value::Str(text)) => {
                    self.charge_copy(text.len())?;
                    let bytes: Option<Vec<u8>> = text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).ok())
                        .collect();
                    bytes
                        .map(|b| Value::Bytes(Rc::from(b)))
                        .ok_or_else(|| self.error("_codecs.encode of non-Latin-1 text"))
                }
                _ => Err(self.error("_codecs.encode without a string")),
            },
            Global::StorageType(_) => Err(self.error("storage types cannot be constructed")),
            Global::DType(_) => Err(self.error("torch dtypes cannot be called")),
            Global::Inert(name) => Ok(Value::Opaque(name)),
        }
    }

    fn rebuild_tensor(
        &self,
        args: &[Value],
        dtype: Option<Result<StorageDType, &'static str>>,
    ) -> Result<Value, WeightsError> {
        let (Some(Value::Storage(storage)), Some(offset), Some(shape), Some(strides)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err(self.error("_rebuild_tensor_v2 with unexpected arguments"));
        };
        let offset = non_negative(offset).ok_or_else(|| self.error("bad storage offset"))?;
        let shape =
            int_tuple(shape).ok_or_else(|| self.error("tensor size is not a tuple of ints"))?;
        let strides =
            int_tuple(strides).ok_or_else(|| self.error("tensor stride is not a tuple of ints"))?;
        if shape.len() > MAX_RANK {
            return Err(self.error(format!(
                "tensor of rank {} (more than {MAX_RANK})",
                shape.len()
            )));
        }
        if shape.len() != strides.len() {
            return Err(self.error("tensor size and stride differ in rank"));
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            dtype: dtype.unwrap_or(Ok(storage.dtype)),
            offset,
            shape,
            strides,
        })))
    }

    fn persistent_load(&mut self, pid: &Value) -> Result<Value, WeightsError> {
        let Value::Tuple(fields) = pid else {
            return Err(self.error("persistent id is not a tuple"));
        };
        let (Some(Value::Str(tag)), Some(storage_type), Some(key), Some(numel)) =
            (fields.first(), fields.get(1), fields.get(2), fields.get(4))
        else {
            return Err(self.error("persistent id is not ('storage', type, key, location, numel)"));
        };
        if &**tag != "storage" {
            return Err(self.error(format!("unknown persistent id kind `{tag}`")));
        }
        let Value::Global(Global::StorageType(dtype)) = storage_type else {
            return Err(self.error("persistent id names no storage type"));
        };
        let key = match key {
            Value::Str(key) => key.clone(),
            Value::Int(key) => Rc::from(key.to_string()),
            _ => return Err(self.error("storage key is not a string")),
        };
        let numel = non_negative(numel).ok_or_else(|| self.error("bad storage size"))?;
        let view = match fields.get(5) {
            None | Some(Value::None) => None,
            Some(Value::Tuple(view)) => match (view.first(), view.get(1), view.get(2)) {
                (Some(Value::Str(view_key)), Some(offset), Some(size)) => Some((
                    view_key.clone(),
                    non_negative(offset).ok_or_else(|| self.error("bad view offset"))?,
                    non_negative(size).ok_or_else(|| self.error("bad view size"))?,
                )),
                _ => return Err(self.error("bad storage view metadata")),
            },
            Some(_) => return Err(self.error("bad storage view metadata")),
        };
        if self.storages.len() >= MAX_ENTRIES {
            return Err(self.error("too many storages"));
        }
        let storage = Rc::new(StorageRef {
            key,
            dtype: *dtype,
            numel,
            view,
        });
        self.storages.push(storage.clone());
        Ok(Value::Storage(storage))
    }
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut iter = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
        out.push((k, v));
    }
    Some(out)
}

fn non_negative(value: &Value) -> Option<u64> {
    match value {
        Value::Int(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// A tuple of non-negative ints, at most `MAX_RANK + 1` long (longer ones are refused by the
/// caller without being copied).
fn int_tuple(value: &Value) -> Option<Vec<u64>> {
    match value {
        Value::Tuple(items) => items.iter().take(MAX_RANK + 1).map(non_negative).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Unpickled, WeightsError> {
        unpickle(Path::new("t.pt"), bytes)
    }

    #[test]
    fn builds_containers_and_primitives() {
        // {'a': [1, 2.5, True, None], 'b': (u'x', b'yz')} in protocol 2 style.
        let mut p = vec![
            0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1,
        ];
        p.extend_from_slice(b"G");
        p.extend_from_slice(&2.5f64.to_be_bytes());
        p.extend_from_slice(&[
            0x88, b'N', b'e', 0x8c, 1, b'b', 0x8c, 1, b'x', b'C', 2, b'y', b'z',
        ]);
        p.extend_from_slice(&[0x86, b'u', b'.']);
        let out = run(&p).unwrap();
        let entries = out.dict_entries(&out.root).unwrap();
        assert_eq!(entries.len(), 2);
        let list = out.list_items(&entries[0].1).unwrap();
        assert!(
            matches!(list, [Value::Int(1), Value::Float(f), Value::Bool(true), Value::None] if *f == 2.5)
        );
        assert!(matches!(&entries[1].1, Value::Tuple(t) if t.len() == 2));
        assert_eq!(out.consumed, p.len());
    }

    #[test]
    fn memo_shares_containers() {
        // l = []; memo[0] = l; d = {'x': l}; l.append(7) after get -> d['x'] sees it.
        let p = [
            0x80, 2, b']', b'q', 0, b'}', 0x8c, 1, b'x', b'h', 0, b's', b'h', 0, b'K', 7, b'a',
            b'0', b'.',
        ];
        let out = run(&p).unwrap();
        let entries = out.dict_entries(&out.root).unwrap();
        assert!(matches!(
            out.list_items(&entries[0].1).unwrap(),
            [Value::Int(7)]
        ));
    }

    #[test]
    fn refuses_unlisted_globals_before_calling() {
        for (module, name) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
        ] {
            let mut p = vec![0x80, 2, b'c'];
            p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            p.extend_from_slice(b"X\x02\0\0\0ls\x85R.");
            match run(&p) {
                Err(WeightsError::PickleRefused { global, .. }) => {
                    assert_eq!(global, format!("{module}.{name}"))
                }
                other => panic!("{module}.{name}: {other:?}"),
            }
        }
        // STACK_GLOBAL (protocol 4) goes through the same list.
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93.";
        assert!(matches!(run(p), Err(WeightsError::PickleRefused { .. })));
    }

    #[test]
    fn lengths_beyond_input_and_underflow_are_errors() {
        assert!(run(b"\x80\x02X\xff\xff\xff\x7fab").is_err());
        assert!(run(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
        assert!(run(b"t.").is_err());
        assert!(run(b"(0.").is_err());
        assert!(run(b"h\x05.").is_err());
        assert!(run(b"").is_err());
        assert!(run(b"K\x01").is_err()); // no STOP
    }

    #[test]
    fn long1_decodes_twos_complement() {
        let out = run(b"\x8a\x02\xff\x7f.").unwrap();
        assert!(matches!(out.root, Value::Int(0x7fff)));
        let out = run(b"\x8a\x01\xff.").unwrap();
        assert!(matches!(out.root, Value::Int(-1)));
        let out = run(b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").unwrap();
        assert!(matches!(out.root, Value::BigInt));
    }
}
