"""napari plugin of MetaSeg Viewer: reader, writer, sample data and a segmentation widget.

The manifest is the repository's root ``napari.yaml`` (this folder holds a symlink to it), found
through the ``napari.manifest`` entry point. Segmentation logic lives in ``metaseg_viewer``.
"""

import sys

# torchvision imports torch._dynamo, which loads the optional Triton compiler if installed.
# Triton embeds its own LLVM; loaded after an OpenGL driver that also uses LLVM (Mesa llvmpipe
# under Xvfb, radeonsi), it crashes the process (seen with torch 2.14 / triton 3.8). Inference
# never compiles kernels, so in a napari session where triton is not loaded yet, it is marked
# absent; torch then simply reports Triton as unavailable.
if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]
