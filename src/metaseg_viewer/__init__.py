"""MetaSeg Viewer core: read brain MRI, preprocess it, segment it, score it.

Importing this package is cheap (no torch); the modules that need torch import it themselves.
The shipped models segment FLAIR abnormality of lower-grade glioma (LGG data set of Buda et al.,
2019), which is what they were trained and measured on.
"""

from metaseg_viewer.errors import CheckpointError, InputError, MetaSegError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "InputError", "MetaSegError", "__version__"]
