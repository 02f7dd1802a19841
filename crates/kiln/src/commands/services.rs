//! The node services every executing command builds the same way from the flags: folders, the
//! device profile (probed, or `--simulate-device`), the planner, metadata and preview settings.

use kiln_folders::FolderPaths;
use kiln_nodes::{NodeServices, PreviewMethod as NodePreview};
use kiln_runtime::{detect_device, simulated_profile, CapabilityProfile, Planner};

use crate::flags::{ComfyArgs, PreviewMethod};

/// Services for `folders` on the device the flags ask for, and that device's profile. Why the
/// CPU was chosen instead of a GPU, when it was, is logged.
pub(crate) fn node_services(
    global: &ComfyArgs,
    simulate: Option<&str>,
    folders: FolderPaths,
) -> anyhow::Result<(NodeServices, CapabilityProfile)> {
    let options = global.plan_options();
    let (profile, simulated) = match simulate {
        Some(name) => (simulated_profile(name)?, true),
        None => {
            let (profile, fallback) = detect_device(&options);
            if let Some(why) = fallback {
                tracing::info!("{why}");
            }
            (profile, false)
        }
    };
    let preview = match global.preview_method() {
        PreviewMethod::NoPreviews => NodePreview::None,
        PreviewMethod::Auto => NodePreview::Auto,
        PreviewMethod::Latent2rgb => NodePreview::Latent2Rgb,
        PreviewMethod::Taesd => NodePreview::Taesd,
    };
    let services = NodeServices::builder(folders, Planner::new(options, profile.clone()))
        .simulated(simulated)
        .disable_metadata(global.disable_metadata)
        .preview_method(preview)
        .preview_size(global.preview_size())
        .build();
    Ok((services, profile))
}
