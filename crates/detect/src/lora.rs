//! Recognising LoRA and similar adapter files, so loading one as a checkpoint gets a clear
//! "this is a LoRA" instead of "unrecognised".

use crate::state_dict::StateDict;

/// A key pattern of one adapter style.
struct LoraStyle {
    name: &'static str,
    matches: fn(&str) -> bool,
}

const STYLES: &[LoraStyle] = &[
    LoraStyle {
        name: "kohya lora_unet_/lora_te_ keys",
        matches: |k| {
            k.starts_with("lora_unet_")
                || k.starts_with("lora_te")
                || k.starts_with("lora_transformer_")
        },
    },
    LoraStyle {
        name: "PEFT lora_A/lora_B keys",
        matches: |k| k.contains(".lora_A.") || k.contains(".lora_B."),
    },
    LoraStyle {
        name: "lora_down/lora_up keys",
        matches: |k| k.contains(".lora_down.") || k.contains(".lora_up."),
    },
    LoraStyle {
        name: "LyCORIS LoHa keys",
        matches: |k| k.contains(".hada_w"),
    },
    LoraStyle {
        name: "LyCORIS LoKr keys",
        matches: |k| k.contains(".lokr_w"),
    },
];

/// `(style, adapter tensors)` when most of the file's tensors are adapter tensors.
pub(crate) fn lora_style(sd: &StateDict<'_>) -> Option<(&'static str, usize)> {
    let is_adapter = |name: &str| {
        STYLES.iter().any(|s| (s.matches)(name))
            || name.ends_with(".alpha")
            || name.ends_with(".dora_scale")
    };
    let adapter = sd.iter().filter(|(name, _)| is_adapter(name)).count();
    if adapter == 0 || adapter * 2 <= sd.len() {
        return None;
    }
    let style = STYLES
        .iter()
        .max_by_key(|s| sd.iter().filter(|(name, _)| (s.matches)(name)).count())
        .map_or("adapter keys", |s| s.name);
    Some((style, adapter))
}

#[cfg(test)]
mod tests {
    use crate::testing::{detect_keys, Keys};
    use crate::DetectError;

    #[test]
    fn kohya_and_peft_loras_are_named() {
        let mut kohya = Keys::default();
        for i in 0..10 {
            kohya.add(
                format!("lora_unet_input_blocks_{i}_1_proj_in.lora_down.weight"),
                &[4, 320],
            );
            kohya.add(
                format!("lora_unet_input_blocks_{i}_1_proj_in.lora_up.weight"),
                &[320, 4],
            );
            kohya.add(format!("lora_unet_input_blocks_{i}_1_proj_in.alpha"), &[]);
        }
        match detect_keys(&kohya).unwrap_err() {
            DetectError::Lora {
                style,
                lora_keys,
                total_keys,
                ..
            } => {
                assert_eq!((lora_keys, total_keys), (30, 30));
                assert!(style.contains("kohya"), "{style}");
            }
            other => panic!("{other}"),
        }
        let mut peft = Keys::default();
        peft.add(
            "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight",
            &[16, 3072],
        );
        peft.add(
            "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight",
            &[3072, 16],
        );
        let err = detect_keys(&peft).unwrap_err();
        assert!(err.to_string().contains("this is a LoRA (PEFT"), "{err}");
    }
}
