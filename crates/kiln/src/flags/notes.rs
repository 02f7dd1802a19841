//! The lines Kiln prints about the flags before it starts: one warning per ComfyUI flag it
//! accepts but ignores, and a note about environment variables that only matter to PyTorch.

use std::env;

use super::support::{FlagSupport, COMFY_FLAGS};
use super::ComfyArgs;

/// The environment variable PyTorch on macOS needs so unsupported ops fall back to the CPU.
pub const MPS_FALLBACK_VARIABLE: &str = "PYTORCH_ENABLE_MPS_FALLBACK";

const MPS_FALLBACK_NOTE: &str = "note: PYTORCH_ENABLE_MPS_FALLBACK is not needed: Kiln falls back per layer automatically (fp8 is widened where the device cannot compute it)";

impl ComfyArgs {
    /// Every given flag that Kiln accepts for compatibility but does not act on, as its long
    /// name without `--`, in ComfyUI's flag order.
    pub fn unimplemented_flags(&self) -> Vec<&'static str> {
        COMFY_FLAGS
            .iter()
            .filter(|entry| entry.support == FlagSupport::NotImplemented && (entry.given)(self))
            .map(|entry| entry.name)
            .collect()
    }

    /// One line per [`Self::unimplemented_flags`] entry, ready to print.
    pub fn compatibility_warnings(&self) -> Vec<String> {
        self.unimplemented_flags()
            .into_iter()
            .map(|name| {
                format!(
                    "warning: --{name} is accepted for ComfyUI compatibility but not implemented by Kiln yet"
                )
            })
            .collect()
    }
}

/// The note to print when `PYTORCH_ENABLE_MPS_FALLBACK` is set, which ComfyUI guides tell Mac
/// users to do.
pub fn mps_fallback_note() -> Option<&'static str> {
    mps_fallback_note_for(env::var_os(MPS_FALLBACK_VARIABLE).is_some())
}

fn mps_fallback_note_for(variable_is_set: bool) -> Option<&'static str> {
    variable_is_set.then_some(MPS_FALLBACK_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mps_note_only_when_set() {
        assert_eq!(mps_fallback_note_for(false), None);
        let note = mps_fallback_note_for(true).unwrap();
        assert!(note.starts_with("note: PYTORCH_ENABLE_MPS_FALLBACK is not needed"));
        assert!(!note.contains('\n'));
    }
}
