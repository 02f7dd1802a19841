//! `UNETLoader` ("Load Diffusion Model"): a diffusion model alone (UNet, MMDiT or Flux
//! transformer) from the `diffusion_models` folder (legacy `unet`), optionally held in fp8.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_runtime::{ForcedDType, PlanOptions, Planner};

use crate::error::NodesError;
use crate::loader::load_checkpoint_with;
use crate::nodes::checkpoint_loader_simple::model_path;
use crate::services::NodeServices;

/// `UNETLoader`.
pub struct UnetLoader;

/// The `weight_dtype` choices, in ComfyUI's order.
const WEIGHT_DTYPES: [&str; 4] = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"];

/// The storage dtype a `weight_dtype` choice forces (`None`: the planner's own choice).
///
/// `fp8_e4m3fn_fast` is ComfyUI's e4m3fn storage plus fp8 matrix multiplication where the GPU
/// has it; Kiln stores it the same way and lets the planner decide the compute path.
fn forced_dtype(choice: &str) -> Result<Option<ForcedDType>, NodesError> {
    match choice {
        "default" => Ok(None),
        "fp8_e4m3fn" | "fp8_e4m3fn_fast" => Ok(Some(ForcedDType::F8E4M3)),
        "fp8_e5m2" => Ok(Some(ForcedDType::F8E5M2)),
        other => Err(NodesError::input(
            "weight_dtype",
            format!("unknown weight dtype '{other}'"),
        )),
    }
}

/// The services' planner with the diffusion model's storage dtype forced to `dtype`.
fn planner_forcing(services: &NodeServices, dtype: ForcedDType) -> Planner {
    let base = services.planner();
    let options = PlanOptions {
        unet_dtype: Some(dtype),
        ..base.options().clone()
    };
    Planner::new(options, base.profile().clone()).with_host(base.host().clone())
}

impl Node for UnetLoader {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("UNETLoader")
            .display_name("Load Diffusion Model")
            .category("advanced/loaders")
            .input(InputSpec::required(
                "unet_name",
                ComboInput::dynamic("diffusion_models"),
            ))
            .input(InputSpec::required(
                "weight_dtype",
                ComboInput::new(WEIGHT_DTYPES),
            ))
            .output(OutputSpec::new("MODEL"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let forced = forced_dtype(inputs.string("weight_dtype")?)?;
        let path = model_path(services, inputs, "diffusion_models", "unet_name")?;
        let loaded = match forced {
            Some(dtype) => {
                load_checkpoint_with(services, &planner_forcing(services, dtype), &path)?
            }
            None => load_checkpoint_with(services, services.planner(), &path)?,
        };
        let model = loaded
            .model
            .clone()
            .ok_or_else(|| NodesError::MissingComponent {
                path: path.clone(),
                what: format!(
                    "the file holds no diffusion model (it is a {} file)",
                    loaded.architecture
                ),
            })?;
        Ok(NodeOutput::new(vec![model.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_dtypes_map_to_storage() {
        assert_eq!(forced_dtype("default").unwrap(), None);
        assert_eq!(
            forced_dtype("fp8_e4m3fn_fast").unwrap(),
            Some(ForcedDType::F8E4M3)
        );
        assert_eq!(forced_dtype("fp8_e5m2").unwrap(), Some(ForcedDType::F8E5M2));
        assert!(forced_dtype("int4").is_err());
    }
}
