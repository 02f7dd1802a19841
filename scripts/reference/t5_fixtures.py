#!/usr/bin/env python3
"""Write Kiln's T5-XXL reference fixtures by running ComfyUI's own Python code: the T5 tokenizer
(`T5XXLTokenizer` of Flux and of SD3 through `SDTokenizer`) and the T5 encoder
(`comfy/text_encoders/t5.py` inside `sd3_clip.T5XXLModel`, with `encode_token_weights`).

Nothing here runs in CI. The fixtures it writes are committed under
`crates/models/tests/fixtures/t5/`; `crates/models/tests/t5_parity.rs` compares against them.

Rerun (from the repository root; see scripts/reference/README.md for the venv and the ComfyUI
source tree; the tiny f32 T5 is `kiln_test_checkpoints` `Family::T5Xxl`, `Storage::F32`,
`Packaging::Standalone`):

    /work/venv-ref/bin/python scripts/reference/t5_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --t5 /work/ref-ckpts/t5xxl_fp32.safetensors \
        --out crates/models/tests/fixtures/t5

What it writes:

* `tiny_tokenizer/tokenizer.json` (+ `tokenizer_config.json`): a T5-style Unigram vocabulary
  trained here with the Python `tokenizers` library on a few sentences (about 90 pieces plus
  T5's `<pad>` 0, `</s>` 1, `<unk>` 2 and 100 `<extra_id_N>` sentinels). Its pipeline is the
  one `transformers` builds for a T5 tokenizer without a SentencePiece charsmap (WhitespaceSplit
  + Metaspace, `$A </s>` template), so `transformers`' `T5TokenizerFast` (what ComfyUI calls)
  and the raw `tokenizer.json` (what Kiln's `tokenizers` crate reads) cut text identically; the
  script checks that for every prompt.
* `tokens.json`: the prompts, and for each the `[id, weight]` list ComfyUI's Flux (min_length
  256) and SD3 (min_length 77) `T5XXLTokenizer.tokenize_with_weights` return with the tiny
  tokenizer; plus, when `--real-tokenizer-dir` is given (ComfyUI's own
  `comfy/text_encoders/t5_tokenizer`), the Flux ids with the real vocabulary (ids only; the
  real `tokenizer.json` is never copied here).
* `encoder.safetensors` + `encoder.json`: the tiny T5 (d_model 96, 6 heads of 16, FFN 256, 24
  blocks) run by ComfyUI in float32 on CPU: `forward.*` hidden states of fixed id batches
  (with padding) through `T5XXLModel.encode`, and `weighted.*` outputs of
  `encode_token_weights` for tokenized prompts (with and without prompt weights).
"""

import argparse
import json
import os
import sys

from flux_fixtures import setup_comfyui
from sd_fixtures import sha256_file

PROMPTS = {
    "plain": "a photo of a cat",
    "empty": "",
    "weights": "a (red:1.2) cat, ((blue)) sky, [green] grass",
    "nested": "(masterpiece:1.3), (best quality), (a (nested:1.5) word:0.8)",
    "low_weight": "(faded:0.5) colors and (inverted:-1) stuff",
    "escapes": "escaped \\(not weighted\\) and a \\\\ backslash",
    "unbalanced": "an (open paren and a close) paren) and (another",
    "punctuation": "hello, world! 100% 'quoted' \"text\"; a-b_c/d: e? (x) [y] {z}",
    "unicode": "\u00dcn\u00efc\u00f6d\u00e9 caf\u00e9 \u65e5\u672c\u8a9e \U0001f389 na\u00efve fa\u00e7ade",
    "whitespace": "  leading and  double   spaces, trailing  ",
    "newlines": "first line\nsecond\tline",
    "special": "</s> <pad> <extra_id_0> literal <unk>",
    "embedding_text": "a embedding:foo cat, (embedding:bar:1.1)",
    "long": ", ".join([
        "a beautiful landscape with snowy mountains", "a winding river", "tall pine trees",
        "a small wooden village at sunset", "warm orange light", "dramatic clouds",
        "reflections in the water", "a flock of birds", "highly detailed", "sharp focus",
        "wide angle lens", "golden hour", "volumetric fog", "(masterpiece:1.2)",
        "best quality", "trending on artstation", "a red boat on the shore",
        "an old stone bridge", "children playing near the houses", "smoke from chimneys",
        "autumn leaves", "a lighthouse in the distance", "soft shadows",
        "cinematic composition", "ultra realistic", "8k resolution",
    ]),
}
# Prompts whose encode_token_weights outputs are recorded, with the tokenizer variant.
WEIGHTED_CASES = [("plain", "flux"), ("weights", "flux"), ("nested", "sd3"), ("empty", "sd3")]
# Fixed id batches for the direct forward (ids < 32128; trailing `1, 0, 0` as padding).
FORWARD_IDS = [
    [[17, 250, 3, 9, 31999, 1, 0, 0]],
    [[3, 9, 1202, 13, 3, 9, 1712, 1, 0, 0, 0, 0], [32127, 5, 4096, 77, 100, 2, 1, 0, 0, 0, 0, 0]],
]
TRAINING_SENTENCES = [
    "a photo of a cat sitting on a red chair",
    "a beautiful landscape with snowy mountains and a river",
    "masterpiece, best quality, highly detailed portrait of an old man",
    "the quick brown fox jumps over the lazy dog",
    "neon city at night, rain, reflections, blue and green light",
    "hello world! 100% weighted text: yes? escaped paren and backslash",
]
EXTRA_IDS = 100


def write_tiny_tokenizer(directory):
    """Trains the tiny Unigram vocabulary and writes it in transformers' T5 pipeline shape."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, decoders, trainers

    trainer_tokenizer = Tokenizer(models.Unigram())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                               prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
        shrinking_factor=0.75, max_piece_length=8, n_sub_iterations=2)
    trainer_tokenizer.train_from_iterator(TRAINING_SENTENCES * 3, trainer)
    vocab = json.loads(trainer_tokenizer.to_str())["model"]["vocab"]
    # T5 keeps its sentinels at the end of the vocabulary, highest number first.
    vocab += [["<extra_id_{}>".format(i), 0.0] for i in range(EXTRA_IDS - 1, -1, -1)]
    tokenizer = Tokenizer(models.Unigram([tuple(v) for v in vocab], unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    specials = ["<pad>", "</s>", "<unk>"] + [v[0] for v in vocab if v[0].startswith("<extra_id_")]
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tokenizer.json")
    tokenizer.save(path)
    config = {
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "extra_ids": EXTRA_IDS, "model_max_length": 512,
    }
    config_path = os.path.join(directory, "tokenizer_config.json")
    with open(config_path, "w") as handle:
        json.dump(config, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return [path, config_path], len(vocab)


class RedirectedT5Tokenizers:
    """Points ComfyUI's T5XXLTokenizer classes (which hard-code their bundled t5_tokenizer
    folder) at another folder, keeping every other argument they pass to SDTokenizer."""

    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        import comfy.sd1_clip

        self.original = comfy.sd1_clip.SDTokenizer.__init__
        directory, original = self.directory, self.original

        def redirected(tokenizer, tokenizer_path=None, *args, **kwargs):
            if tokenizer_path is not None and os.path.basename(tokenizer_path) == "t5_tokenizer":
                tokenizer_path = directory
            original(tokenizer, tokenizer_path, *args, **kwargs)

        comfy.sd1_clip.SDTokenizer.__init__ = redirected
        return self

    def __exit__(self, *exc):
        import comfy.sd1_clip

        comfy.sd1_clip.SDTokenizer.__init__ = self.original


def comfy_tokenizers(directory):
    import comfy.text_encoders.flux
    import comfy.text_encoders.sd3_clip

    with RedirectedT5Tokenizers(directory):
        return {
            "flux": comfy.text_encoders.flux.T5XXLTokenizer(),
            "sd3": comfy.text_encoders.sd3_clip.T5XXLTokenizer(),
        }


def tokenize(tokenizer, text):
    windows = tokenizer.tokenize_with_weights(text)
    if len(windows) != 1:
        raise RuntimeError("T5 produced {} windows".format(len(windows)))
    return [[int(t), float(w)] for t, w in windows[0]]


def check_raw_agrees(tokenizer_json, comfy_tokenizer, label):
    """The raw tokenizer.json (Kiln's reading) must cut every weighted segment as transformers."""
    import comfy.sd1_clip
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(tokenizer_json)
    differences = {}
    for name, text in PROMPTS.items():
        for segment, _ in comfy.sd1_clip.token_weights(comfy.sd1_clip.escape_important(text), 1.0):
            segment = comfy.sd1_clip.unescape_important(segment)
            want = comfy_tokenizer.tokenizer(segment)["input_ids"]
            got = raw.encode(segment).ids
            if want != got:
                differences.setdefault(name, []).append(
                    {"segment": segment, "transformers": want, "tokenizer_json": got})
    if differences:
        print("{}: raw tokenizer.json differs from transformers on {}".format(
            label, sorted(differences)))
    return differences


def tiny_t5_config(sd):
    """ComfyUI's t5_config_xxl.json with the widths of the tiny checkpoint."""
    d_ff, d_model = sd["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape
    inner = sd["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]
    heads = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape[1]
    layers = 0
    while "encoder.block.{}.layer.0.SelfAttention.q.weight".format(layers) in sd:
        layers += 1
    return {
        "d_ff": int(d_ff), "d_kv": int(inner // heads), "d_model": int(d_model),
        "num_heads": int(heads), "num_layers": layers,
        "vocab_size": int(sd["shared.weight"].shape[0]),
    }


def write_encoder_fixture(t5_path, tokens, out_dir, provenance):
    import comfy.text_encoders.sd3_clip
    import comfy.utils
    import torch
    from safetensors.torch import save_file

    sd = comfy.utils.load_torch_file(t5_path, safe_load=True)
    config = tiny_t5_config(sd)
    model = comfy.text_encoders.sd3_clip.T5XXLModel(
        device="cpu", dtype=torch.float32, model_options={"t5xxl_model_config": config})
    missing, unexpected = model.load_sd(sd)
    if missing or unexpected:
        raise RuntimeError("T5 load: missing {} unexpected {}".format(missing, unexpected))
    tensors = {}
    meta = {"config": config, "forward": [], "weighted": [], "attention_mask": False}
    for index, batch in enumerate(FORWARD_IDS):
        hidden, _ = model.encode(batch)
        tensors["forward.{}.ids".format(index)] = torch.tensor(batch, dtype=torch.int64)
        tensors["forward.{}.hidden".format(index)] = hidden.float().contiguous()
        meta["forward"].append({"ids": batch})
    for index, (name, variant) in enumerate(WEIGHTED_CASES):
        pairs = [(t, w) for t, w in tokens["tiny"][variant][name]]
        out, pooled = model.encode_token_weights([pairs])[:2]
        if pooled is not None:
            raise RuntimeError("T5 returned a pooled output")
        tensors["weighted.{}.out".format(index)] = out.float().contiguous()
        meta["weighted"].append({"prompt": name, "tokenizer": variant, "tokens": pairs})
    meta["tensors"] = {k: list(v.shape) for k, v in sorted(tensors.items())}
    meta["checkpoint"] = {
        "file": os.path.basename(t5_path),
        "sha256": sha256_file(t5_path),
        "kiln_test_checkpoints_spec":
            "CheckpointSpec::new(Family::T5Xxl, Storage::F32, Packaging::Standalone) (Size::Tiny)",
    }
    meta["provenance"] = provenance
    tensor_path = os.path.join(out_dir, "encoder.safetensors")
    save_file(dict(sorted(tensors.items())), tensor_path)
    json_path = os.path.join(out_dir, "encoder.json")
    with open(json_path, "w") as handle:
        json.dump(meta, handle, sort_keys=True, separators=(",", ":"))
        handle.write("\n")
    return [tensor_path, json_path]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--comfyui-commit", default="unknown", help="recorded in the fixtures")
    parser.add_argument("--t5", required=True, help="tiny f32 standalone T5 safetensors")
    parser.add_argument("--real-tokenizer-dir", default=None,
                        help="ComfyUI's comfy/text_encoders/t5_tokenizer (ids only are stored)")
    parser.add_argument("--out", required=True, help="fixture folder to (over)write")
    args = parser.parse_args()
    comfyui = os.path.abspath(args.comfyui)
    out_dir = os.path.abspath(args.out)
    setup_comfyui(comfyui)

    import comfyui_version
    import tokenizers
    import torch
    import transformers

    os.makedirs(out_dir, exist_ok=True)
    provenance = {
        "generator": "scripts/reference/t5_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": "cpu",
        "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
    }
    tiny_dir = os.path.join(out_dir, "tiny_tokenizer")
    written, vocab_size = write_tiny_tokenizer(tiny_dir)
    tokens = {"prompts": PROMPTS, "tiny": {}, "provenance": provenance,
              "tiny_vocab_size": vocab_size}
    with torch.inference_mode():
        tiny = comfy_tokenizers(tiny_dir)
        tiny_differences = check_raw_agrees(os.path.join(tiny_dir, "tokenizer.json"),
                                            tiny["flux"], "tiny")
        if tiny_differences:
            raise RuntimeError("tiny tokenizer pipelines disagree: {}".format(tiny_differences))
        for variant, tokenizer in tiny.items():
            tokens["tiny"][variant] = {name: tokenize(tokenizer, text)
                                       for name, text in PROMPTS.items()}
        if args.real_tokenizer_dir:
            real_dir = os.path.abspath(args.real_tokenizer_dir)
            real = comfy_tokenizers(real_dir)
            tokens["real_flux_ids"] = {name: [t for t, _ in tokenize(real["flux"], text)]
                                       for name, text in PROMPTS.items()}
            tokens["real_tokenizer_sha256"] = sha256_file(os.path.join(real_dir, "tokenizer.json"))
            tokens["real_tokenizer_json_differs_from_transformers"] = check_raw_agrees(
                os.path.join(real_dir, "tokenizer.json"), real["flux"], "real")
        path = os.path.join(out_dir, "tokens.json")
        with open(path, "w") as handle:
            json.dump(tokens, handle, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            handle.write("\n")
        written.append(path)
        written += write_encoder_fixture(os.path.abspath(args.t5), tokens, out_dir, provenance)
    total = 0
    for path in written:
        os.chmod(path, 0o644)
        size = os.path.getsize(path)
        total += size
        print("{:>9}  {}".format(size, os.path.relpath(path, out_dir)))
    print("{:>9}  total".format(total))


if __name__ == "__main__":
    main()
