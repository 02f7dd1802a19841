//! Model sampling tables and every scheduler against values ComfyUI computed
//! (`model_sampling.json`, `schedules.json`).

mod common;

use common::{bits, floats, load_json, max_relative_error, model_samplings};
use kiln_sampling::schedulers::{calculate_sigmas, scheduler_by_name};

#[test]
fn sigma_tables_are_bit_exact() {
    let fixture = load_json("model_sampling.json");
    let samplings = model_samplings();
    for (name, entry) in fixture.as_object().unwrap() {
        let sampling = &samplings[name];
        let table = sampling.sigmas();
        assert_eq!(
            table.len(),
            entry["len"].as_u64().unwrap() as usize,
            "{name}"
        );
        let all_bits: Vec<u32> = table.iter().map(|s| s.to_bits()).collect();
        assert_eq!(
            common::fnv1a64(&all_bits),
            entry["sigmas_fnv1a64"].as_str().unwrap(),
            "{name}"
        );
        let stride = entry["sigmas_stride"].as_u64().unwrap() as usize;
        let sampled: Vec<u32> = all_bits.iter().step_by(stride).copied().collect();
        assert_eq!(sampled, bits(&entry["sigmas_bits"]), "{name}");
    }
}

#[test]
fn timestep_sigma_and_percent_conversions_match() {
    let fixture = load_json("model_sampling.json");
    let samplings = model_samplings();
    for (name, entry) in fixture.as_object().unwrap() {
        let sampling = &samplings[name];
        let probes = floats(&entry["timestep_probe_bits"]);
        let want = floats(&entry["timestep_bits"]);
        let got: Vec<f32> = probes.iter().map(|&s| sampling.timestep(s)).collect();
        assert_eq!(got, want, "{name} timestep");

        let probes = floats(&entry["sigma_probe_bits"]);
        let want = floats(&entry["sigma_bits"]);
        let got: Vec<f32> = probes.iter().map(|&t| sampling.sigma(t)).collect();
        assert_eq!(got, want, "{name} sigma");

        for (percent, want) in entry["percent_probe"]
            .as_array()
            .unwrap()
            .iter()
            .zip(entry["percent_to_sigma"].as_array().unwrap())
        {
            let got = sampling.percent_to_sigma(percent.as_f64().unwrap());
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{name} percent {percent}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn every_scheduler_matches_comfyui() {
    let fixture = load_json("schedules.json");
    let samplings = model_samplings();
    let mut inexact = Vec::new();
    for case in fixture["schedules"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let name = case["scheduler"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let want = floats(&case["bits"]);
        let got =
            calculate_sigmas(&samplings[model], scheduler_by_name(name).unwrap(), steps).unwrap();
        let error = max_relative_error(&got, &want);
        assert!(
            error <= 1e-6,
            "{model} {name} {steps}: relative error {error}\n got {got:?}\nwant {want:?}"
        );
        if got
            .iter()
            .zip(&want)
            .any(|(g, w)| g.to_bits() != w.to_bits())
        {
            inexact.push(format!("{model}/{name}/{steps}"));
        }
    }
    // torch evaluates exp/pow/tan with SLEEF vector code, Kiln with the C library: those may
    // differ in the last bit, everything else is bit-exact.
    let total = fixture["schedules"].as_array().unwrap().len();
    assert!(
        inexact.len() * 10 < total,
        "too many inexact schedules: {inexact:?}"
    );
}

#[test]
fn ksampler_sigma_rules_match_comfyui() {
    use kiln_sampling::ksampler_sigmas;
    use kiln_sampling::samplers::sampler_by_name;
    let fixture = load_json("schedules.json");
    let samplings = model_samplings();
    for case in fixture["ksampler"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let scheduler = scheduler_by_name(case["scheduler"].as_str().unwrap()).unwrap();
        let sampler = sampler_by_name(case["sampler"].as_str().unwrap()).unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let denoise = case["denoise"].as_f64().unwrap();
        let want = floats(&case["bits"]);
        let got = ksampler_sigmas(&samplings[model], scheduler, sampler, steps, denoise).unwrap();
        let error = max_relative_error(&got, &want);
        assert!(error <= 1e-6, "{case}: got {got:?}");
    }
}
