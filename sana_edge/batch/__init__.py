"""`sana-edge batch`: many prompts to PNGs plus index.jsonl, resumable, in-process or on Ray Data.

Modules: items (prompts file -> items with stable keys), index (index.jsonl, resume checks),
worker (render one item; the per-node export check), runner (the driver), ray_runner (Ray Data).
"""
