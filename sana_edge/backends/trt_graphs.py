"""CUDA graphs for TensorRT execution contexts.

Replaying a graph captured for other input shapes on the same execution context is undefined
(the context's shape-dependent state changed under it), so a context keeps one graph, for the
signature it was captured with, and recaptures when the signature changes. A signature is
captured only when it repeats (the run before warmed the kernels and the shape is likely to
recur): the transformer's denoising steps replay from the second step on, while the text
encoder, which alternates between the prompt's and the negative prompt's shapes, never pays
for a capture it would not reuse.

Modes (`TensorRTBackend(graphs=...)`):
- "builtin": TensorRT-RTX's runtime config captures and replays whole graphs itself
  (CudaGraphStrategy.WHOLE_GRAPH_CAPTURE), after its lazily specialised kernels are ready.
- "manual": this module's capture; on TensorRT-RTX, kernels are specialised eagerly so the
  warm-up run already uses the kernels that get captured.
- "off": plain enqueues.
"auto" is "builtin" on TensorRT-RTX and "manual" on full TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable

GRAPH_MODES = ("auto", "builtin", "manual", "off")


def resolve_mode(mode: str, is_rtx: bool) -> str:
    if mode not in GRAPH_MODES:
        raise ValueError(f"graphs mode '{mode}' is not one of {', '.join(GRAPH_MODES)}")
    if mode == "auto":
        return "builtin" if is_rtx else "manual"
    if mode == "builtin" and not is_rtx:
        return "manual"  # full TensorRT has no built-in capture
    return mode


class GraphCache:
    """One captured graph per execution context, valid for one input-shape signature.

    `capture(enqueue)` returns a graph (`launch()`, `destroy()`) or None when capture failed;
    `capturable()` says whether the context may be captured on its stream right now.
    """

    def __init__(self, capture: Callable, capturable: Callable[[], bool]):
        self._capture, self._capturable = capture, capturable
        self.graph = None
        self.signature = None
        self._previous = None  # signature of the last plain run
        self._failed: set = set()  # signatures whose capture failed: not tried again
        self.captures = 0

    def run(self, signature: tuple, enqueue: Callable[[], None]) -> bool:
        """Do one run's work for `signature`; True when it replayed the captured graph."""
        if self.graph is not None and signature == self.signature:
            self.graph.launch()
            return True
        self.drop()
        enqueue()
        if signature == self._previous and signature not in self._failed and self._capturable():
            self.graph = self._capture(enqueue)  # recorded, not run: this run's work is done above
            if self.graph is None:
                self._failed.add(signature)
            else:
                self.signature = signature
                self.captures += 1
        self._previous = signature
        return False

    def drop(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
        self.graph = self.signature = None
