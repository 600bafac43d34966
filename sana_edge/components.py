"""The one declaration of each exported component: tensor names, dtypes, axes, validation shapes,
tolerances, and every other fact about it (its PyTorch wrapper, engine profile ranges, memory
estimate, whether it holds SANA's linear attention). Export, validation, quantization, engine
profiles, the manifest, the memory planner, the runtime feed contract and the tests all read
these; nothing else spells a tensor name.

An axis is an int (fixed by the architecture), a model dimension name bound from the checkpoint
config (e.g. "latent_channels"), or a dynamic axis name (listed in `dynamic`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# How validation inputs are drawn for each tensor (see sample_inputs).
NORMAL, TOKEN_IDS, PADDING_MASK, TIMESTEP = "normal", "token_ids", "padding_mask", "timestep"

# Engine profile rules for a dynamic axis (resolved to (min, opt, max) by sana_edge.export.engine):
CFG_BATCH = "cfg_batch"          # 1..2, tuned for 2 (negative + positive prompt in one batch)
PROMPT_BATCH = "prompt_batch"    # 1..2, tuned for 1 (prompts are encoded one at a time)
SINGLE = "single"                # always 1
TEXT_TOKENS = "text_tokens"      # 1..the instruction + caption length
CAPTION_TOKENS = "caption_tokens"  # the caption length the transformer attends to (fixed)
LATENT_SIDE = "latent_side"      # the requested image range (--min/--opt/--max-size) / 32
DECODER_TILE = "decoder_tile"    # latent side up to --decoder-tile / 32 (larger images tile)
IMAGE_SIDE = "image_side"        # an output side: follows the input axes, never profiled

# Activation memory models of the planner (sana_edge.planner): bytes alive at a stage's peak
# beyond its weights. Fitted to peak-RSS measurements of the full-size models on ONNX Runtime
# CPU (benchmarks/memory_plan.py, benchmarks/results/memory.md) and rounded up, so a plan errs
# on the side of smaller tiles.
# Decoder: fp32 copies of the per-pixel feature volume alive at the peak: 0.25 / 0.98 / 3.16 GiB
# over the loaded session at 256 / 512 / 1024 px, i.e. 4.1-3.6 copies; 4.5 rounds up.
DECODER_LIVE_TENSORS = 4.5
# Transformer: bytes per token per unit of its widest (GLU MLP) activation, batch 2 for CFG.
TRANSFORMER_LIVE_TENSORS = 4.0
TEXT_ENCODER_LIVE_TENSORS = 32.0


def _text_encoder_activations(model, height: int, width: int, text_length: int) -> int:
    return int(text_length * model.caption_channels * 4 * TEXT_ENCODER_LIVE_TENSORS)


def _transformer_activations(model, height: int, width: int, text_length: int) -> int:
    tokens = height * width // model.vae_scale_factor**2
    widest = model.transformer_inner_dim * model.mlp_ratio * 2  # the GLU's doubled hidden width
    return int(2 * tokens * widest * 4 * TRANSFORMER_LIVE_TENSORS)


def _decoder_activations(model, height: int, width: int, text_length: int) -> int:
    # Feature volume per output pixel: stage i runs at 1/2^i of the resolution (DC-AE layout).
    per_pixel = sum(c / 4**i for i, c in enumerate(model.decoder_block_out_channels))
    return int(height * width * per_pixel * 4 * DECODER_LIVE_TENSORS)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    axes: tuple
    fill: str = NORMAL
    # The name optimum-onnx's Sana export gives this tensor (sana_edge.export.optimum_layout);
    # None: the same name.
    optimum_name: str | None = None


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic: tuple[str, ...]
    # Bindings of the dynamic axes used to validate the export; the first is also the trace shape.
    validation_shapes: tuple[dict, ...]
    # "module:Class" of the torch.nn.Module that exposes this component with exactly these inputs
    # and outputs (build side; a string so this runtime module never imports torch).
    torch_wrapper: str
    # Engine optimization profile: dynamic axis -> range rule (see the constants above).
    engine_axes: dict = field(default_factory=dict)
    # Planner: activation bytes at this stage's peak for (model values, height px, width px, text length).
    activation_bytes: Callable | None = None
    # Holds SANA's linear attention, whose `+ 1e-15` must survive export (checked, recorded).
    linear_attention: bool = False
    # Minimum cosine similarity against PyTorch per precision.
    min_cosine: dict = field(default_factory=lambda: {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99, "int4": 0.95})

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def optimum_names(self) -> dict[str, str]:
        """sana-edge tensor name -> optimum-onnx's name, for every input and output."""
        return {t.name: t.optimum_name or t.name for t in self.inputs + self.outputs}

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx-style {tensor: {axis index: axis name}} for the dynamic axes."""
        return {
            t.name: {i: a for i, a in enumerate(t.axes) if isinstance(a, str) and a in self.dynamic}
            for t in self.inputs + self.outputs
        }

    def shape(self, tensor: TensorSpec, dims: dict) -> tuple[int, ...]:
        """Concrete shape of `tensor` given model dims and dynamic-axis bindings."""
        return tuple(a if isinstance(a, int) else int(dims[a]) for a in tensor.axes)

    def check_io_names(self, graph_inputs, graph_outputs, where: str) -> None:
        """One-line error naming both sides when a graph's I/O differs from this declaration."""
        from .errors import UserError

        for kind, declared, found in (("inputs", self.input_names, list(graph_inputs)),
                                      ("outputs", self.output_names, list(graph_outputs))):
            if sorted(declared) != sorted(found):
                raise UserError(
                    f"{where}: the {self.name} graph's {kind} are {', '.join(found) or 'none'} but the declaration "
                    f"says {', '.join(declared)}; re-export with this sana-edge (`sana-edge export ...`)"
                )


TEXT_ENCODER = ComponentSpec(
    name="text_encoder",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "sequence"), TOKEN_IDS),
        TensorSpec("attention_mask", "int64", ("batch", "sequence"), PADDING_MASK),
    ),
    outputs=(TensorSpec("last_hidden_state", "float32", ("batch", "sequence", "caption_channels")),),
    dynamic=("batch", "sequence"),
    validation_shapes=({"batch": 1, "sequence": 48}, {"batch": 2, "sequence": 21}),
    torch_wrapper="sana_edge.export.wrappers:TextEncoderWrapper",
    engine_axes={"batch": PROMPT_BATCH, "sequence": TEXT_TOKENS},
    activation_bytes=_text_encoder_activations,
)

TRANSFORMER = ComponentSpec(
    name="transformer",
    inputs=(
        TensorSpec("latents", "float32", ("batch", "latent_channels", "latent_height", "latent_width"),
                   optimum_name="hidden_states"),
        TensorSpec("encoder_hidden_states", "float32", ("batch", "caption_length", "caption_channels")),
        TensorSpec("encoder_attention_mask", "int64", ("batch", "caption_length"), PADDING_MASK),
        TensorSpec("timestep", "float32", ("batch",), TIMESTEP),
    ),
    outputs=(
        TensorSpec("velocity", "float32", ("batch", "out_channels", "latent_height", "latent_width"),
                   optimum_name="out_hidden_states"),
    ),
    dynamic=("batch", "latent_height", "latent_width", "caption_length"),
    validation_shapes=(
        {"batch": 2, "latent_height": 8, "latent_width": 8, "caption_length": 300},
        {"batch": 1, "latent_height": 4, "latent_width": 6, "caption_length": 300},
    ),
    torch_wrapper="sana_edge.export.wrappers:TransformerWrapper",
    engine_axes={"batch": CFG_BATCH, "latent_height": LATENT_SIDE, "latent_width": LATENT_SIDE,
                 "caption_length": CAPTION_TOKENS},
    activation_bytes=_transformer_activations,
    linear_attention=True,
)

# Stacked per-block caption K/V exchanged by the split transformer graphs.
KV_AXES = ("transformer_layers", "batch", "cross_attention_heads", "caption_length", "cross_attention_head_dim")

# The transformer as two graphs (export/split_transformer.py): the caption's cross-attention K/V
# of every block, computed once per generation, and the step that reads them. Default for
# exports whose architecture the split covers; the single `transformer` graph otherwise.
CAPTION_KV = ComponentSpec(
    name="caption_kv",
    inputs=(TensorSpec("encoder_hidden_states", "float32", ("batch", "caption_length", "caption_channels")),),
    outputs=(
        TensorSpec("caption_keys", "float32", KV_AXES),
        TensorSpec("caption_values", "float32", KV_AXES),
    ),
    dynamic=("batch", "caption_length"),
    validation_shapes=({"batch": 2, "caption_length": 300}, {"batch": 1, "caption_length": 300}),
    torch_wrapper="sana_edge.export.split_transformer:CaptionKVWrapper",
    engine_axes={"batch": CFG_BATCH, "caption_length": CAPTION_TOKENS},
    activation_bytes=lambda model, height, width, text_length: 0,  # runs before the step, far smaller
)

TRANSFORMER_STEP = ComponentSpec(
    name="transformer_step",
    inputs=(
        TensorSpec("latents", "float32", ("batch", "latent_channels", "latent_height", "latent_width")),
        TensorSpec("encoder_attention_mask", "int64", ("batch", "caption_length"), PADDING_MASK),
        TensorSpec("timestep", "float32", ("batch",), TIMESTEP),
        TensorSpec("caption_keys", "float32", KV_AXES),
        TensorSpec("caption_values", "float32", KV_AXES),
    ),
    outputs=TRANSFORMER.outputs,
    dynamic=("batch", "latent_height", "latent_width", "caption_length"),
    validation_shapes=TRANSFORMER.validation_shapes,
    torch_wrapper="sana_edge.export.split_transformer:TransformerStepWrapper",
    engine_axes=TRANSFORMER.engine_axes,
    activation_bytes=_transformer_activations,
    linear_attention=True,
)

DECODER = ComponentSpec(
    name="vae_decoder",
    inputs=(TensorSpec("latent", "float32", ("batch", "latent_channels", "latent_height", "latent_width"),
                       optimum_name="latent_sample"),),
    outputs=(TensorSpec("image", "float32", ("batch", 3, "image_height", "image_width"), optimum_name="sample"),),
    dynamic=("batch", "latent_height", "latent_width", "image_height", "image_width"),
    validation_shapes=(
        {"batch": 1, "latent_height": 4, "latent_width": 4},
        {"batch": 1, "latent_height": 2, "latent_width": 3},
    ),
    torch_wrapper="sana_edge.export.wrappers:DecoderWrapper",
    engine_axes={"batch": SINGLE, "latent_height": DECODER_TILE, "latent_width": DECODER_TILE,
                 "image_height": IMAGE_SIDE, "image_width": IMAGE_SIDE},
    activation_bytes=_decoder_activations,
    linear_attention=True,
)

COMPONENTS: dict[str, ComponentSpec] = {
    c.name: c for c in (TEXT_ENCODER, TRANSFORMER, CAPTION_KV, TRANSFORMER_STEP, DECODER)}
# What an export holds: the transformer as one graph, or split into caption K/V + step.
SINGLE_GRAPH = (TEXT_ENCODER.name, TRANSFORMER.name, DECODER.name)
SPLIT_GRAPH = (TEXT_ENCODER.name, CAPTION_KV.name, TRANSFORMER_STEP.name, DECODER.name)
# The pipeline's stages and the components each one loads (the memory planner plans stages).
STAGES = {TEXT_ENCODER.name: (TEXT_ENCODER.name,),
          TRANSFORMER.name: (TRANSFORMER.name, CAPTION_KV.name, TRANSFORMER_STEP.name),
          DECODER.name: (DECODER.name,)}


def stage_of(component: str) -> str:
    return next(stage for stage, members in STAGES.items() if component in members)


def sample_inputs(spec: ComponentSpec, dims: dict, seed: int = 0):
    """Deterministic validation inputs (numpy) for `spec` at model dims + dynamic bindings."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in spec.inputs:
        shape = spec.shape(tensor, dims)
        if tensor.fill == TOKEN_IDS:
            feeds[tensor.name] = rng.integers(0, dims["vocab_size"], shape, dtype=np.int64)
        elif tensor.fill == PADDING_MASK:
            # right padding, as the tokenizer produces: each row keeps a prefix of real tokens
            lengths = rng.integers(max(1, shape[1] // 4), shape[1] + 1, shape[0])
            feeds[tensor.name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        elif tensor.fill == TIMESTEP:
            feeds[tensor.name] = np.full(shape, float(rng.integers(0, 1000)), np.float32)
        else:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds
