"""The one declaration of each exported component: tensor names, dtypes, axes, validation shapes
and tolerances. Export, validation, the manifest, the runtime feed contract and the tests all
read these; nothing else spells a tensor name.

An axis is an int (fixed by the architecture), a model dimension name bound from the checkpoint
config (e.g. "latent_channels"), or a dynamic axis name (listed in `dynamic`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How validation inputs are drawn for each tensor (see sana_edge.components.sample_inputs).
NORMAL, TOKEN_IDS, PADDING_MASK, TIMESTEP = "normal", "token_ids", "padding_mask", "timestep"


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


TEXT_ENCODER = ComponentSpec(
    name="text_encoder",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "sequence"), TOKEN_IDS),
        TensorSpec("attention_mask", "int64", ("batch", "sequence"), PADDING_MASK),
    ),
    outputs=(TensorSpec("last_hidden_state", "float32", ("batch", "sequence", "caption_channels")),),
    dynamic=("batch", "sequence"),
    validation_shapes=({"batch": 1, "sequence": 48}, {"batch": 2, "sequence": 21}),
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
)

COMPONENTS: dict[str, ComponentSpec] = {c.name: c for c in (TEXT_ENCODER, TRANSFORMER, DECODER)}


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
