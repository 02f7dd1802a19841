#!/usr/bin/env python3
"""Write Kiln's Flux / SD3.5 workflow fixtures: ComfyUI's own node functions run the graphs
ComfyUI ships (the `flux_schnell`, `flux_schnell_full_text_to_image` and
`sd3.5_simple_example` templates, plus a Flux dev custom-sampling graph) on Kiln's tiny
generated checkpoints in their 8-bit storages, CPU, float32.

Nothing here runs in CI. The fixture it writes is committed as
`crates/models/tests/fixtures/flow_workflows.{json,safetensors}` and checked by
`crates/nodes/tests/flow_workflow_parity.rs` (the graphs in-process, images and final latents)
and `crates/kiln/tests/flow_workflows_cli.rs` (the same graphs through the real `kiln run`
binary, also under simulated Apple GPUs).

Rerun (from the repository root; see scripts/reference/README.md for the venv and ComfyUI
source; the checkpoints are written by `kiln testgen`-equivalent calls listed in CHECKPOINTS):

    /work/venv-ref/bin/python scripts/reference/flow_workflow_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --checkpoints /work/ref-ckpts \
        --out crates/models/tests/fixtures

How the models are built: ComfyUI's detection hard-codes real widths (Flux heads = hidden/128,
T5/CLIP configs from json files), so, as in flux_fixtures.py / mmdit_fixtures.py /
t5_fixtures.py / sd_fixtures.py, the same supported_models classes are built with configs read
from the tiny weights. 8-bit files are widened to float32 before loading (fp8 -> f32 is exact,
scaled fp8 is `fp8.float() * scale_weight`, which is what ComfyUI's manual-cast ops compute on
a CPU), so these runs are what ComfyUI computes for those files. The T5 tokenizer is the tiny
one committed in crates/models/tests/fixtures/t5/tiny_tokenizer (ComfyUI's T5XXLTokenizer is
pointed at it); CLIP uses ComfyUI's real bundled tokenizer.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import flux_fixtures  # noqa: E402
import mmdit_fixtures  # noqa: E402
import sd_fixtures  # noqa: E402
import t5_fixtures  # noqa: E402

SEED = 42
POSITIVE = "a bottle with a rainbow galaxy inside it on a wooden table, (mushrooms:1.2)"
NEGATIVE = ""
SIZE = 64  # pixels; latents are [1, 16, 8, 8]

# Files written by kiln-test-checkpoints (Size::Tiny, seed 0); the Rust test writes the same
# specs and checks the sha256 recorded in the fixture.
CHECKPOINTS = {
    "flux_schnell_fp8": ("flux1-schnell-checkpoint-fp8_e4m3fn.safetensors",
                         "CheckpointSpec::new(Family::FluxSchnell, Storage::F8E4M3, Packaging::SingleFile)"),
    "flux_dev_fp8": ("flux1-dev-checkpoint-fp8_e4m3fn.safetensors",
                     "CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile)"),
    "sd35_large_scaled_fp8": ("sd3.5_large_incl_clips_t5xxl-fp8_e4m3fn_scaled.safetensors",
                              "CheckpointSpec::new(Family::Sd35Large, Storage::ScaledF8E4M3, Packaging::SingleFile)"),
    "flux_schnell_unet_fp8": ("flux1-schnell-fp8_e4m3fn.safetensors",
                              "CheckpointSpec::new(Family::FluxSchnell, Storage::F8E4M3, Packaging::Standalone)"),
    "clip_l_fp16": ("clip_l_fp16.safetensors",
                    "CheckpointSpec::new(Family::ClipL, Storage::F16, Packaging::Standalone)"),
    "t5xxl_scaled_fp8": ("t5xxl_fp8_e4m3fn_scaled.safetensors",
                         "CheckpointSpec::new(Family::T5Xxl, Storage::ScaledF8E4M3, Packaging::Standalone)"),
    "ae": ("ae-fp32.safetensors",
           "CheckpointSpec::new(Family::Vae16, Storage::F32, Packaging::Standalone)"),
}


def widened(sd):
    """fp8 / scaled-fp8 / half tensors as float32, as ComfyUI's CPU manual cast computes them."""
    import torch

    out = {}
    for name, tensor in sd.items():
        if name.endswith(".scale_weight") or name.endswith(".scale_input"):
            continue
        if name.split(".")[-1] == "scaled_fp8":
            continue
        value = tensor.float() if tensor.is_floating_point() else tensor
        if name.endswith(".weight"):
            scale = sd.get(name[: -len("weight")] + "scale_weight")
            if scale is not None:
                value = value * scale.float()
        out[name] = value
    return out


def load(path):
    import comfy.utils

    return widened(comfy.utils.load_torch_file(path, safe_load=True))


def flux_model(sd, prefix, class_name):
    """flux_fixtures.load_family's tiny unet_config, for any prefix and class."""
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    hidden, in_features = sd[prefix + "img_in.weight"].shape
    head = sd[prefix + "double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]

    def count(part):
        return len({k[len(prefix + part):].split(".")[0] for k in sd if k.startswith(prefix + part)})

    unet_config = {
        "image_model": "flux", "in_channels": in_features // 4, "patch_size": 2,
        "out_channels": 16, "vec_in_dim": sd[prefix + "vector_in.in_layer.weight"].shape[1],
        "context_in_dim": sd[prefix + "txt_in.weight"].shape[1], "hidden_size": hidden,
        "mlp_ratio": 4.0, "num_heads": hidden // head, "depth": count("double_blocks."),
        "depth_single_blocks": count("single_blocks."), "axes_dim": flux_fixtures.tiny_axes(head),
        "theta": 10000, "qkv_bias": True,
        "guidance_embed": (prefix + "guidance_in.in_layer.weight") in sd,
    }
    model_config = getattr(comfy.supported_models, class_name)(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    model = model_config.get_model(sd, prefix, device=cpu)
    model.load_model_weights(sd, prefix)
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    return patcher, model_config, unet_config


def sd3_model(sd):
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    prefix = "model.diffusion_model."
    unet_config = comfy.model_detection.detect_unet_config(sd, prefix)
    model_config = comfy.supported_models.SD35(unet_config) if hasattr(
        comfy.supported_models, "SD35") else comfy.supported_models.SD3(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    model = model_config.get_model(sd, prefix, device=cpu)
    model.load_model_weights(sd, prefix)
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    return patcher, model_config


def clip_options(clip_sd):
    """Tiny `<tower>_model_config` overrides for every encoder present in `clip_sd`."""
    import torch

    options = dict(sd_fixtures.tiny_clip_configs(clip_sd))
    t5_prefix = "t5xxl.transformer."
    t5_sd = {k[len(t5_prefix):]: v for k, v in clip_sd.items() if k.startswith(t5_prefix)}
    if t5_sd:
        options["t5xxl_model_config"] = t5_fixtures.tiny_t5_config(t5_sd)
    cpu = torch.device("cpu")
    options.update({"dtype": torch.float32, "load_device": cpu, "offload_device": cpu,
                    "initial_device": cpu})
    return options


def make_clip(clip_target, clip_sd, tokenizer_dir):
    import comfy.sd

    with t5_fixtures.RedirectedT5Tokenizers(tokenizer_dir):
        clip = comfy.sd.CLIP(clip_target, tokenizer_data=clip_sd,
                             model_options=clip_options(clip_sd))
    missing, unexpected = clip.load_sd(clip_sd, full_model=True)
    # Flux's CLIP-L ships without text_projection (its pooled output is unprojected) and no
    # file has logit_scale; ComfyUI only logs these.
    ignorable = ("position_ids", "logit_scale", "text_projection")
    real_missing = [k for k in missing if not any(i in k for i in ignorable)]
    if real_missing or unexpected:
        raise RuntimeError("CLIP load: missing {} unexpected {}".format(real_missing, unexpected))
    return clip


class TinyJointWidth:
    """Stands in for `torch` inside comfy.text_encoders.sd3_clip: SD3ClipModel pads the
    CLIP-L+G hidden states to the real T5 width (4096) before joining them with T5's tokens;
    with the tiny encoders the join needs the tiny T5 width instead. Everything else passes
    through to torch unchanged."""

    def __init__(self, torch_module, t5_width):
        import types

        self._torch = torch_module
        functional = types.SimpleNamespace(**{
            name: getattr(torch_module.nn.functional, name)
            for name in dir(torch_module.nn.functional) if not name.startswith("__")})

        def pad(tensor, widths, *args, **kwargs):
            if tuple(widths) == (0, 4096 - tensor.shape[-1]):
                widths = (0, t5_width - tensor.shape[-1])
            return torch_module.nn.functional.pad(tensor, widths, *args, **kwargs)

        functional.pad = pad
        self.nn = types.SimpleNamespace(functional=functional, Module=torch_module.nn.Module)

    def __getattr__(self, name):
        return getattr(self._torch, name)


def checkpoint_parts(sd, model_config, tokenizer_dir):
    """comfy.sd.load_state_dict_guess_config's CLIP and VAE halves for a tiny checkpoint."""
    import comfy.utils

    clip_target = model_config.clip_target(state_dict=sd)
    clip_sd = model_config.process_clip_state_dict(sd)
    clip = make_clip(clip_target, clip_sd, tokenizer_dir)
    vae_sd = comfy.utils.state_dict_prefix_replace(
        sd, {k: "" for k in model_config.vae_key_prefix}, filter_keys=True)
    vae_sd = model_config.process_vae_state_dict(vae_sd)
    vae, _ = mmdit_fixtures.build_vae16(vae_sd)
    return clip, vae


def ksampler_graph(patcher, clip, vae, sampler, scheduler, steps, cfg):
    """The template graph: CLIPTextEncode ×2, EmptySD3LatentImage, KSampler, VAEDecode."""
    import comfy_extras.nodes_sd3 as nodes_sd3
    import nodes

    (positive,) = nodes.CLIPTextEncode().encode(clip, POSITIVE)
    (negative,) = nodes.CLIPTextEncode().encode(clip, NEGATIVE)
    latent = nodes_sd3.EmptySD3LatentImage().execute(SIZE, SIZE, 1)[0] \
        if hasattr(nodes_sd3.EmptySD3LatentImage, "execute") \
        else nodes_sd3.EmptySD3LatentImage().generate(SIZE, SIZE, 1)[0]
    (out,) = nodes.KSampler().sample(patcher, SEED, steps, cfg, sampler, scheduler,
                                      positive, negative, latent, denoise=1.0)
    (image,) = nodes.VAEDecode().decode(vae, out)
    return out["samples"], image


def node_output(result):
    """ComfyUI's V3 nodes return NodeOutput objects; V1 nodes return tuples."""
    if isinstance(result, tuple):
        return result
    return tuple(result.result if hasattr(result, "result") else result)


def flux_dev_custom_graph(patcher, clip, vae):
    """CLIPTextEncodeFlux → FluxGuidance → ModelSamplingFlux → RandomNoise/KSamplerSelect/
    BasicScheduler/BasicGuider → SamplerCustomAdvanced → VAEDecode."""
    import comfy_extras.nodes_custom_sampler as custom
    import comfy_extras.nodes_flux as nodes_flux
    import comfy_extras.nodes_model_advanced as advanced
    import comfy_extras.nodes_sd3 as nodes_sd3
    import nodes

    (conditioning,) = node_output(nodes_flux.CLIPTextEncodeFlux().execute(
        clip, "a bottle, photo", POSITIVE, 2.5) if hasattr(nodes_flux.CLIPTextEncodeFlux, "execute")
        else nodes_flux.CLIPTextEncodeFlux().encode(clip, "a bottle, photo", POSITIVE, 2.5))
    (conditioning,) = node_output(nodes_flux.FluxGuidance().execute(conditioning, 4.0)
                                  if hasattr(nodes_flux.FluxGuidance, "execute")
                                  else nodes_flux.FluxGuidance().append(conditioning, 4.0))
    (model,) = node_output(advanced.ModelSamplingFlux().patch(patcher, 1.15, 0.5, SIZE, SIZE))
    (noise,) = node_output(custom.RandomNoise().get_noise(SEED)
                           if hasattr(custom.RandomNoise, "get_noise")
                           else custom.RandomNoise().execute(SEED))
    (sampler,) = node_output(custom.KSamplerSelect().get_sampler("euler")
                             if hasattr(custom.KSamplerSelect, "get_sampler")
                             else custom.KSamplerSelect().execute("euler"))
    (sigmas,) = node_output(custom.BasicScheduler().get_sigmas(model, "simple", 4, 1.0)
                            if hasattr(custom.BasicScheduler, "get_sigmas")
                            else custom.BasicScheduler().execute(model, "simple", 4, 1.0))
    (guider,) = node_output(custom.BasicGuider().get_guider(model, conditioning)
                            if hasattr(custom.BasicGuider, "get_guider")
                            else custom.BasicGuider().execute(model, conditioning))
    latent = node_output(nodes_sd3.EmptySD3LatentImage().generate(SIZE, SIZE, 1)
                         if hasattr(nodes_sd3.EmptySD3LatentImage, "generate")
                         else nodes_sd3.EmptySD3LatentImage().execute(SIZE, SIZE, 1))[0]
    result = node_output(custom.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
                         if hasattr(custom.SamplerCustomAdvanced, "sample")
                         else custom.SamplerCustomAdvanced().execute(noise, guider, sampler, sigmas, latent))
    out, denoised = result[0], result[1]
    (image,) = nodes.VAEDecode().decode(vae, out)
    return out["samples"], denoised["samples"], sigmas, image


def flux_split_files_graph(patcher, clip, vae):
    """flux_schnell_full_text_to_image: CLIPTextEncodeFlux positive, ConditioningZeroOut
    negative, KSampler euler/simple 4 steps cfg 1."""
    import comfy_extras.nodes_flux as nodes_flux
    import comfy_extras.nodes_sd3 as nodes_sd3
    import nodes

    (positive,) = node_output(nodes_flux.CLIPTextEncodeFlux().encode(clip, POSITIVE, POSITIVE, 3.5)
                              if hasattr(nodes_flux.CLIPTextEncodeFlux, "encode")
                              else nodes_flux.CLIPTextEncodeFlux().execute(clip, POSITIVE, POSITIVE, 3.5))
    (negative,) = nodes.ConditioningZeroOut().zero_out(positive)
    latent = node_output(nodes_sd3.EmptySD3LatentImage().generate(SIZE, SIZE, 1)
                         if hasattr(nodes_sd3.EmptySD3LatentImage, "generate")
                         else nodes_sd3.EmptySD3LatentImage().execute(SIZE, SIZE, 1))[0]
    (out,) = nodes.KSampler().sample(patcher, SEED, 4, 1.0, "euler", "simple", positive,
                                      negative, latent, denoise=1.0)
    (image,) = nodes.VAEDecode().decode(vae, out)
    return out["samples"], image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--comfyui-commit", default="unknown")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sd_fixtures.setup_comfyui(os.path.abspath(args.comfyui))

    import comfy.sd
    import comfy.utils
    import comfyui_version
    import torch

    repo = os.path.dirname(os.path.dirname(HERE))
    tokenizer_dir = os.path.join(repo, "crates/models/tests/fixtures/t5/tiny_tokenizer")
    ckpt = {key: os.path.join(os.path.abspath(args.checkpoints), name)
            for key, (name, _) in CHECKPOINTS.items()}
    writer = sd_fixtures.Writer(os.path.abspath(args.out), "flow_workflows")
    cases = []

    def record(name, description, graph, samples, image, **extra):
        writer.put("latent." + name, samples)
        writer.put("image." + name, sd_fixtures.to_uint8_image(image))
        for key, tensor in extra.items():
            writer.put("{}.{}".format(key, name), tensor)
        cases.append({"name": name, "description": description, "graph": graph})

    with torch.inference_mode():
        # 1. flux_schnell template: one all-in-one fp8 checkpoint.
        sd = load(ckpt["flux_schnell_fp8"])
        patcher, config, _ = flux_model(sd, "model.diffusion_model.", "FluxSchnell")
        clip, vae = checkpoint_parts(sd, config, tokenizer_dir)
        samples, image = ksampler_graph(patcher, clip, vae, "euler", "simple", 4, 1.0)
        record("flux_schnell", "flux_schnell template: CheckpointLoaderSimple(flux1-schnell fp8) "
               "→ CLIPTextEncode pos/neg → EmptySD3LatentImage 64² → KSampler euler/simple 4 "
               "steps cfg 1 → VAEDecode", {"checkpoint": CHECKPOINTS["flux_schnell_fp8"][0],
                                         "sampler": "euler", "scheduler": "simple", "steps": 4,
                                         "cfg": 1.0}, samples, image)
        samples, image = ksampler_graph(patcher, clip, vae, "dpmpp_2m", "beta", 4, 1.0)
        record("flux_schnell_dpmpp_2m_beta", "as flux_schnell with dpmpp_2m / beta",
               {"checkpoint": CHECKPOINTS["flux_schnell_fp8"][0], "sampler": "dpmpp_2m",
                "scheduler": "beta", "steps": 4, "cfg": 1.0}, samples, image)

        # 2. Flux dev custom sampling (fp8 all-in-one).
        sd = load(ckpt["flux_dev_fp8"])
        patcher, config, _ = flux_model(sd, "model.diffusion_model.", "Flux")
        clip, vae = checkpoint_parts(sd, config, tokenizer_dir)
        samples, denoised, sigmas, image = flux_dev_custom_graph(patcher, clip, vae)
        record("flux_dev_custom", "CheckpointLoaderSimple(flux1-dev fp8) → CLIPTextEncodeFlux"
               "('a bottle, photo', POSITIVE, guidance 2.5) → FluxGuidance 4.0 → "
               "ModelSamplingFlux(1.15, 0.5, 64, 64) → RandomNoise(SEED) + KSamplerSelect(euler)"
               " + BasicScheduler(simple, 4, 1.0) + BasicGuider → SamplerCustomAdvanced → "
               "VAEDecode(output)", {"checkpoint": CHECKPOINTS["flux_dev_fp8"][0]},
               samples, image, denoised=denoised, sigmas=sigmas)

        # 3. flux_schnell_full_text_to_image: separate files.
        unet_sd = load(ckpt["flux_schnell_unet_fp8"])
        patcher, config, _ = flux_model(unet_sd, "", "FluxSchnell")
        clip_sd = {}
        for key, prefix in (("clip_l_fp16", "clip_l.transformer."),
                            ("t5xxl_scaled_fp8", "t5xxl.transformer.")):
            for name, tensor in load(ckpt[key]).items():
                clip_sd[prefix + name] = tensor
        import comfy.text_encoders.flux

        clip_target = comfy.supported_models_base.ClipTarget(
            comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.FluxClipModel)
        clip = make_clip(clip_target, clip_sd, tokenizer_dir)
        vae, _ = mmdit_fixtures.build_vae16(load(ckpt["ae"]))
        samples, image = flux_split_files_graph(patcher, clip, vae)
        record("flux_schnell_split", "flux_schnell_full_text_to_image template: UNETLoader("
               "flux1-schnell fp8, default) + DualCLIPLoader(clip_l fp16, t5xxl scaled fp8, "
               "flux) + VAELoader(ae) → CLIPTextEncodeFlux(POSITIVE, POSITIVE, 3.5) → "
               "ConditioningZeroOut negative → KSampler euler/simple 4 cfg 1 → VAEDecode",
               {"unet": CHECKPOINTS["flux_schnell_unet_fp8"][0],
                "clip_l": CHECKPOINTS["clip_l_fp16"][0],
                "t5xxl": CHECKPOINTS["t5xxl_scaled_fp8"][0], "vae": CHECKPOINTS["ae"][0]},
               samples, image)

        # 4. sd3.5_simple_example: scaled-fp8 SD3.5 large all-in-one.
        sd = load(ckpt["sd35_large_scaled_fp8"])
        patcher, config = sd3_model(sd)
        import comfy.text_encoders.sd3_clip as sd3_clip

        t5_width = sd["text_encoders.t5xxl.transformer.shared.weight"].shape[1]
        sd3_clip.torch = TinyJointWidth(torch, t5_width)
        clip, vae = checkpoint_parts(sd, config, tokenizer_dir)
        samples, image = ksampler_graph(patcher, clip, vae, "euler", "sgm_uniform", 4, 4.01)
        record("sd35_large", "sd3.5_simple_example template: CheckpointLoaderSimple(sd3.5 large "
               "scaled fp8) → CLIPTextEncode pos/neg → EmptySD3LatentImage 64² → KSampler "
               "euler/sgm_uniform 4 steps cfg 4.01 → VAEDecode",
               {"checkpoint": CHECKPOINTS["sd35_large_scaled_fp8"][0], "sampler": "euler",
                "scheduler": "sgm_uniform", "steps": 4, "cfg": 4.01}, samples, image)

    writer.meta["cases"] = cases
    writer.meta["settings"] = {"seed": SEED, "positive": POSITIVE, "negative": NEGATIVE,
                               "size": SIZE}
    writer.meta["checkpoints"] = {
        key: {"file": name, "spec": spec + " (Size::Tiny, seed 0)",
              "sha256": sd_fixtures.sha256_file(ckpt[key])}
        for key, (name, spec) in CHECKPOINTS.items()}
    writer.meta["description"] = (
        "latent.<case> = final LATENT samples [1,16,8,8] (what VAEDecode receives); "
        "image.<case> = VAEDecode through SaveImage's uint8 conversion [1,64,64,3]; "
        "denoised/sigmas for the custom-sampling case.")
    provenance = {
        "generator": "scripts/reference/flow_workflow_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__, "device": "cpu", "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
    }
    for path in writer.write(provenance):
        os.chmod(path, 0o644)
        print(os.path.getsize(path), path)


if __name__ == "__main__":
    main()
