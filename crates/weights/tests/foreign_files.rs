//! Files written by real PyTorch and the Python `safetensors` package
//! (`scripts/reference/foreign_files.py`, fixtures in `tests/fixtures/foreign/`): fp8 decoding and
//! encoding equal torch's, `torch.save` zip and legacy checkpoints read back exactly as torch saved
//! them, and a malicious `torch.save` pickle is refused without running anything.

// Helpers outside `#[test]` fns parse committed fixtures; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kiln_weights::{
    e4m3fn_to_f32, e5m2_to_f32, f32_to_e4m3fn, f32_to_e4m3fn_saturating, f32_to_e5m2,
    f32_to_e5m2_saturating, FileFormat, StorageDType, WeightFile, WeightsError, E4M3FN_TABLE,
    E5M2_TABLE,
};
use serde_json::Value;

/// Baked into `malicious.pt` by the generator: `os.system("touch <this>")`.
const MALICIOUS_MARKER: &str = "/tmp/kiln-foreign-files-malicious-marker";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

fn fixture_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A value as the generator writes it: a number, or `"nan"`, `"inf"`, `"-inf"`.
fn json_f32(value: &Value) -> f32 {
    match value {
        Value::String(s) if s == "nan" => f32::NAN,
        Value::String(s) if s == "inf" => f32::INFINITY,
        Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        other => other.as_f64().unwrap() as f32,
    }
}

fn json_f32_list(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(json_f32).collect()
}

/// Bit-exact equality (so `-0.0 != 0.0`), except that any NaN equals any NaN.
fn same_f32(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

struct Fp8Format {
    name: &'static str,
    dtype: StorageDType,
    decode: fn(u8) -> f32,
    table: &'static [f32; 256],
    encode: fn(f32) -> u8,
}

const FP8_FORMATS: [Fp8Format; 2] = [
    Fp8Format {
        name: "e4m3fn",
        dtype: StorageDType::F8E4M3,
        decode: e4m3fn_to_f32,
        table: &E4M3FN_TABLE,
        encode: f32_to_e4m3fn,
    },
    Fp8Format {
        name: "e5m2",
        dtype: StorageDType::F8E5M2,
        decode: e5m2_to_f32,
        table: &E5M2_TABLE,
        encode: f32_to_e5m2,
    },
];

#[test]
fn fp8_decoding_equals_torch_for_all_256_codes() {
    let expected = fixture_json("fp8_codes.json");
    let file = WeightFile::open(fixture("fp8_codes.safetensors")).unwrap();
    assert_eq!(file.format(), FileFormat::Safetensors);
    let mut mismatches = Vec::new();
    for format in &FP8_FORMATS {
        let torch = json_f32_list(&expected[format.name]);
        assert_eq!(torch.len(), 256, "{}", format.name);
        let info = file.get(format.name).unwrap();
        assert_eq!(
            (info.dtype, info.shape.as_slice()),
            (format.dtype, &[256][..])
        );
        // The file holds the codes 0..=255 in order, as written by safetensors.torch.save_file.
        let codes: Vec<u8> = (0..=255).collect();
        assert_eq!(&*file.raw_bytes(format.name).unwrap(), codes.as_slice());
        let from_file = file.to_f32_vec(format.name).unwrap();
        for (code, &want) in torch.iter().enumerate() {
            let byte = code as u8;
            let got = [
                ("decode fn", (format.decode)(byte)),
                ("table", format.table[code]),
                ("to_f32_vec", from_file[code]),
            ];
            for (how, value) in got {
                if !same_f32(value, want) {
                    mismatches.push(format!(
                        "{} code 0x{byte:02x} ({how}): torch {want:e}, kiln {value:e}",
                        format.name
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// One encoder case from `fp8_codes.json`: the f32 input and the byte torch gave.
struct EncodeCase {
    input: f32,
    torch: u8,
}

fn encode_cases(format: &Fp8Format) -> Vec<EncodeCase> {
    let expected = fixture_json("fp8_codes.json");
    let case = &expected[format!("{}_from_f32", format.name)];
    let inputs: Vec<f32> = case["input_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bits| f32::from_bits(bits.as_u64().unwrap() as u32))
        .collect();
    let bytes = case["bytes"].as_array().unwrap();
    assert_eq!(inputs.len(), bytes.len());
    assert!(inputs.len() > 100, "{}: too few cases", format.name);
    // The readable copy must say the same as the bit patterns (guards the generator).
    for (x, readable) in inputs.iter().zip(json_f32_list(&case["input"])) {
        assert!(same_f32(*x, readable), "{x:e} vs {readable:e}");
    }
    inputs
        .into_iter()
        .zip(bytes)
        .map(|(input, byte)| EncodeCase {
            input,
            torch: byte.as_u64().unwrap() as u8,
        })
        .collect()
}

/// Inputs on which every PyTorch release agrees: not NaN and not beyond the largest finite code
/// (torch's e4m3fn overflow behaviour changed in PR #178817, see below).
fn in_range(format: &Fp8Format, x: f32) -> bool {
    let limit = match format.dtype {
        StorageDType::F8E4M3 => 464.0,
        _ => 61439.0,
    };
    x.abs() <= limit
}

fn mismatches(
    format: &Fp8Format,
    encoder: (&str, fn(f32) -> u8),
    cases: &[EncodeCase],
) -> Vec<String> {
    cases
        .iter()
        .filter_map(|case| {
            let got = (encoder.1)(case.input);
            (got != case.torch).then(|| {
                format!(
                    "{}({:e} = 0x{:08x}): torch 0x{:02x}, kiln 0x{got:02x} ({})",
                    encoder.0,
                    case.input,
                    case.input.to_bits(),
                    case.torch,
                    format.name
                )
            })
        })
        .collect()
}

#[test]
fn fp8_encoding_equals_torch_for_ties_subnormals_and_normal_range() {
    let mut found = Vec::new();
    for format in &FP8_FORMATS {
        let cases: Vec<EncodeCase> = encode_cases(format)
            .into_iter()
            .filter(|c| in_range(format, c.input))
            .collect();
        assert!(cases.len() > 90, "{}", format.name);
        let saturating = match format.dtype {
            StorageDType::F8E4M3 => f32_to_e4m3fn_saturating as fn(f32) -> u8,
            _ => f32_to_e5m2_saturating,
        };
        found.extend(mismatches(
            format,
            ("pytorch-compatible", format.encode),
            &cases,
        ));
        found.extend(mismatches(format, ("saturating", saturating), &cases));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The installed torch (2.15, with PR #178817 "Properly saturate E4M3 on finite-overflow on
/// CPU/C++ conversion code") turns e4m3fn overflow and ±inf into ±448, exactly like Kiln's
/// saturating encoder; older releases gave NaN, as Kiln's `f32_to_e4m3fn` still does.
#[test]
fn e4m3fn_saturating_encoder_equals_this_torch_everywhere() {
    let format = &FP8_FORMATS[0];
    let found = mismatches(
        format,
        ("f32_to_e4m3fn_saturating", f32_to_e4m3fn_saturating),
        &encode_cases(format),
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn fp8_encoding_equals_torch_for_overflow_infinities_and_nan() {
    let mut found = Vec::new();
    for format in &FP8_FORMATS {
        let name = format!("f32_to_{}", format.name);
        found.extend(mismatches(
            format,
            (&name, format.encode),
            &encode_cases(format),
        ));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

fn storage_dtype(torch_name: &str) -> StorageDType {
    match torch_name {
        "float32" => StorageDType::F32,
        "float16" => StorageDType::F16,
        "bfloat16" => StorageDType::BF16,
        "float8_e4m3fn" => StorageDType::F8E4M3,
        "float8_e5m2" => StorageDType::F8E5M2,
        "int64" => StorageDType::I64,
        "int32" => StorageDType::I32,
        "uint8" => StorageDType::U8,
        "bool" => StorageDType::Bool,
        other => panic!("fixture has an unexpected dtype {other}"),
    }
}

/// Opens `file_name` and compares everything with what torch saved (from `torch_expected.json`).
fn check_torch_file(file_name: &str, format: FileFormat) {
    let all = fixture_json("torch_expected.json");
    let expected = &all[file_name];
    assert_eq!(expected["format"], format.name(), "{file_name}");
    let file = WeightFile::open(fixture(file_name)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.format(), format);
    assert_eq!(
        file.metadata().get("global_step").map(String::as_str),
        Some("10"),
        "{file_name} metadata {:?}",
        file.metadata()
    );
    let tensors = expected["tensors"].as_array().unwrap();
    let want_names: Vec<&str> = tensors
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let got_names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(got_names, want_names, "{file_name}: tensor names");
    let mut mismatches = Vec::new();
    for tensor in tensors {
        let name = tensor["name"].as_str().unwrap();
        let info = file.get(name).unwrap();
        let dtype = storage_dtype(tensor["dtype"].as_str().unwrap());
        let shape: Vec<usize> = tensor["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        if (info.dtype, &info.shape) != (dtype, &shape) {
            mismatches.push(format!(
                "{name}: torch {dtype} {shape:?}, kiln {} {:?}",
                info.dtype, info.shape
            ));
            continue;
        }
        let want = json_f32_list(&tensor["values"]);
        match file.to_f32_vec(name) {
            Ok(got)
                if got.len() == want.len()
                    && got.iter().zip(&want).all(|(a, b)| same_f32(*a, *b)) => {}
            Ok(got) => mismatches.push(format!("{name}: torch {want:?}, kiln {got:?}")),
            Err(e) => mismatches.push(format!("{name}: {e}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{file_name}:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn torch_zip_checkpoint_reads_exactly_as_torch_saved_it() {
    check_torch_file("torch_zip.pt", FileFormat::TorchZip);
}

#[test]
fn torch_zip_checkpoint_without_fp8_reads_exactly_as_torch_saved_it() {
    check_torch_file("torch_zip_no_fp8.pt", FileFormat::TorchZip);
}

#[test]
fn torch_legacy_checkpoint_reads_exactly_as_torch_saved_it() {
    check_torch_file("torch_legacy.pt", FileFormat::TorchLegacy);
    // The generator records why the fp8 tensors are missing from the legacy file.
    let all = fixture_json("torch_expected.json");
    let skipped: Vec<&str> = all["torch_legacy.pt"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["float8_e4m3fn", "float8_e5m2"]);
}

#[test]
fn malicious_torch_pickle_is_refused_without_running_it() {
    let path = fixture("malicious.pt");
    let bytes = std::fs::read(&path).unwrap();
    // The payload really is in there (data.pkl is stored uncompressed by torch.save).
    let command = format!("touch {MALICIOUS_MARKER}");
    assert!(bytes
        .windows(command.len())
        .any(|w| w == command.as_bytes()));
    let marker = Path::new(MALICIOUS_MARKER);
    let _ = std::fs::remove_file(marker);

    let opened = WeightFile::open(&path);
    match &opened {
        Err(WeightsError::PickleRefused { file, global }) => {
            assert_eq!(file, &path);
            assert!(global.ends_with(".system"), "refused `{global}`");
        }
        other => panic!("expected PickleRefused, got {other:?}"),
    }
    let from_memory = WeightFile::from_bytes("malicious.pt", bytes);
    assert!(
        matches!(from_memory, Err(WeightsError::PickleRefused { .. })),
        "{from_memory:?}"
    );
    assert!(!marker.exists(), "reading malicious.pt ran its payload");
}
