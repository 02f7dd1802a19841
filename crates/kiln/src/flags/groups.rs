//! ComfyUI's mutually exclusive flag groups (`add_mutually_exclusive_group` in
//! `comfy/cli_args.py`), as one table. Giving two flags of a group is a parse error that names
//! both, like argparse's "not allowed with argument".
//!
//! The flags are global (allowed before and after a subcommand), and clap checks conflicts
//! only among the flags of one level: [`with_group_conflicts`] makes each flag conflict with
//! the rest of its group on every level, and [`first_conflict`] catches a pair split across
//! levels (`kiln --cpu doctor --lowvram`) after parsing.

use clap::{Arg, ArgMatches, Command};

/// One mutually exclusive group: its name and its flags.
pub struct ExclusiveGroup {
    /// A short name for the group (clap's group id).
    pub name: &'static str,
    /// The flags' clap ids, which are the [`super::ComfyArgs`] field names (the long name with
    /// `-` as `_`), in ComfyUI's order.
    pub members: &'static [&'static str],
}

/// Every group of ComfyUI's `cli_args.py` (at a125cd84), in its order. `--auto-launch` and
/// `--disable-auto-launch` are not a group there: both may be given, and disable wins.
pub const EXCLUSIVE_GROUPS: &[ExclusiveGroup] = &[
    ExclusiveGroup {
        name: "cuda_malloc_group",
        members: &["cuda_malloc", "disable_cuda_malloc"],
    },
    ExclusiveGroup {
        name: "force_precision_group",
        members: &["force_fp32", "force_fp16"],
    },
    ExclusiveGroup {
        name: "unet_dtype_group",
        members: &[
            "fp32_unet",
            "fp64_unet",
            "bf16_unet",
            "fp16_unet",
            "fp8_e4m3fn_unet",
            "fp8_e5m2_unet",
            "fp8_e8m0fnu_unet",
        ],
    },
    ExclusiveGroup {
        name: "vae_dtype_group",
        members: &["fp16_vae", "fp32_vae", "bf16_vae"],
    },
    ExclusiveGroup {
        name: "text_encoder_dtype_group",
        members: &[
            "fp8_e4m3fn_text_enc",
            "fp8_e5m2_text_enc",
            "fp16_text_enc",
            "fp32_text_enc",
            "bf16_text_enc",
        ],
    },
    ExclusiveGroup {
        name: "cache_group",
        members: &["cache_classic", "cache_lru", "cache_none"],
    },
    ExclusiveGroup {
        name: "attention_group",
        members: &[
            "use_split_cross_attention",
            "use_quad_cross_attention",
            "use_pytorch_cross_attention",
            "use_sage_attention",
            "use_flash_attention",
        ],
    },
    ExclusiveGroup {
        name: "upcast_group",
        members: &["force_upcast_attention", "dont_upcast_attention"],
    },
    ExclusiveGroup {
        name: "vram_group",
        members: &[
            "gpu_only",
            "highvram",
            "normalvram",
            "lowvram",
            "novram",
            "cpu",
        ],
    },
];

/// Makes `arg` conflict with the other members of its group. Applied to every argument of
/// [`super::ComfyArgs`]; conflicts, unlike clap groups, travel with global arguments into
/// subcommands.
pub(crate) fn with_group_conflicts(arg: Arg) -> Arg {
    let Some(group) = group_of(arg.get_id().as_str()) else {
        return arg;
    };
    let own_id = arg.get_id().clone();
    arg.conflicts_with_all(group.members.iter().filter(|member| **member != own_id))
}

fn group_of(id: &str) -> Option<&'static ExclusiveGroup> {
    EXCLUSIVE_GROUPS
        .iter()
        .find(|group| group.members.contains(&id))
}

/// The first two flags of one group given anywhere on the command line, as `--long` names, in
/// the order the group lists them. `matches` is the top level; each subcommand level is
/// searched too.
pub(crate) fn first_conflict(command: &Command, matches: &ArgMatches) -> Option<(String, String)> {
    let given = |id: &str| given_on_any_level(matches, id);
    EXCLUSIVE_GROUPS.iter().find_map(|group| {
        let mut present = group.members.iter().filter(|id| given(id));
        let first = present.next()?;
        let second = present.next()?;
        Some((long_flag(command, first), long_flag(command, second)))
    })
}

fn given_on_any_level(matches: &ArgMatches, id: &str) -> bool {
    let here = matches
        .value_source(id)
        .is_some_and(|source| source == clap::parser::ValueSource::CommandLine);
    here || matches
        .subcommand()
        .is_some_and(|(_, sub_matches)| given_on_any_level(sub_matches, id))
}

fn long_flag(command: &Command, id: &str) -> String {
    let long = command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(Arg::get_long)
        .unwrap_or(id);
    format!("--{long}")
}
