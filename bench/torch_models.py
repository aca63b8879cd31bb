"""Random-weight FLUX.1-shaped models for `bench/torch_bench.py`: a complete diffusers base and a π-Flow
adapter in the released format, written to a folder so the bench loads them through the real loader.

Real weights cannot be downloaded here, and a forward costs the same whatever the weights are, so the
bench builds a model of the released shape: FLUX.1-dev's transformer config (19 double + 38 single
blocks, width 3072, T5 width 4096, CLIP pooled 768), FLUX's VAE architecture, and a GM K=8 adapter with
rank-256 LoRA on the released target modules (fixtures/official/README.md) plus `norm_out` and the GM
heads. The text encoders keep their widths but have two layers: text is encoded once per prompt and
cached, so their depth never enters a per-image timing. `small` is the same builder at toy dimensions
(the bench's logic checked on a CPU).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'torch-backend' / 'fixtures'))
import build_bases  # noqa: E402  (the tiny tokenizers and the model_index writer)

PROFILES = {
    # FLUX.1-dev's transformer/config.json (diffusers), VAE as FLUX's, 2-layer text encoders of full width.
    'full': {
        'transformer': {'attention_head_dim': 128, 'axes_dims_rope': [16, 56, 56], 'guidance_embeds': True,
                        'in_channels': 64, 'joint_attention_dim': 4096, 'num_attention_heads': 24,
                        'num_layers': 19, 'num_single_layers': 38, 'patch_size': 1, 'pooled_projection_dim': 768},
        'vae_channels': (128, 256, 512, 512), 'vae_layers': 2, 'vae_groups': 32,
        't5': {'d_model': 4096, 'd_kv': 64, 'd_ff': 10240, 'num_heads': 64}, 'clip_heads': 12,
        'rank': 256, 'logstd_inner_dim': 256,
    },
    'small': {
        'transformer': {'attention_head_dim': 16, 'axes_dims_rope': [4, 6, 6], 'guidance_embeds': True,
                        'in_channels': 64, 'joint_attention_dim': 32, 'num_attention_heads': 2,
                        'num_layers': 2, 'num_single_layers': 2, 'patch_size': 1, 'pooled_projection_dim': 16},
        'vae_channels': (8, 8, 16, 16), 'vae_layers': 1, 'vae_groups': 4,
        't5': {'d_model': 32, 'd_kv': 8, 'd_ff': 64, 'num_heads': 4}, 'clip_heads': 2,
        'rank': 4, 'logstd_inner_dim': 32,
    },
}

K = 8
# The released pi-FLUX.1 LoRA targets (fixtures/official/README.md).
DOUBLE_TARGETS = ('ff.net.0.proj', 'ff.net.2', 'ff_context.net.0.proj', 'ff_context.net.2')
SINGLE_TARGETS = ('proj_mlp', 'proj_out')
SHARED_TARGETS = ('time_text_embed.timestep_embedder.linear_1', 'time_text_embed.timestep_embedder.linear_2')


def _transformer(config: dict, dtype: torch.dtype, device: torch.device):
    from diffusers import FluxTransformer2DModel

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: 12B parameters never exist in fp32
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def _lora_targets(model) -> list[str]:
    names = []
    for name, _ in model.named_modules():
        group, _, rest = name.partition('.')
        inner = rest.partition('.')[2]  # the module path inside block <i>
        if (group == 'transformer_blocks' and inner in DOUBLE_TARGETS) or (
                group == 'single_transformer_blocks' and inner in SINGLE_TARGETS) or name in SHARED_TARGETS:
            names.append(name)
    return names


def _adapter_tensors(model, profile: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """LoRA pairs on every target, `norm_out` and the GM heads, small random values (a sane forward)."""
    rank = profile['rank']
    inner = model.inner_dim
    modules = dict(model.named_modules())

    def rand(*shape, scale=0.02):
        return (torch.randn(*shape, generator=generator) * scale).to(torch.bfloat16)

    out = {}
    for name in _lora_targets(model):
        linear = modules[name]
        out[f'{name}.lora_A.weight'] = rand(rank, linear.in_features)
        out[f'{name}.lora_B.weight'] = rand(linear.out_features, rank, scale=0.002)
    out['norm_out.linear.weight'] = rand(2 * inner, inner)
    out['norm_out.linear.bias'] = rand(2 * inner)
    out['proj_out_means.weight'] = rand(K * 64, inner)
    out['proj_out_means.bias'] = rand(K * 64)
    out['proj_out_logweights.weight'] = rand(K * 4, inner)
    out['proj_out_logweights.bias'] = rand(K * 4)
    hidden = profile['logstd_inner_dim']
    out['proj_out_logstds.1.weight'] = rand(hidden, inner)
    out['proj_out_logstds.1.bias'] = rand(hidden)
    out['proj_out_logstds.3.weight'] = rand(1, hidden)
    out['proj_out_logstds.3.bias'] = torch.full((1,), -2.0, dtype=torch.bfloat16)
    return {k: v.contiguous() for k, v in out.items()}


def _adapter_config(config: dict, profile: dict) -> dict:
    return {'_class_name': 'GMFluxTransformer2DModel', '_diffusers_version': '0.37.0',
            **{k: v for k, v in config.items() if k != 'patch_size'}, 'out_channels': None,
            'num_gaussians': K, 'logweights_channels': 4, 'logstd_inner_dim': profile['logstd_inner_dim'],
            'gm_num_logstd_layers': 2, 'constant_logstd': None}


def build(out: Path, profile_name: str, device: torch.device) -> tuple[Path, Path]:
    """Writes `out/base` (a diffusers FLUX base) and `out/adapter`; returns their paths."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    profile = PROFILES[profile_name]
    config = profile['transformer']
    base, adapter = out / 'base', out / 'adapter'
    torch.manual_seed(0)
    model = _transformer(config, torch.bfloat16, device)
    model.save_pretrained(base / 'transformer')
    generator = torch.Generator().manual_seed(1)
    adapter.mkdir(parents=True, exist_ok=True)
    save_file(_adapter_tensors(model, profile, generator), adapter / 'diffusion_pytorch_model.safetensors',
              metadata={'policy_config': json.dumps({'type': 'GMFlow'})})
    (adapter / 'config.json').write_text(json.dumps(_adapter_config(config, profile), indent=2))
    del model

    scratch = out / 'scratch'
    clip_tok = build_bases.build_clip_tokenizer(scratch)
    t5_tok = build_bases.build_t5_tokenizer()
    clip_tok.save_pretrained(base / 'tokenizer')
    t5_tok.save_pretrained(base / 'tokenizer_2')
    eos = clip_tok.convert_tokens_to_ids('<|endoftext|>')
    pooled = config['pooled_projection_dim']
    CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=pooled, intermediate_size=4 * pooled,
                                 num_hidden_layers=2, num_attention_heads=profile['clip_heads'],
                                 max_position_embeddings=77, bos_token_id=eos - 1, eos_token_id=eos,
                                 pad_token_id=eos, projection_dim=pooled)).save_pretrained(base / 'text_encoder')
    T5EncoderModel(T5Config(vocab_size=len(t5_tok), num_layers=2, feed_forward_proj='gated-gelu',
                            dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                            eos_token_id=1, decoder_start_token_id=0, **profile['t5'])).save_pretrained(
        base / 'text_encoder_2')
    channels = profile['vae_channels']
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, down_block_types=('DownEncoderBlock2D',) * 4,
                  up_block_types=('UpDecoderBlock2D',) * 4, block_out_channels=channels,
                  layers_per_block=profile['vae_layers'], norm_num_groups=profile['vae_groups'],
                  scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                  use_post_quant_conv=False).save_pretrained(base / 'vae')
    build_bases.build_scheduler().save_pretrained(base / 'scheduler')
    build_bases.write_model_index(base, 'FluxPipeline', build_bases.FLUX_COMPONENTS)
    return base, adapter
