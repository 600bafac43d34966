"""sana-edge: SANA text-to-image on exported graphs, with a torch-free runtime."""

__version__ = "0.1.0"

__all__ = ["SanaEdgePipeline", "__version__"]


def __getattr__(name):
    # Lazy, so `import sana_edge` stays cheap (the CLI starts fast and imports what it needs).
    if name == "SanaEdgePipeline":
        from .pipeline import SanaEdgePipeline

        return SanaEdgePipeline
    raise AttributeError(name)
