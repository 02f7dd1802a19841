//! Shared by the fuzz targets: parse bytes as a weight file and, if that succeeds, read every
//! tensor every way the host can, so that accepted files are also proven safe to use.

use kiln_weights::WeightFile;

/// Must never panic, whatever `bytes` are.
pub fn exercise(name: &str, bytes: Vec<u8>) {
    let Ok(file) = WeightFile::from_bytes(name, bytes) else {
        return;
    };
    let _ = file.metadata().len();
    for info in file.tensors() {
        let _ = info.elements();
        let _ = file.raw_bytes(&info.name);
        let _ = file.to_f32_vec(&info.name);
    }
}
