//! CPU plans use float weights in place from the checkpoint's memory map: no copy at load, the
//! same values as a copied load, readable again after their pages are let go; plans for other
//! devices (here a simulated Mac on the CPU) and in-memory files copy as before.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_runtime::{simulated, HeldTensor, LoadMode, PlanOptions, Planner, WeightStore};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};

fn load(checkpoint: &Checkpoint, profile: &str, kind: ComponentKind) -> WeightStore {
    let planner = Planner::new(PlanOptions::default(), simulated(profile).unwrap());
    let plan = planner.plan(checkpoint.detection()).unwrap();
    let part = plan.component(kind).unwrap();
    WeightStore::load(
        checkpoint,
        part,
        planner.profile_for(part.device),
        &Device::Cpu,
    )
    .unwrap()
}

fn mapped_count(store: &WeightStore) -> usize {
    store
        .names()
        .filter(|name| matches!(store.held(name).unwrap(), HeldTensor::Mapped { .. }))
        .count()
}

#[test]
fn cpu_plans_use_sixteen_bit_weights_in_place_with_the_copied_values() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    for kind in [ComponentKind::DiffusionModel, ComponentKind::Vae] {
        let mapped = load(&checkpoint, "cpu", kind);
        let copied = load(&checkpoint, "metal-m1", kind);
        let names: Vec<&str> = mapped.names().collect();
        assert!(
            mapped_count(&mapped) == names.len(),
            "{kind:?}: {} of {} tensors mapped",
            mapped_count(&mapped),
            names.len()
        );
        assert_eq!(mapped_count(&copied), 0, "{kind:?} on a simulated Mac");
        let values = |store: &WeightStore, name: &str| {
            store
                .get(name)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let before: Vec<Vec<f32>> = names.iter().map(|n| values(&mapped, n)).collect();
        {
            let _in_use = mapped.in_use();
        }
        mapped.release_pages();
        for (name, first) in names.iter().zip(&before) {
            assert_eq!(&values(&mapped, name), first, "{name} after its pages went");
            let held = mapped.held(name).unwrap();
            assert!(held.mapped_values().is_some(), "{name}");
            assert_eq!(held.held_as().to_string(), "f16", "{name}");
        }
        // A simulated Mac holds f16 too: the copy and the mapping agree value for value.
        for name in &names {
            let copy = copied.get(name).unwrap().to_dtype(DType::F32).unwrap();
            let copy = copy.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(copy, values(&mapped, name), "{name}");
        }
    }
}

/// A form derived from a weight ([`WeightStore::prepared`]: the kernels' packed bf16 weights) is
/// built once per use of the component and kept only while a guard holds it in use; the weight
/// it stands for stays readable, with the same values, after its pages were let go for it.
#[test]
fn derived_forms_are_kept_while_in_use_and_the_weight_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let store = load(&checkpoint, "cpu", ComponentKind::DiffusionModel);
    let name = store.names().next().unwrap().to_string();
    let before = store.get(&name).unwrap().flatten_all().unwrap();
    let before = before
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // Idle: built for the caller alone.
    assert!(!store.keeps_prepared());
    assert_eq!(
        store.prepared(&name, || Some(1u32), |_| 4).as_deref(),
        Some(&1)
    );
    assert_eq!(store.prepared_count(), 0);
    {
        let _in_use = store.in_use();
        assert!(store.keeps_prepared());
        assert_eq!(
            store.prepared(&name, || Some(2u32), |_| 4).as_deref(),
            Some(&2)
        );
        let again = store.prepared(&name, || -> Option<u32> { panic!("built twice") }, |_| 4);
        assert_eq!(again.as_deref(), Some(&2));
        assert_eq!(store.prepared_count(), 1);
        let now = store.get(&name).unwrap().flatten_all().unwrap();
        assert_eq!(
            now.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
            before
        );
        // Nothing to keep: nothing kept.
        assert!(store
            .prepared::<u32>("no such weight", || None, |_| 4)
            .is_none());
        assert_eq!(store.prepared_count(), 1);
    }
    assert_eq!(store.prepared_count(), 0, "let go with the guard");
    assert_eq!(
        store.prepared(&name, || Some(3u32), |_| 4).as_deref(),
        Some(&3)
    );
}

/// A streamed component (one memory cannot hold whole) keeps no derived forms: they would hold
/// it whole after all.
#[test]
fn a_streamed_component_keeps_no_derived_forms() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let planner = Planner::new(PlanOptions::default(), simulated("cpu").unwrap());
    let plan = planner.plan(checkpoint.detection()).unwrap();
    let mut part = plan
        .component(ComponentKind::DiffusionModel)
        .unwrap()
        .clone();
    part.load_mode = LoadMode::Streamed;
    part.resident_budget_bytes = 0;
    let store = WeightStore::load(
        &checkpoint,
        &part,
        planner.profile_for(part.device),
        &Device::Cpu,
    )
    .unwrap();
    let name = store.names().next().unwrap().to_string();
    let _in_use = store.in_use();
    assert!(!store.keeps_prepared());
    assert_eq!(
        store.prepared(&name, || Some(1u32), |_| 4).as_deref(),
        Some(&1)
    );
    assert_eq!(
        store.prepared(&name, || Some(2u32), |_| 4).as_deref(),
        Some(&2)
    );
    assert_eq!(store.prepared_count(), 0);
}
