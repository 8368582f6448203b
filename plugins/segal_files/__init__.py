"""Helpers for dataset plugins that read images and masks from files.

Not a plugin itself (no entry point, no hooks): the built-in file datasets
(``camvid``, ``cityscapes``, ``voc``, ``folder``) and third-party dataset plugins
import it. The work sits in small modules named by what they hold:

- :mod:`segal_files.images`: read one image or mask file (header, pixels, modes).
- :mod:`segal_files.labels`: :class:`LabelMap` and :class:`ColorMap`, stored values
  or colours -> class ids.
- :mod:`segal_files.layout`: the data folder, files by id, image/mask pairs, list files.
- :mod:`segal_files.options`: the ``verify``/``size``/``scale`` dataset options.
- :mod:`segal_files.dataset`: :class:`FileDataset` and the load-time checks.
- :mod:`segal_files.template`: :func:`load_file_splits`, the shared ``load``.
- :mod:`segal_files.text`: :func:`read_text`, text files in UTF-8 (or UTF-16 with a BOM).

See ``docs/file-datasets.md``.
"""

from __future__ import annotations

from .dataset import AUTO_VERIFY_PIXELS, VERIFY_MODES, FileDataset, check_headers, verify_masks
from .images import IMAGE_EXTENSIONS, MASK_EXTENSIONS, MASK_FORMATS, output_size, read_header, read_image, read_mask
from .labels import ColorMap, LabelMap
from .layout import ListLine, Sample, data_root, find_files, list_lines, pair_by_id, read_list
from .options import OPTION_FLAG, FileOptions, parse_size, resize_options
from .template import ClassTable, Layout, SplitFiles, load_file_splits
from .text import read_text

__all__ = [
    "AUTO_VERIFY_PIXELS",
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "MASK_FORMATS",
    "OPTION_FLAG",
    "VERIFY_MODES",
    "ClassTable",
    "ColorMap",
    "FileDataset",
    "FileOptions",
    "LabelMap",
    "Layout",
    "ListLine",
    "Sample",
    "SplitFiles",
    "check_headers",
    "data_root",
    "find_files",
    "list_lines",
    "load_file_splits",
    "output_size",
    "pair_by_id",
    "parse_size",
    "read_header",
    "read_image",
    "read_list",
    "read_mask",
    "read_text",
    "resize_options",
    "verify_masks",
]
