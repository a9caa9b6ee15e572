"""Which kernels PyTorch's scaled-dot-product attention may run, for the whole process.

PyTorch picks a kernel for every ``scaled_dot_product_attention`` call from those allowed. On an
H100/H200 it prefers cuDNN's, which costs about a millisecond of host time a call to look up its
graph: for the short sequences of a VLM fine-tune, where the host launches faster than the GPU
finishes little else, the memory-efficient or flash kernel can be the quicker choice. The choice
is process-wide (PyTorch keeps it in global flags) and changes no result beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# Our names for PyTorch's kernels, and the stem of the ``torch.backends.cuda`` switch of each
# (the switches also govern the CPU's choice between its flash kernel and the plain one).
SDPA_BACKENDS = {"flash": "flash", "efficient": "mem_efficient", "cudnn": "cudnn", "math": "math"}


def allowed_sdpa_backends() -> list[str]:
    """The kernels attention may run now, by our names."""
    return [
        name for name, stem in SDPA_BACKENDS.items() if getattr(torch.backends.cuda, f"{stem}_sdp_enabled")()
    ]


def allow_sdpa_backends(names: Iterable[str]) -> list[str]:
    """Allow only the kernels ``names`` (keys of :data:`SDPA_BACKENDS`); returns those allowed before,
    so a caller can put them back."""
    names = list(names)
    unknown = sorted(set(names) - set(SDPA_BACKENDS))
    if unknown or not names:
        raise ValueError(f"sdpa backends: unknown {unknown}; choose from {list(SDPA_BACKENDS)}" if unknown
                         else "sdpa backends: name at least one")  # fmt: skip
    before = allowed_sdpa_backends()
    for name, stem in SDPA_BACKENDS.items():
        getattr(torch.backends.cuda, f"enable_{stem}_sdp")(name in names)
    return before
