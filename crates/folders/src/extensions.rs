//! Which files a folder key lists: ComfyUI's extension sets and its `splitext` rule.

use serde::Serialize;

/// ComfyUI's `supported_pt_extensions`: the files its model loaders open.
pub const MODEL_EXTENSIONS: &[&str] = &[
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".pkl",
    ".sft",
];

/// [`MODEL_EXTENSIONS`] plus `.gguf`. ComfyUI itself does not list GGUF files;
/// city96's ComfyUI-GGUF lists them under its own `unet_gguf`/`clip_gguf` keys. Kiln loads
/// GGUF natively, so its diffusion-model and text-encoder folders list them too.
pub const MODEL_EXTENSIONS_WITH_GGUF: &[&str] = &[
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".pkl",
    ".sft",
    ".gguf",
];

/// Which entries of a folder a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Extensions {
    /// Files whose extension (lower-cased, with the dot) is in the list.
    Only(&'static [&'static str]),
    /// Files with no extension at all: ComfyUI's `{""}` set, used by `classifiers`.
    NoExtension,
    /// Every file: ComfyUI's empty set, used by `custom_nodes` and by keys that only an
    /// extra model paths file defines.
    Any,
    /// Folders holding a `model_index.json` (the `diffusers` key), listed the way ComfyUI's
    /// `DiffusersLoader` lists them.
    DiffusersFolders,
}

impl Extensions {
    /// Whether a file called `file_name` belongs in a listing. Always false for
    /// [`Extensions::DiffusersFolders`], which lists folders, not files.
    pub fn matches_file(&self, file_name: &str) -> bool {
        match self {
            Extensions::Only(allowed) => {
                let extension = python_extension(file_name).to_lowercase();
                allowed.iter().any(|candidate| *candidate == extension)
            }
            Extensions::NoExtension => python_extension(file_name).is_empty(),
            Extensions::Any => true,
            Extensions::DiffusersFolders => false,
        }
    }
}

/// The extension exactly as Python's `os.path.splitext` finds it: from the last dot, unless
/// only dots precede that dot (`.hidden` and `...pt` have none), with the dot.
fn python_extension(file_name: &str) -> &str {
    let Some(dot) = file_name.rfind('.') else {
        return "";
    };
    if file_name[..dot].bytes().all(|byte| byte == b'.') {
        return "";
    }
    &file_name[dot..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_follows_python_splitext() {
        assert_eq!(python_extension("model.safetensors"), ".safetensors");
        assert_eq!(python_extension("a.b.ckpt"), ".ckpt");
        assert_eq!(python_extension("noext"), "");
        assert_eq!(python_extension(".hidden"), "");
        assert_eq!(python_extension("...pt"), "");
        assert_eq!(python_extension("..x.pt"), ".pt");
        assert_eq!(python_extension(".hidden.pt"), ".pt");
        assert_eq!(python_extension("trailing."), ".");
    }

    #[test]
    fn model_extensions_match_case_insensitively() {
        let models = Extensions::Only(MODEL_EXTENSIONS);
        assert!(models.matches_file("x.SafeTensors"));
        assert!(models.matches_file("x.sft"));
        assert!(!models.matches_file("x.gguf"));
        assert!(!models.matches_file("x.yaml"));
        assert!(Extensions::Only(MODEL_EXTENSIONS_WITH_GGUF).matches_file("x.GGUF"));
    }

    #[test]
    fn no_extension_set_only_takes_bare_names() {
        assert!(Extensions::NoExtension.matches_file("classifier"));
        assert!(Extensions::NoExtension.matches_file(".hidden"));
        assert!(!Extensions::NoExtension.matches_file("classifier.pt"));
    }

    #[test]
    fn any_takes_everything_and_diffusers_no_file() {
        assert!(Extensions::Any.matches_file("whatever.txt"));
        assert!(!Extensions::DiffusersFolders.matches_file("model_index.json"));
    }
}
