mod unet_support;
use candle_core::{Device, Tensor};
use kiln_test_checkpoints::{Family, Storage};
use unet_support::*;

#[test]
fn scratch() {
    let dir = tempfile::tempdir().unwrap();
    for fam in [Family::Sd1, Family::Sd2, Family::Sdxl, Family::SdxlRefiner] {
        let unet = load_unet(fam, Storage::F32, dir.path());
        let x = pattern(&[4, 4, 8, 8], 0.5);
        let t = Tensor::new(&[10f32, 10.0, 10.0, 10.0], &Device::Cpu).unwrap();
        let c = context_for(&unet, 4, 4, 1.0);
        let y = adm_for(&unet, 4, 2.0);
        let all = unet.forward(&x, &t, &c, y.as_ref()).unwrap();
        let two = unet.forward(&x.narrow(0, 2, 2).unwrap(), &t.narrow(0, 2, 2).unwrap(), &c.narrow(0, 2, 2).unwrap(), y.as_ref().map(|y| y.narrow(0, 2, 2).unwrap()).as_ref()).unwrap();
        eprintln!("{fam:?} 4v2 {}", max_abs_diff(&all.narrow(0, 2, 2).unwrap(), &two));
    }
}
