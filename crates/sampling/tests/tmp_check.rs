use kiln_sampling::{NormalKernel, TorchGenerator};
fn load(p: &str) -> Vec<f32> { std::fs::read(p).unwrap().chunks(4).map(|c| f32::from_le_bytes([c[0],c[1],c[2],c[3]])).collect() }
fn run(k: NormalKernel) -> Vec<f32> {
    let mut out = vec![];
    for seed in [0u64,1,42,123456789] {
        let mut g = TorchGenerator::manual_seed(seed).with_kernel(k);
        out.extend(g.randn(&[1,4,64,64])); out.extend(g.randn(&[2,4,3,5])); out.extend(g.randn(&[7]));
    }
    out
}
#[test] fn check() {
    for (k, p) in [(NormalKernel::Avx2, "/tmp/randn_avx2.bin"), (NormalKernel::Scalar, "/tmp/randn_default.bin")] {
        let want = load(p); let got = run(k);
        let bad: Vec<usize> = (0..want.len()).filter(|&i| want[i].to_bits()!=got[i].to_bits()).collect();
        println!("{k:?}: {} mismatches of {}; first {:?}", bad.len(), want.len(), bad.iter().take(5).map(|&i| (i, want[i], got[i])).collect::<Vec<_>>());
    }
}
