"""The text encoder as optimum-onnx runs it: a whole sequence, no past K/V cache.

sana-edge's text encoder takes a past K/V cache (the instruction prefix is cached at export,
sana_edge.prompt_cache); optimum's `ORTSanaPipeline` feeds only `input_ids` and `attention_mask`.
With an empty past the graph computes exactly the full-sequence encoder, so `convert` rewrites it
that way: the past inputs become zero-length constants shaped from the batch of `input_ids`, and
the new-K/V outputs (and the nodes only they need) are dropped. The weights are untouched.
"""

from __future__ import annotations

from sana_edge.components import INPUT_IDS, LAST_HIDDEN_STATE, NEW_KEYS, NEW_VALUES, PAST_KEYS, PAST_VALUES
from sana_edge.errors import UserError


def has_past(model) -> bool:
    return any(i.name == PAST_KEYS for i in model.graph.input)


def drop_past(model) -> None:
    """Rewrite a text encoder graph with a past (in place) into the full-sequence graph; a graph
    without one (an export made before the prompt cache) is already that."""
    if not has_past(model):
        return
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    past = next(i for i in graph.input if i.name == PAST_KEYS)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in past.type.tensor_type.shape.dim]
    layers, heads, head_dim = dims[0], dims[2], dims[4]
    if None in (layers, heads, head_dim):
        raise UserError(f"the text encoder's {PAST_KEYS} input has no fixed layer/head sizes ({dims}); "
                        "re-export it with `sana-edge export CHECKPOINT -o DIR --single-transformer`, then convert")

    def constant(name: str, values) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    nodes = [
        helper.make_node("Shape", [INPUT_IDS], ["optimum/ids_shape"]),
        helper.make_node("Gather", ["optimum/ids_shape", constant("optimum/zero_index", [0])], ["optimum/batch"], axis=0),
        helper.make_node("Concat", [constant("optimum/layers", [layers]), "optimum/batch",
                                    constant("optimum/heads_empty_dim", [heads, 0, head_dim])], ["optimum/past_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["optimum/past_shape"], [PAST_KEYS],
                         value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Identity", [PAST_KEYS], [PAST_VALUES]),
    ]
    kept_inputs = [i for i in graph.input if i.name not in (PAST_KEYS, PAST_VALUES)]
    kept_outputs = [o for o in graph.output if o.name not in (NEW_KEYS, NEW_VALUES)]
    del graph.input[:], graph.output[:]
    graph.input.extend(kept_inputs)
    graph.output.extend(kept_outputs)
    live = _needed_nodes(nodes + list(graph.node), {LAST_HIDDEN_STATE})
    del graph.node[:]
    graph.node.extend(live)
    used = _names_read(live)
    kept_weights = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_weights)


def _subgraphs(node) -> list:
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def _names_read(nodes) -> set[str]:
    """Every tensor name the nodes read, inside their subgraphs (If/Loop) included."""
    names = set()
    for node in nodes:
        names.update(node.input)
        for subgraph in _subgraphs(node):
            names |= _names_read(subgraph.node)
    return names


def _needed_nodes(nodes: list, wanted: set[str]) -> list:
    """The nodes `wanted` depends on, in their (topological) order."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    keep, stack = set(), [producer[name] for name in wanted if name in producer]
    while stack:
        index = stack.pop()
        if index in keep:
            continue
        keep.add(index)
        stack.extend(producer[n] for n in _names_read([nodes[index]]) if n in producer and producer[n] not in keep)
    return [node for i, node in enumerate(nodes) if i in keep]
