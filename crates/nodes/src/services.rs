//! [`NodeServices`]: what built-in nodes share across prompts — the folder layout, the planner
//! (plan options + capability profile), the loaded-model cache, the output/temp/input folders,
//! `--disable-metadata`, the preview method, and weak handles of the loaded text encoders
//! (released before sampling when the model's plan says so). The engine holds one and hands it to every node
//! through [`kiln_graph::ExecutionContext::services`].

use std::path::{Path, PathBuf};

use candle_core::Device;
use kiln_folders::FolderPaths;
use kiln_graph::{ExecutionContext, NodeError};
use kiln_runtime::{ComponentPlan, Planner, RuntimeError};
use kiln_sampling::NormalKernel;

use crate::image_io::list_input_files;
use crate::model_cache::ModelCache;
use crate::releasable_store::TextEncoderTracker;

/// The combo key listing the image files of the input folder (LoadImage).
pub const INPUT_IMAGES: &str = "input_images";
/// The combo key listing every file of the input folder (LoadImageMask).
pub const INPUT_FILES: &str = "input_files";

/// ComfyUI's `--preview-method`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreviewMethod {
    /// No previews (ComfyUI's default for API use).
    #[default]
    None,
    /// The best available.
    Auto,
    /// A fixed linear map from latent channels to RGB.
    Latent2Rgb,
    /// The TAESD decoder.
    Taesd,
}

/// Shared state of the built-in nodes. Immutable except for the model cache and the
/// text-encoder tracker.
#[derive(Debug)]
pub struct NodeServices {
    folders: FolderPaths,
    planner: Planner,
    simulated: bool,
    disable_metadata: bool,
    preview: PreviewMethod,
    preview_size: u32,
    noise_kernel: NormalKernel,
    models: ModelCache,
    text_encoders: TextEncoderTracker,
}

/// Builds [`NodeServices`].
#[derive(Debug)]
pub struct NodeServicesBuilder {
    folders: FolderPaths,
    planner: Planner,
    simulated: bool,
    disable_metadata: bool,
    preview: PreviewMethod,
    preview_size: u32,
    noise_kernel: NormalKernel,
}

impl NodeServicesBuilder {
    /// Marks the planner's profile as simulated (`--simulate-device`): plans follow the
    /// profile, tensors stay on the CPU.
    pub fn simulated(mut self, simulated: bool) -> Self {
        self.simulated = simulated;
        self
    }

    /// `--disable-metadata`: SaveImage writes no text chunks.
    pub fn disable_metadata(mut self, disable: bool) -> Self {
        self.disable_metadata = disable;
        self
    }

    /// `--preview-method`.
    pub fn preview_method(mut self, method: PreviewMethod) -> Self {
        self.preview = method;
        self
    }

    /// `--preview-size`: the longest side of preview images, in pixels.
    pub fn preview_size(mut self, size: u32) -> Self {
        self.preview_size = size.max(1);
        self
    }

    /// Which torch CPU `randn` kernel initial noise reproduces (AVX2 on x86-64 by default).
    pub fn noise_kernel(mut self, kernel: NormalKernel) -> Self {
        self.noise_kernel = kernel;
        self
    }

    /// The services.
    pub fn build(self) -> NodeServices {
        NodeServices {
            folders: self.folders,
            planner: self.planner,
            simulated: self.simulated,
            disable_metadata: self.disable_metadata,
            preview: self.preview,
            preview_size: self.preview_size,
            noise_kernel: self.noise_kernel,
            models: ModelCache::default(),
            text_encoders: TextEncoderTracker::default(),
        }
    }
}

impl NodeServices {
    /// A builder over a folder layout and a planner.
    pub fn builder(folders: FolderPaths, planner: Planner) -> NodeServicesBuilder {
        NodeServicesBuilder {
            folders,
            planner,
            simulated: false,
            disable_metadata: false,
            preview: PreviewMethod::None,
            preview_size: crate::preview::DEFAULT_PREVIEW_SIZE,
            noise_kernel: NormalKernel::default(),
        }
    }

    /// The services of the running node, or [`NodeError::Services`].
    pub fn of<'c>(ctx: &'c ExecutionContext<'_>) -> Result<&'c NodeServices, NodeError> {
        ctx.services::<NodeServices>()
    }

    /// The folder layout.
    pub fn folders(&self) -> &FolderPaths {
        &self.folders
    }

    /// The planner.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Whether the planner's profile is simulated.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// ComfyUI's output folder.
    pub fn output_directory(&self) -> &Path {
        self.folders.output_directory()
    }

    /// ComfyUI's temp folder.
    pub fn temp_directory(&self) -> &Path {
        self.folders.temp_directory()
    }

    /// ComfyUI's input folder.
    pub fn input_directory(&self) -> &Path {
        self.folders.input_directory()
    }

    /// `--disable-metadata`.
    pub fn metadata_disabled(&self) -> bool {
        self.disable_metadata
    }

    /// `--preview-method`.
    pub fn preview_method(&self) -> PreviewMethod {
        self.preview
    }

    /// `--preview-size`: the longest side of preview images, in pixels.
    pub fn preview_size(&self) -> u32 {
        self.preview_size
    }

    /// The torch `randn` kernel initial noise reproduces.
    pub fn noise_kernel(&self) -> NormalKernel {
        self.noise_kernel
    }

    /// The loaded-model cache.
    pub fn models(&self) -> &ModelCache {
        &self.models
    }

    /// Weak handles of every text-encoder store loaded so far.
    pub fn text_encoders(&self) -> &TextEncoderTracker {
        &self.text_encoders
    }

    /// The candle device a component planned as `plan` is loaded onto: the CPU under a
    /// simulated profile.
    pub fn device_for(&self, plan: &ComponentPlan) -> Result<Device, RuntimeError> {
        if self.simulated {
            Ok(Device::Cpu)
        } else {
            plan.device.open()
        }
    }

    /// The choices of a dynamic combo: [`INPUT_IMAGES`], [`INPUT_FILES`], or a model folder
    /// key (`checkpoints`, `loras`, `vae`, ...). Unknown keys list nothing.
    pub fn combo_options(&self, key: &str) -> Vec<String> {
        match key {
            INPUT_IMAGES => list_input_files(self.input_directory(), true),
            INPUT_FILES => list_input_files(self.input_directory(), false),
            folder => self.folders.list(folder).unwrap_or_default(),
        }
    }

    /// `folder_paths.get_annotated_filepath(name)`: a file of the input folder, or of the
    /// output/temp folder with a ` [output]`/` [temp]` suffix. `None` when the name would leave
    /// its folder.
    pub fn annotated_path(&self, name: &str) -> Option<PathBuf> {
        let (name, base) = if let Some(stem) = name.strip_suffix(" [output]") {
            (stem, self.output_directory())
        } else if let Some(stem) = name.strip_suffix(" [input]") {
            (stem, self.input_directory())
        } else if let Some(stem) = name.strip_suffix(" [temp]") {
            (stem, self.temp_directory())
        } else {
            (name, self.input_directory())
        };
        let relative = Path::new(name);
        let contained = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        (contained && !name.is_empty()).then(|| base.join(relative))
    }
}
