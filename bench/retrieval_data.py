"""The numpy-docstring retrieval set (zoo/numpy_docs.py), written for bench/ and the README's table:
70/30 train/test with seed 0.

    python bench/retrieval_data.py -o data/numpy-docs
"""

from __future__ import annotations

from zoo.numpy_docs import main, pairs, sections

__all__ = ["pairs", "sections"]

if __name__ == "__main__":
    main()
