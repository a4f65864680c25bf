"""The `adapters` plugin interface for Wav2Vec2: the only place that names Wav2Vec2's submodule paths.

Wav2Vec2 is not built into `adapters`; `adapters.init(model, interface=wav2vec2_interface(config))` registers
bottleneck and LoRA adapters on it. The hook points depend on the layer-norm order of the checkpoint: post-LN
models (`do_stable_layer_norm=False`, e.g. wav2vec2-base) normalise after each residual block, pre-LN models
(`do_stable_layer_norm=True`, e.g. large-lv60 and XLS-R) before it. Verified names: ../shared/docs/stack.md.
"""

from __future__ import annotations

from adapters import AdapterModelInterface
from transformers import Wav2Vec2Config


def wav2vec2_interface(config: Wav2Vec2Config) -> AdapterModelInterface:
    """The interface matching `config`'s layer-norm order."""
    common = dict(
        adapter_methods=["bottleneck", "lora"],
        model_embeddings="feature_projection",
        model_layers="encoder.layers",
        layer_self_attn="attention",
        layer_cross_attn=None,
        attn_q_proj="q_proj",
        attn_k_proj="k_proj",
        attn_v_proj="v_proj",
        attn_o_proj="out_proj",
        layer_intermediate_proj="feed_forward.intermediate_dense",
        layer_output_proj="feed_forward.output_dense",
    )
    if config.do_stable_layer_norm:  # pre-LN
        return AdapterModelInterface(
            **common,
            layer_pre_self_attn="layer_norm",
            layer_pre_ffn="final_layer_norm",
            layer_ln_1=None,
            layer_ln_2=None,
        )
    return AdapterModelInterface(  # post-LN
        **common,
        layer_pre_self_attn="attention",
        layer_pre_ffn="feed_forward",
        layer_ln_1="layer_norm",
        layer_ln_2="final_layer_norm",
    )
