//! [`NodeSchema`]: a node class described as data — ComfyUI's `INPUT_TYPES`, `RETURN_TYPES`,
//! `RETURN_NAMES`, `OUTPUT_IS_LIST`, `OUTPUT_NODE`, `CATEGORY`, `DESCRIPTION` and `IS_CHANGED`.
//! `/object_info`, validation, caching and UI-workflow conversion are all driven by it.

use serde_json::Map;

/// A node class's interface.
///
/// Built with [`NodeSchema::new`] and chained setters:
///
/// ```
/// use kiln_graph::{InputSpec, IntInput, NodeSchema, OutputSpec};
///
/// let schema = NodeSchema::new("EmptyLatentImage")
///     .display_name("Empty Latent Image")
///     .category("latent")
///     .input(InputSpec::required("width", IntInput::new(512, 16, 16384).step(8)))
///     .output(OutputSpec::new("LATENT"));
/// assert_eq!(schema.inputs[0].name, "width");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NodeSchema {
    /// The class type used in prompts (`"KSampler"`).
    pub class_type: String,
    /// The name the UI shows; defaults to the class type.
    pub display_name: String,
    /// The menu category (`"sampling"`); ComfyUI's default is `"sd"`.
    pub category: String,
    /// A one-paragraph description.
    pub description: String,
    /// `python_module` in `/object_info`; `"nodes"` marks a core node for the frontend.
    pub python_module: String,
    /// Inputs in declaration order (widget order in saved workflows follows it).
    pub inputs: Vec<InputSpec>,
    /// Outputs in order.
    pub outputs: Vec<OutputSpec>,
    /// Whether the node is an output (a root the executor runs towards).
    pub output_node: bool,
    /// How the cache decides whether the node must run again.
    pub change_policy: ChangePolicy,
    /// ComfyUI's `NOT_IDEMPOTENT`: cache entries are keyed by node id too, so two identical
    /// nodes in one prompt never share a result.
    pub not_idempotent: bool,
    /// Marks the node deprecated in `/object_info`.
    pub deprecated: bool,
    /// Marks the node experimental in `/object_info`.
    pub experimental: bool,
}

impl NodeSchema {
    /// A schema with no inputs or outputs, category `"sd"`, module `"nodes"`.
    pub fn new(class_type: impl Into<String>) -> Self {
        let class_type = class_type.into();
        NodeSchema {
            display_name: class_type.clone(),
            class_type,
            category: "sd".to_owned(),
            description: String::new(),
            python_module: "nodes".to_owned(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            output_node: false,
            change_policy: ChangePolicy::Cached,
            not_idempotent: false,
            deprecated: false,
            experimental: false,
        }
    }

    /// Sets the display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = name.into();
        self
    }

    /// Sets the category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets `python_module` (e.g. `"comfy_extras.nodes_flux"`).
    pub fn python_module(mut self, module: impl Into<String>) -> Self {
        self.python_module = module.into();
        self
    }

    /// Appends an input.
    pub fn input(mut self, input: InputSpec) -> Self {
        self.inputs.push(input);
        self
    }

    /// Appends an output.
    pub fn output(mut self, output: OutputSpec) -> Self {
        self.outputs.push(output);
        self
    }

    /// Marks the node as an output node.
    pub fn output_node(mut self) -> Self {
        self.output_node = true;
        self
    }

    /// Sets the change policy.
    pub fn change_policy(mut self, policy: ChangePolicy) -> Self {
        self.change_policy = policy;
        self
    }

    /// Marks the node not idempotent.
    pub fn not_idempotent(mut self) -> Self {
        self.not_idempotent = true;
        self
    }

    /// Marks the node deprecated.
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// Marks the node experimental.
    pub fn experimental(mut self) -> Self {
        self.experimental = true;
        self
    }

    /// The input called `name`.
    pub fn input_named(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|input| input.name == name)
    }

    /// Required and optional inputs that the UI shows as widgets, in widget order
    /// (required first, then optional, each in declaration order, as ComfyUI's `input_order`).
    pub fn widget_inputs(&self) -> impl Iterator<Item = &InputSpec> {
        let required = self
            .inputs
            .iter()
            .filter(|input| input.kind == InputKind::Required);
        let optional = self
            .inputs
            .iter()
            .filter(|input| input.kind == InputKind::Optional);
        required.chain(optional).filter(|input| input.is_widget())
    }
}

/// Whether an input must be connected/given, may be, or is injected by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// Must be given (`INPUT_TYPES()["required"]`).
    Required,
    /// May be omitted (`INPUT_TYPES()["optional"]`).
    Optional,
    /// Filled in by the executor, never sent by clients (`INPUT_TYPES()["hidden"]`).
    Hidden(HiddenKind),
}

/// The hidden inputs the executor injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenKind {
    /// `PROMPT`: the whole API prompt, as [`crate::Value::Json`].
    Prompt,
    /// `EXTRA_PNGINFO`: `extra_data.extra_pnginfo` (usually `{"workflow": ...}`) or JSON null.
    ExtraPngInfo,
    /// `UNIQUE_ID`: the node's own prompt id, as [`crate::Value::String`].
    UniqueId,
}

impl HiddenKind {
    /// The ComfyUI name shown in `/object_info` (`"PROMPT"`, `"EXTRA_PNGINFO"`, `"UNIQUE_ID"`).
    pub fn type_name(self) -> &'static str {
        match self {
            HiddenKind::Prompt => "PROMPT",
            HiddenKind::ExtraPngInfo => "EXTRA_PNGINFO",
            HiddenKind::UniqueId => "UNIQUE_ID",
        }
    }
}

/// One input of a node.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct InputSpec {
    /// The input name (a key of the prompt's `inputs`).
    pub name: String,
    /// Required, optional or hidden.
    pub kind: InputKind,
    /// The declared type.
    pub ty: InputType,
    /// Hover text.
    pub tooltip: Option<String>,
    /// ComfyUI's `forceInput`: a widget type that is shown as a socket.
    pub force_input: bool,
    /// Further `/object_info` options passed through as-is (`image_upload`, `advanced`, ...).
    pub extra: Map<String, serde_json::Value>,
}

impl InputSpec {
    fn with_kind(name: impl Into<String>, kind: InputKind, ty: InputType) -> Self {
        InputSpec {
            name: name.into(),
            kind,
            ty,
            tooltip: None,
            force_input: false,
            extra: Map::new(),
        }
    }

    /// A required input.
    pub fn required(name: impl Into<String>, ty: impl Into<InputType>) -> Self {
        Self::with_kind(name, InputKind::Required, ty.into())
    }

    /// An optional input.
    pub fn optional(name: impl Into<String>, ty: impl Into<InputType>) -> Self {
        Self::with_kind(name, InputKind::Optional, ty.into())
    }

    /// A hidden input; its type is the hidden kind's name (`PROMPT`, ...).
    pub fn hidden(name: impl Into<String>, hidden: HiddenKind) -> Self {
        Self::with_kind(
            name,
            InputKind::Hidden(hidden),
            InputType::Link(hidden.type_name().to_owned()),
        )
    }

    /// Sets the tooltip.
    pub fn tooltip(mut self, tooltip: impl Into<String>) -> Self {
        self.tooltip = Some(tooltip.into());
        self
    }

    /// Shows a widget type as a socket (`forceInput`).
    pub fn force_input(mut self) -> Self {
        self.force_input = true;
        self
    }

    /// Adds a raw `/object_info` option, e.g. `("image_upload", true)`.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Whether the UI shows this input as a widget (a value field) rather than a socket.
    pub fn is_widget(&self) -> bool {
        !self.force_input && !matches!(self.kind, InputKind::Hidden(_)) && self.ty.is_widget()
    }
}

/// The type of an input.
#[derive(Clone, Debug, PartialEq)]
pub enum InputType {
    /// `INT`.
    Int(IntInput),
    /// `FLOAT`.
    Float(FloatInput),
    /// `STRING`.
    String(StringInput),
    /// `BOOLEAN`.
    Boolean(BooleanInput),
    /// A choice among strings.
    Combo(ComboInput),
    /// A socket carrying a value of the named type (`"MODEL"`, `"IMAGE,MASK"`, `"*"`).
    Link(String),
}

impl InputType {
    /// A socket of type `type_name`.
    pub fn link(type_name: impl Into<String>) -> Self {
        InputType::Link(type_name.into())
    }

    /// Whether the type is shown as a widget (every type except `Link`).
    pub fn is_widget(&self) -> bool {
        !matches!(self, InputType::Link(_))
    }

    /// The type name used for link type checks: `INT`, `FLOAT`, `STRING`, `BOOLEAN`, `COMBO`
    /// or the socket type.
    pub fn type_name(&self) -> &str {
        match self {
            InputType::Int(_) => "INT",
            InputType::Float(_) => "FLOAT",
            InputType::String(_) => "STRING",
            InputType::Boolean(_) => "BOOLEAN",
            InputType::Combo(_) => "COMBO",
            InputType::Link(name) => name,
        }
    }
}

/// An `INT` widget.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntInput {
    /// Default value.
    pub default: Option<i128>,
    /// Smallest accepted value.
    pub min: Option<i128>,
    /// Largest accepted value.
    pub max: Option<i128>,
    /// UI increment.
    pub step: Option<i128>,
    /// Adds the UI's `control_after_generate` widget (fixed/increment/decrement/randomize).
    pub control_after_generate: bool,
}

impl IntInput {
    /// An integer with a default and inclusive bounds.
    pub fn new(default: i128, min: i128, max: i128) -> Self {
        IntInput {
            default: Some(default),
            min: Some(min),
            max: Some(max),
            step: None,
            control_after_generate: false,
        }
    }

    /// An integer with no default or bounds.
    pub fn unbounded() -> Self {
        IntInput {
            default: None,
            min: None,
            max: None,
            step: None,
            control_after_generate: false,
        }
    }

    /// Sets the UI increment.
    pub fn step(mut self, step: i128) -> Self {
        self.step = Some(step);
        self
    }

    /// Adds the `control_after_generate` widget (seeds).
    pub fn control_after_generate(mut self) -> Self {
        self.control_after_generate = true;
        self
    }
}

/// A `FLOAT` widget.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FloatInput {
    /// Default value.
    pub default: Option<f64>,
    /// Smallest accepted value.
    pub min: Option<f64>,
    /// Largest accepted value.
    pub max: Option<f64>,
    /// UI increment.
    pub step: Option<f64>,
    /// UI rounding precision (`round` in `/object_info`).
    pub round: Option<f64>,
}

impl FloatInput {
    /// A float with a default and inclusive bounds.
    pub fn new(default: f64, min: f64, max: f64) -> Self {
        FloatInput {
            default: Some(default),
            min: Some(min),
            max: Some(max),
            step: None,
            round: None,
        }
    }

    /// Sets the UI increment.
    pub fn step(mut self, step: f64) -> Self {
        self.step = Some(step);
        self
    }

    /// Sets the UI rounding precision.
    pub fn round(mut self, round: f64) -> Self {
        self.round = Some(round);
        self
    }
}

/// A `STRING` widget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StringInput {
    /// Default value.
    pub default: Option<String>,
    /// A multi-line text box.
    pub multiline: bool,
    /// ComfyUI's `dynamicPrompts` (the frontend expands `{a|b}` before sending).
    pub dynamic_prompts: bool,
}

impl StringInput {
    /// A single-line string with a default.
    pub fn new(default: impl Into<String>) -> Self {
        StringInput {
            default: Some(default.into()),
            ..StringInput::default()
        }
    }

    /// A multi-line prompt box (`multiline`, `dynamicPrompts`) without a default, as
    /// CLIPTextEncode's `text`.
    pub fn prompt() -> Self {
        StringInput {
            default: None,
            multiline: true,
            dynamic_prompts: true,
        }
    }

    /// Makes the box multi-line.
    pub fn multiline(mut self) -> Self {
        self.multiline = true;
        self
    }
}

/// A `BOOLEAN` widget.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BooleanInput {
    /// Default value.
    pub default: Option<bool>,
}

impl BooleanInput {
    /// A boolean with a default.
    pub fn new(default: bool) -> Self {
        BooleanInput {
            default: Some(default),
        }
    }
}

/// A combo (drop-down) widget.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComboInput {
    /// Where the choices come from.
    pub options: ComboSource,
    /// Default value.
    pub default: Option<String>,
}

impl ComboInput {
    /// A fixed list of choices.
    pub fn new<I, S>(options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ComboInput {
            options: ComboSource::Static(options.into_iter().map(Into::into).collect()),
            default: None,
        }
    }

    /// Choices listed at request time for `key` (a folder key such as `"checkpoints"`).
    pub fn dynamic(key: impl Into<String>) -> Self {
        ComboInput {
            options: ComboSource::Dynamic(key.into()),
            default: None,
        }
    }

    /// Sets the default choice.
    pub fn default(mut self, default: impl Into<String>) -> Self {
        self.default = Some(default.into());
        self
    }

    /// The choices, asking `resolve` for dynamic ones.
    pub fn resolve(&self, resolve: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
        match &self.options {
            ComboSource::Static(options) => options.clone(),
            ComboSource::Dynamic(key) => resolve(key),
        }
    }
}

/// Where a combo's choices come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComboSource {
    /// A fixed list (sampler names, ...).
    Static(Vec<String>),
    /// A key the caller resolves when the list is needed (`/object_info`, validation): model
    /// folder keys (`"checkpoints"`, `"loras"`) or anything else the resolver understands.
    Dynamic(String),
}

/// One output of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputSpec {
    /// The type (`"MODEL"`).
    pub ty: String,
    /// The output's name (`RETURN_NAMES`); defaults to the type.
    pub name: String,
    /// ComfyUI's `OUTPUT_IS_LIST`.
    pub is_list: bool,
    /// Hover text (`OUTPUT_TOOLTIPS`).
    pub tooltip: Option<String>,
}

impl OutputSpec {
    /// An output of type `ty` named after its type.
    pub fn new(ty: impl Into<String>) -> Self {
        let ty = ty.into();
        OutputSpec {
            name: ty.clone(),
            ty,
            is_list: false,
            tooltip: None,
        }
    }

    /// Sets the output name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Marks the output as a list.
    pub fn list(mut self) -> Self {
        self.is_list = true;
        self
    }

    /// Sets the tooltip.
    pub fn tooltip(mut self, tooltip: impl Into<String>) -> Self {
        self.tooltip = Some(tooltip.into());
        self
    }
}

/// How the cache decides whether a node must run again (ComfyUI's `IS_CHANGED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangePolicy {
    /// The output depends only on the inputs: reuse it while they are unchanged.
    #[default]
    Cached,
    /// Run every time (`IS_CHANGED` returning NaN).
    Always,
    /// Ask [`crate::Node::fingerprint`] with the literal inputs; a different answer re-runs the
    /// node, `None` re-runs it always (e.g. LoadImage hashes its file).
    Fingerprint,
}

impl From<IntInput> for InputType {
    fn from(input: IntInput) -> Self {
        InputType::Int(input)
    }
}

impl From<FloatInput> for InputType {
    fn from(input: FloatInput) -> Self {
        InputType::Float(input)
    }
}

impl From<StringInput> for InputType {
    fn from(input: StringInput) -> Self {
        InputType::String(input)
    }
}

impl From<BooleanInput> for InputType {
    fn from(input: BooleanInput) -> Self {
        InputType::Boolean(input)
    }
}

impl From<ComboInput> for InputType {
    fn from(input: ComboInput) -> Self {
        InputType::Combo(input)
    }
}

impl From<&str> for InputType {
    fn from(type_name: &str) -> Self {
        InputType::Link(type_name.to_owned())
    }
}
