//! `kiln doctor [--simulate-device P] [FILE] [--json]`: the backends this build has, the
//! capability table of the device Kiln would use (or of a simulated one), and for FILE the full
//! plan — device, storage and compute dtypes, attention, load mode, widening, memory, and why.

use std::process::ExitCode;

use anyhow::Context;
use kiln_detect::Checkpoint;
use kiln_folders::FolderPaths;
use kiln_runtime::{
    detect_device, detect_host, probe_cuda, probe_metal, simulated_profile, BackendKind,
    CapabilityProfile, Plan, PlanOptions, Planner,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::human;
use super::resolve::model_path;
use crate::flags::DoctorArgs;

/// Whether one backend is usable in this build on this machine.
#[derive(Debug, Serialize)]
struct BackendStatus {
    backend: &'static str,
    available: bool,
    detail: String,
}

/// Runs `kiln doctor`.
pub fn doctor(
    args: &DoctorArgs,
    options: &PlanOptions,
    simulate: Option<&str>,
    folders: Option<&FolderPaths>,
) -> anyhow::Result<ExitCode> {
    let backends = probe_backends();
    let (profile, fallback) = match simulate {
        Some(name) => (simulated_profile(name)?, None),
        None => detect_device(options),
    };
    let mut planner = Planner::new(options.clone(), profile.clone());
    if simulate.is_none() && profile.backend != BackendKind::Cpu {
        planner = planner.with_host(detect_host());
    }
    let planned = match &args.file {
        Some(given) => {
            let path = model_path(given, folders);
            let checkpoint = Checkpoint::open(&path)
                .with_context(|| format!("cannot plan for {}", path.display()))?;
            let plan = planner.plan_checkpoint(&checkpoint)?;
            Some((path, checkpoint, plan))
        }
        None => None,
    };

    if args.json {
        let mut out = json!({
            "backends": backends,
            "profile": profile,
            "simulated": simulate.is_some(),
            "fallback": fallback,
        });
        if let Some((path, checkpoint, plan)) = &planned {
            let detection = checkpoint.detection();
            out["file"] = json!(path);
            out["architecture"] = json!(detection.architecture.name());
            out["variant"] = json!(detection.variant);
            out["plan"] = plan.to_json();
            out["peak_bytes"] = json!(plan.peak_bytes);
            out["host_bytes"] = json!(plan.host_bytes);
            out["memory"] = json!(plan.memory);
            out["text_encoders"] = json!(plan.text_encoders);
            out["text_encoders_reason"] = json!(plan.text_encoders_reason);
            out["notes"] = json!(plan.notes);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    print_backends(&backends);
    println!();
    print_profile(&profile, simulate.is_some());
    if let Some(why) = &fallback {
        println!("  note: {why}");
    }
    if let Some((path, checkpoint, plan)) = &planned {
        println!();
        let detection = checkpoint.detection();
        println!(
            "plan for {} ({} {})",
            path.display(),
            detection.architecture,
            detection.variant
        );
        print_plan(plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn probe_backends() -> Vec<BackendStatus> {
    let host = detect_host();
    let mut statuses = vec![BackendStatus {
        backend: "cpu",
        available: true,
        detail: host.description.clone(),
    }];
    for (backend, probed) in [("cuda", probe_cuda(0)), ("metal", probe_metal())] {
        statuses.push(match probed {
            Ok(profile) => BackendStatus {
                backend,
                available: true,
                detail: profile.description,
            },
            Err(error) => BackendStatus {
                backend,
                available: false,
                detail: error.to_string(),
            },
        });
    }
    statuses
}

fn print_backends(backends: &[BackendStatus]) {
    println!("backends");
    for status in backends {
        let mark = if status.available { "yes" } else { "no " };
        println!("  {:<6} {mark}  {}", status.backend, status.detail);
    }
}

fn print_profile(profile: &CapabilityProfile, simulated: bool) {
    let origin = if simulated { " (simulated)" } else { "" };
    println!("device {}{origin}: {}", profile.name, profile.description);
    println!(
        "  memory        {} total, {} free{}",
        human::bytes(profile.total_memory),
        human::bytes(profile.free_memory),
        if profile.unified_memory {
            ", unified with the CPU"
        } else {
            ""
        }
    );
    let holds: Vec<&str> = profile.holds.iter().map(|d| d.name()).collect();
    println!("  holds         {}", holds.join(" "));
    for (family, dtypes) in &profile.computes {
        let names: Vec<&str> = dtypes.iter().map(|d| d.as_str()).collect();
        println!(
            "  computes      {:<12} {}",
            format!("{family:?}").to_lowercase(),
            names.join(" ")
        );
    }
    let quantized: Vec<&str> = profile.quantized.iter().map(|g| g.name()).collect();
    println!("  gguf kernels  {}", quantized.join(" "));
    println!(
        "  attention     fused {}, flash {}",
        yes_no(profile.fused_attention),
        yes_no(profile.flash_attention)
    );
    println!("  fp8 matmul    {}", yes_no(profile.fp8_matmul));
    if !profile.cpu_features.is_empty() {
        println!("  cpu features  {}", profile.cpu_features.join(" "));
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn print_plan(plan: &Plan) {
    for component in &plan.components {
        let fields = serde_json::to_value(component).unwrap_or(Value::Null);
        let text = |key: &str| {
            fields
                .get(key)
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        println!("  {}", component.component);
        println!(
            "    device {}  storage {} (held as {})  compute {}  attention {}{}  {}  widening {}  ~{}",
            text("device"),
            text("storage_dtype"),
            text("held_as"),
            text("compute_dtype"),
            text("attention"),
            if component.upcast_attention {
                " (upcast)"
            } else {
                ""
            },
            text("load_mode"),
            text("widening"),
            human::bytes(component.weight_bytes),
        );
        println!("    why: {}", component.reason);
    }
    print_memory(plan);
    for note in &plan.notes {
        println!("  note: {note}");
    }
}

/// The memory estimate: per part, then the peaks and the text-encoder policy.
fn print_memory(plan: &Plan) {
    let memory = &plan.memory;
    let [width, height] = memory.resolution;
    println!("  memory (estimated, one generation at {width}×{height}):");
    for part in &memory.parts {
        let mut line = format!(
            "    {:<16} device ~{}  host ~{}",
            part.component.name(),
            human::bytes(part.device_bytes),
            human::bytes(part.host_bytes)
        );
        if part.largest_layer_bytes > 0 {
            line.push_str(&format!(
                "  largest widened layer ~{}",
                human::bytes(part.largest_layer_bytes)
            ));
        }
        if part.activation_bytes > 0 {
            line.push_str(&format!(
                "  activations ~{}",
                human::bytes(part.activation_bytes)
            ));
        }
        println!("{line}");
    }
    if memory.shared_pool {
        println!(
            "  peak memory ~{} (device and host share one pool)",
            human::bytes(memory.device_peak_bytes)
        );
    } else {
        println!(
            "  peak memory on the device ~{}, host ~{}",
            human::bytes(memory.device_peak_bytes),
            human::bytes(memory.host_peak_bytes)
        );
    }
    println!(
        "  weights alone: device ~{}, host ~{}",
        human::bytes(plan.peak_bytes),
        human::bytes(plan.host_bytes)
    );
    println!("  text encoders: {}", plan.text_encoders_reason);
}
