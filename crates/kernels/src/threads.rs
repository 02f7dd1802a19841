//! The kernels' thread pool, sized to physical cores: SMT siblings share one core's FMA units,
//! so more threads than cores only add contention (and gemm's own threads run inside this pool,
//! so the two never oversubscribe each other).

use std::sync::OnceLock;

use rayon::prelude::*;

/// Physical cores of this machine (`KILN_THREADS` overrides; logical CPUs when the OS will not
/// say).
pub fn physical_cores() -> usize {
    if let Some(threads) = std::env::var("KILN_THREADS")
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return threads;
    }
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    linux_physical_cores().map_or(logical, |cores| cores.clamp(1, logical))
}

/// Distinct (package, core) pairs in `/proc/cpuinfo`.
fn linux_physical_cores() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::BTreeSet::new();
    let mut package = None;
    for line in info.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => package = value.trim().parse::<u32>().ok(),
            "core id" => {
                cores.insert((package, value.trim().parse::<u32>().ok()?));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(physical_cores())
            .thread_name(|i| format!("kiln-kernel-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Threads the kernels run on.
pub fn kernel_threads() -> usize {
    pool().map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
}

/// Runs `work` inside the kernel pool (rayon's global pool if it could not be built).
pub(crate) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// `values.map(f)` in parallel chunks.
pub(crate) fn par_map<A: Copy + Sync, B: Send>(values: &[A], f: impl Fn(A) -> B + Sync) -> Vec<B> {
    install(|| {
        values
            .par_iter()
            .with_min_len(1 << 14)
            .map(|&v| f(v))
            .collect()
    })
}

/// Whether callers should use these kernels: true unless the environment variable
/// `KILN_CPU_KERNELS` is `candle` (read once), which benchmarks use to time candle's own ops in
/// the same build.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED
        .get_or_init(|| std::env::var("KILN_CPU_KERNELS").map_or(true, |value| value != "candle"))
}
