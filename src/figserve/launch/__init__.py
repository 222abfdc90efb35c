"""``python -m figserve serve``: Hypercorn's workers under a master of figserve's own, which
reports a failed start as a failure and ends every process of a stop by its deadline."""
