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
from dataclasses import dataclass, field, replace

# How validation inputs are drawn for each tensor (see sample_inputs).
NORMAL, TOKEN_IDS, PADDING_MASK, TIMESTEP = "normal", "token_ids", "padding_mask", "timestep"
UNIT = "unit"  # a scalar-like input in [0, 1): Sprint's guidance, the controlnet's conditioning scale
IMAGE = "image"  # pixels in [-1, 1], as the image processor gives the encoder

# Engine profile rules for a dynamic axis (resolved to (min, opt, max) by sana_edge.export.engine):
CFG_BATCH = "cfg_batch"          # 1..2, tuned for 2 (negative + positive prompt in one batch)
PROMPT_BATCH = "prompt_batch"    # 1..2, tuned for 1 (prompts are encoded one at a time)
SINGLE = "single"                # always 1
TEXT_TOKENS = "text_tokens"      # 1..the instruction + caption length
# The text encoder with a past: TensorRT checks past + new == total at each of min / opt / max.
NEW_TOKENS = "new_tokens"        # 1..the instruction + caption length, tuned for a caption
PAST_TOKENS = "past_tokens"      # 0..the instruction length (the cached prefix, or none)
CONTEXT_TOKENS = "context_tokens"  # past + new at each level
CAPTION_TOKENS = "caption_tokens"  # the caption length the transformer attends to (fixed)
LATENT_SIDE = "latent_side"      # the requested image range (--min/--opt/--max-size) / 32
DECODER_TILE = "decoder_tile"    # latent side up to --decoder-tile / 32 (larger images tile)
ENCODER_TILE = "encoder_tile"    # image side (px) up to --decoder-tile (larger input images encode in tiles)
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


def _encoder_activations(model, height: int, width: int, text_length: int) -> int:
    # The encoder mirrors the decoder's stages (same layout, its own widths); not measured on its
    # own, so it takes the decoder's live-tensor count, which was fitted with room to spare.
    per_pixel = sum(c / 4**i for i, c in enumerate(model.encoder_block_out_channels))
    return int(height * width * per_pixel * 4 * DECODER_LIVE_TENSORS)


def _controlnet_activations(model, height: int, width: int, text_length: int) -> int:
    # Its blocks are the transformer's, plus the stacked block samples it hands over every step.
    tokens = height * width // model.vae_scale_factor**2
    samples = model.controlnet_layers * 2 * tokens * model.transformer_inner_dim * 4
    return _transformer_activations(model, height, width, text_length) + samples


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    axes: tuple
    fill: str = NORMAL
    # A ModelValues attribute that must be truthy for the graph to have this tensor (e.g. the
    # `guidance` input only for guidance-embedding models); None: always there.
    when: str | None = None
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

    def for_model(self, model) -> "ComponentSpec":
        """This declaration as the graph of `model` has it: inputs and outputs whose `when` does
        not hold for the model are left out. Exporter, validation, manifest and runtime all use it."""
        if all(t.when is None for t in self.inputs + self.outputs):
            return self
        keep = lambda tensors: tuple(t for t in tensors if t.when is None or getattr(model, t.when))  # noqa: E731
        return replace(self, inputs=keep(self.inputs), outputs=keep(self.outputs))

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


# Text encoder tensor names (the runtime and the exporter import these, never spell them).
INPUT_IDS, ATTENTION_MASK, LAST_HIDDEN_STATE = "input_ids", "attention_mask", "last_hidden_state"
# The causal K/V cache: every layer's keys (values) stacked on axis 0, so one declaration serves any
# layer count. Inputs hold the past; outputs hold the new tokens' K/V only (the caller appends them).
PAST_KEYS, PAST_VALUES, NEW_KEYS, NEW_VALUES = "past_keys", "past_values", "new_keys", "new_values"
_KV_PAST = ("text_layers", "batch", "text_kv_heads", "past_sequence", "text_head_dim")
_KV_NEW = ("text_layers", "batch", "text_kv_heads", "sequence", "text_head_dim")

# Gemma-2 with a past K/V cache, as decoder-only LLMs are exported for ONNX Runtime: the new tokens'
# ids, a mask over past + new tokens, positions continuing from the past length (computed in the
# graph). Past length 0 encodes a whole sequence, so one graph serves the positive prompt (after the
# cached instruction prefix, sana_edge.prompt_cache) and the negative prompt (no past).
TEXT_ENCODER = ComponentSpec(
    name="text_encoder",
    inputs=(
        TensorSpec(INPUT_IDS, "int64", ("batch", "sequence"), TOKEN_IDS),
        TensorSpec(ATTENTION_MASK, "int64", ("batch", "total_sequence"), PADDING_MASK),
        TensorSpec(PAST_KEYS, "float32", _KV_PAST),
        TensorSpec(PAST_VALUES, "float32", _KV_PAST),
    ),
    outputs=(
        TensorSpec(LAST_HIDDEN_STATE, "float32", ("batch", "sequence", "caption_channels")),
        TensorSpec(NEW_KEYS, "float32", _KV_NEW),
        TensorSpec(NEW_VALUES, "float32", _KV_NEW),
    ),
    dynamic=("batch", "sequence", "past_sequence", "total_sequence"),
    # past > 0 first (the trace shape: a zero-length past would let the tracer fold it away), then
    # a whole sequence with no past, as the negative prompt runs.
    validation_shapes=({"batch": 2, "sequence": 7, "past_sequence": 21, "total_sequence": 28},
                       {"batch": 1, "sequence": 48, "past_sequence": 0, "total_sequence": 48}),
    torch_wrapper="sana_edge.export.wrappers:TextEncoderWrapper",
    engine_axes={"batch": PROMPT_BATCH, "sequence": NEW_TOKENS, "past_sequence": PAST_TOKENS,
                 "total_sequence": CONTEXT_TOKENS},
    activation_bytes=_text_encoder_activations,
)

# The text encoder of exports made before the prefix cache: whole padded sequences, no past. Such
# exports still run (sana_edge.text_encoding takes the full-sequence path for them).
LEGACY_TEXT_ENCODER = ComponentSpec(
    name="text_encoder",
    inputs=(
        TensorSpec(INPUT_IDS, "int64", ("batch", "sequence"), TOKEN_IDS),
        TensorSpec(ATTENTION_MASK, "int64", ("batch", "sequence"), PADDING_MASK),
    ),
    outputs=(TensorSpec(LAST_HIDDEN_STATE, "float32", ("batch", "sequence", "caption_channels")),),
    dynamic=("batch", "sequence"),
    validation_shapes=({"batch": 1, "sequence": 48}, {"batch": 2, "sequence": 21}),
    torch_wrapper="sana_edge.export.wrappers:LegacyTextEncoderWrapper",
    engine_axes={"batch": PROMPT_BATCH, "sequence": TEXT_TOKENS},
    activation_bytes=_text_encoder_activations,
)

# The controlnet's block residuals, token-major as diffusers adds them ((batch, h*w, inner_dim)
# per block), stacked over its blocks and viewed as (h, w): a free reshape that keeps every axis
# a declared one.
CONTROL_SAMPLE_AXES = ("controlnet_layers", "batch", "latent_height", "latent_width", "inner_dim")

TRANSFORMER = ComponentSpec(
    name="transformer",
    inputs=(
        TensorSpec("latents", "float32", ("batch", "latent_channels", "latent_height", "latent_width"),
                   optimum_name="hidden_states"),
        TensorSpec("encoder_hidden_states", "float32", ("batch", "caption_length", "caption_channels")),
        TensorSpec("encoder_attention_mask", "int64", ("batch", "caption_length"), PADDING_MASK),
        TensorSpec("timestep", "float32", ("batch",), TIMESTEP),
        # Sana-Sprint: guidance_scale x guidance_embeds_scale (the distilled guidance, no CFG batch)
        TensorSpec("guidance", "float32", ("batch",), UNIT, when="guidance_embeds"),
        # Exports with a controlnet: its per-block residuals (zeros when no control image is given)
        TensorSpec("controlnet_block_samples", "float32", CONTROL_SAMPLE_AXES, when="controlnet_layers"),
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

ENCODER = ComponentSpec(
    name="vae_encoder",
    inputs=(TensorSpec("image", "float32", ("batch", 3, "image_height", "image_width"), IMAGE),),
    outputs=(TensorSpec("latent", "float32", ("batch", "latent_channels", "latent_height", "latent_width")),),
    dynamic=("batch", "image_height", "image_width", "latent_height", "latent_width"),
    validation_shapes=(
        {"batch": 1, "image_height": 128, "image_width": 128},
        {"batch": 1, "image_height": 64, "image_width": 96},
    ),
    torch_wrapper="sana_edge.export.wrappers:EncoderWrapper",
    engine_axes={"batch": SINGLE, "image_height": ENCODER_TILE, "image_width": ENCODER_TILE},
    activation_bytes=_encoder_activations,
    linear_attention=True,
)

CONTROLNET = ComponentSpec(
    name="controlnet",
    inputs=(
        *(t for t in TRANSFORMER.inputs if t.when is None),  # the transformer's own step inputs
        # the control image's latents (encoder output x VAE scaling), one per batch row
        TensorSpec("controlnet_cond", "float32", ("batch", "latent_channels", "latent_height", "latent_width")),
        TensorSpec("conditioning_scale", "float32", (1,), UNIT),
    ),
    outputs=(TensorSpec("controlnet_block_samples", "float32", CONTROL_SAMPLE_AXES),),
    dynamic=("batch", "latent_height", "latent_width", "caption_length"),
    validation_shapes=TRANSFORMER.validation_shapes,
    torch_wrapper="sana_edge.export.wrappers:ControlNetWrapper",
    engine_axes=TRANSFORMER.engine_axes,
    activation_bytes=_controlnet_activations,
    linear_attention=True,
)

COMPONENTS: dict[str, ComponentSpec] = {
    c.name: c for c in (TEXT_ENCODER, TRANSFORMER, CAPTION_KV, TRANSFORMER_STEP, DECODER, ENCODER, CONTROLNET)}
# What an export holds: the transformer as one graph, or split into caption K/V + step; the VAE
# encoder always (image-to-image, ControlNet), a controlnet when one is exported with it.
SINGLE_GRAPH = (TEXT_ENCODER.name, TRANSFORMER.name, DECODER.name, ENCODER.name)
SPLIT_GRAPH = (TEXT_ENCODER.name, CAPTION_KV.name, TRANSFORMER_STEP.name, DECODER.name, ENCODER.name)
# The pipeline's stages and the components each one loads (the memory planner plans stages); a
# controlnet runs beside the transformer at every step, so it belongs to that stage.
STAGES = {TEXT_ENCODER.name: (TEXT_ENCODER.name,),
          TRANSFORMER.name: (TRANSFORMER.name, CAPTION_KV.name, TRANSFORMER_STEP.name, CONTROLNET.name),
          DECODER.name: (DECODER.name,),
          ENCODER.name: (ENCODER.name,)}


def stage_of(component: str) -> str:
    return next(stage for stage, members in STAGES.items() if component in members)


# Declarations of earlier exports that this runtime still reads (same name, older contract).
LEGACY_DECLARATIONS: tuple[ComponentSpec, ...] = (LEGACY_TEXT_ENCODER,)


def declaration_for(name: str, graph_inputs) -> ComponentSpec:
    """The declaration a loaded graph follows: the current one, or a legacy one of the same name
    whose inputs the graph has (an export made before that contract changed)."""
    found = sorted(graph_inputs)
    for spec in LEGACY_DECLARATIONS:
        if spec.name == name and sorted(spec.input_names) == found:
            return spec
    return COMPONENTS[name]


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
        elif tensor.fill == UNIT:
            feeds[tensor.name] = np.full(shape, rng.uniform(0.1, 1.0), np.float32)
        elif tensor.fill == IMAGE:
            feeds[tensor.name] = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        else:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds
