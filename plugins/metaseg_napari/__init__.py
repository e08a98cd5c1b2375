"""napari plugin of MetaSeg Viewer: reader, writer, sample data and a segmentation widget.

The manifest is ``napari.yaml`` in this folder, found through the ``napari.manifest`` entry
point; the repository root keeps an identical copy (tests/test_packaging.py checks they are equal).
Segmentation logic lives in ``metaseg_viewer``.
"""

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType


class _NoTritonBesideMesaLLVM(importlib.abc.MetaPathFinder):
    """Mark triton absent, but only in a process that already maps a shared ``libLLVM``.

    Why: the first model load imports torchvision, whose ``torch._dynamo`` import runs
    ``import triton`` (``torch.utils._triton.has_triton_package``; no torch setting skips it).
    ``libtriton.so`` carries its own LLVM with exported symbols; dlopened after Mesa's OpenGL
    driver has loaded ``libLLVM-15.so.1`` (llvmpipe under Xvfb, radeonsi) they bind to Mesa's
    copy and the process segfaults (torch 2.14.1, triton 3.8.0). Without Mesa's LLVM, or with
    triton loaded first, it works, so only that case is touched. Inference never compiles
    kernels; torch handles the refusal as "triton not installed".
    """

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "triton" or not _mesa_llvm_loaded():
            return None
        sys.modules["triton"] = None  # type: ignore[assignment]  # later probes: find_spec None, import fails
        raise ModuleNotFoundError("triton not loaded: its LLVM would crash this process, which already holds "
                                  "an OpenGL driver's LLVM (see metaseg_napari)", name="triton")


def _mesa_llvm_loaded() -> bool:
    try:
        return "/libLLVM" in Path("/proc/self/maps").read_text()
    except OSError:  # no /proc (macOS, Windows): no Mesa LLVM there
        return False


sys.meta_path.insert(0, _NoTritonBesideMesaLLVM())
