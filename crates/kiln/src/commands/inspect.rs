//! `kiln inspect FILE… [--json]`: what each checkpoint is — format, architecture and variant,
//! prediction type, components with parameter counts, storage-dtype histogram and metadata.
//!
//! A file that cannot be read or recognised still gets a report (format, tensor count and dtypes
//! when the file could be read) plus the error; the exit code is non-zero if any file failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_detect::{Checkpoint, Component, DetectError, Detection};
use kiln_folders::FolderPaths;
use kiln_weights::{StorageDType, WeightFile};
use serde::Serialize;

use super::human;
use super::resolve::model_path;
use crate::flags::InspectArgs;

/// Metadata values longer than this are shortened in text output (JSON keeps them whole).
const METADATA_PREVIEW_CHARS: usize = 120;

/// Everything `inspect` says about one file; also its `--json` shape.
#[derive(Debug, Serialize)]
struct FileReport {
    file: PathBuf,
    format: Option<String>,
    files: usize,
    tensors: usize,
    architecture: Option<String>,
    variant: Option<String>,
    prediction: Option<String>,
    components: Vec<ComponentReport>,
    dtypes: BTreeMap<String, u64>,
    metadata: BTreeMap<String, String>,
    unclaimed_keys: usize,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One component of a detected checkpoint.
#[derive(Debug, Serialize)]
struct ComponentReport {
    kind: String,
    layout: String,
    prefix: String,
    params: u64,
    dominant_dtype: String,
    scaled_fp8: Option<String>,
    dtypes: BTreeMap<String, u64>,
    facts: BTreeMap<String, u64>,
}

impl From<&Component> for ComponentReport {
    fn from(component: &Component) -> Self {
        ComponentReport {
            kind: component.kind.name().to_string(),
            layout: serde_name(&component.layout),
            prefix: component.prefix.clone(),
            params: component.params,
            dominant_dtype: component.dominant_dtype.name().to_string(),
            scaled_fp8: component.scaled_fp8.map(|d| d.name().to_string()),
            dtypes: named_histogram(&component.dtypes),
            facts: component.facts.clone(),
        }
    }
}

/// Runs `kiln inspect`.
pub fn inspect(args: &InspectArgs, folders: Option<&FolderPaths>) -> ExitCode {
    let reports: Vec<FileReport> = args
        .files
        .iter()
        .map(|given| report(&model_path(given, folders)))
        .collect();
    let failed = reports.iter().any(|r| r.error.is_some());
    if args.json {
        // One object for one file, an array of objects for several.
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        match json {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("kiln: error: cannot encode the report as JSON: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_text(report);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report(path: &Path) -> FileReport {
    let mut report = FileReport {
        file: path.to_path_buf(),
        format: None,
        files: 0,
        tensors: 0,
        architecture: None,
        variant: None,
        prediction: None,
        components: Vec::new(),
        dtypes: BTreeMap::new(),
        metadata: BTreeMap::new(),
        unclaimed_keys: 0,
        notes: Vec::new(),
        error: None,
    };
    match Checkpoint::open(path) {
        Ok(checkpoint) => {
            describe_files(&mut report, checkpoint.files());
            describe_detection(&mut report, checkpoint.detection());
        }
        Err(error) => {
            // Say what the file is even when detection fails, if it can be read at all.
            if !matches!(error, DetectError::Weights { .. }) && path.is_file() {
                if let Ok(file) = WeightFile::open(path) {
                    describe_files(&mut report, std::slice::from_ref(&file));
                }
            }
            report.error = Some(error.to_string());
        }
    }
    report
}

fn describe_files(report: &mut FileReport, files: &[WeightFile]) {
    report.files = files.len();
    report.format = files.first().map(|f| f.format().name().to_string());
    let mut histogram: BTreeMap<StorageDType, u64> = BTreeMap::new();
    for file in files {
        report.tensors += file.tensors().len();
        for tensor in file.tensors() {
            *histogram.entry(tensor.dtype).or_default() += tensor.elements();
        }
        for (key, value) in file.metadata() {
            report.metadata.entry(key.clone()).or_insert(value.clone());
        }
    }
    report.dtypes = named_histogram(&histogram);
}

fn describe_detection(report: &mut FileReport, detection: &Detection) {
    report.architecture = Some(detection.architecture.name().to_string());
    report.variant = Some(detection.variant.clone());
    report.prediction = detection.prediction.map(|p| serde_name(&p));
    report.components = detection.components.iter().map(Into::into).collect();
    report.unclaimed_keys = detection.unclaimed_keys;
    report.notes = detection.notes.clone();
}

fn named_histogram(histogram: &BTreeMap<StorageDType, u64>) -> BTreeMap<String, u64> {
    histogram
        .iter()
        .map(|(dtype, n)| (dtype.name().to_string(), *n))
        .collect()
}

/// The serde name of a unit enum variant (`Layout::Ldm` → `ldm`).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::from("?"),
    }
}

fn print_text(report: &FileReport) {
    println!("{}", report.file.display());
    if let Some(format) = &report.format {
        let files = if report.files > 1 {
            format!(", {} files", report.files)
        } else {
            String::new()
        };
        println!(
            "  format        {format}{files}, {} tensors",
            report.tensors
        );
    }
    if let Some(architecture) = &report.architecture {
        let variant = report.variant.as_deref().unwrap_or("");
        let prediction = report
            .prediction
            .as_ref()
            .map(|p| format!(", {p}-prediction"))
            .unwrap_or_default();
        println!("  architecture  {architecture} ({variant}){prediction}");
    }
    if !report.components.is_empty() {
        println!("  components");
        for c in &report.components {
            let scaled = c
                .scaled_fp8
                .as_ref()
                .map(|d| format!(", scaled {d}"))
                .unwrap_or_default();
            println!(
                "    {:<16} {:>9} params  {:<11} {} layout{scaled}",
                c.kind,
                human::count(c.params),
                c.dominant_dtype,
                c.layout,
            );
        }
    }
    if !report.dtypes.is_empty() {
        let total: u64 = report.dtypes.values().sum();
        let parts: Vec<String> = report
            .dtypes
            .iter()
            .map(|(dtype, n)| {
                format!(
                    "{dtype} {} ({})",
                    human::count(*n),
                    human::percent(*n, total)
                )
            })
            .collect();
        println!("  dtypes        {}", parts.join(", "));
    }
    if report.unclaimed_keys > 0 {
        println!(
            "  unclaimed     {} tensors belong to no component (EMA, optimizer state, …); not loaded",
            report.unclaimed_keys
        );
    }
    for note in &report.notes {
        println!("  note          {note}");
    }
    if !report.metadata.is_empty() {
        println!("  metadata");
        for (key, value) in &report.metadata {
            let shown: String = value.chars().take(METADATA_PREVIEW_CHARS).collect();
            let ellipsis = if shown.len() < value.len() { "…" } else { "" };
            println!("    {key} = {shown}{ellipsis}");
        }
    }
    if let Some(error) = &report.error {
        println!("  error         {error}");
    }
}
