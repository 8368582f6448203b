"""The Cityscapes label table: stored label ids -> the 19 training ids.

Written from the label definitions published with the dataset: 34 label ids
(0..33), of which 19 are evaluated; the rest, and the license plate (id -1, stored
as 255 when written to 8 bits), are ignored.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["LABEL_TO_TRAIN", "LABEL_NAMES", "TRAIN_CLASSES", "IGNORE"]

IGNORE = 255

#: (label id, name, train id) for every stored label id.
_LABELS: tuple[tuple[int, str, int], ...] = (
    (0, "unlabeled", IGNORE),
    (1, "ego vehicle", IGNORE),
    (2, "rectification border", IGNORE),
    (3, "out of roi", IGNORE),
    (4, "static", IGNORE),
    (5, "dynamic", IGNORE),
    (6, "ground", IGNORE),
    (7, "road", 0),
    (8, "sidewalk", 1),
    (9, "parking", IGNORE),
    (10, "rail track", IGNORE),
    (11, "building", 2),
    (12, "wall", 3),
    (13, "fence", 4),
    (14, "guard rail", IGNORE),
    (15, "bridge", IGNORE),
    (16, "tunnel", IGNORE),
    (17, "pole", 5),
    (18, "polegroup", IGNORE),
    (19, "traffic light", 6),
    (20, "traffic sign", 7),
    (21, "vegetation", 8),
    (22, "terrain", 9),
    (23, "sky", 10),
    (24, "person", 11),
    (25, "rider", 12),
    (26, "car", 13),
    (27, "truck", 14),
    (28, "bus", 15),
    (29, "caravan", IGNORE),
    (30, "trailer", IGNORE),
    (31, "train", 16),
    (32, "motorcycle", 17),
    (33, "bicycle", 18),
    (255, "license plate", IGNORE),
)

#: Stored label id -> train id (255 = ignored).
LABEL_TO_TRAIN = MappingProxyType({label: train for label, _, train in _LABELS})
#: Stored label id -> label name.
LABEL_NAMES = MappingProxyType({label: name for label, name, _ in _LABELS})
_TRAIN_NAMES = {train: name for _, name, train in _LABELS if train != IGNORE}
#: The 19 evaluated classes, index = train id.
TRAIN_CLASSES: tuple[str, ...] = tuple(_TRAIN_NAMES[i] for i in range(len(_TRAIN_NAMES)))
