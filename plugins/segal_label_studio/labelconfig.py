"""The labelling config SegAL gives a Label Studio project, and reading one back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

__all__ = ["ConfigView", "label_config", "read_config"]

#: Tag names of the generated config.
IMAGE, BRUSH, POLYGON = "image", "brush", "polygon"


def _hex(color: Sequence[int]) -> str:
    r, g, b = (max(0, min(255, int(c))) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def label_config(classes: Sequence[str], colors: Sequence[Sequence[int]]) -> str:
    """A config with the image, brush labels and polygon labels, one label per class
    (in class order, the class colour as its background; grey for a class without one)."""
    labels = "\n".join(
        f"    <Label value={quoteattr(str(name))} "
        f"background={quoteattr(_hex(colors[i] if i < len(colors) else (128, 128, 128)))}/>"
        for i, name in enumerate(classes)
    )
    return (
        "<View>\n"
        f'  <Image name="{IMAGE}" value="${IMAGE}" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{BRUSH}" toName="{IMAGE}">\n{labels}\n  </BrushLabels>\n'
        f'  <PolygonLabels name="{POLYGON}" toName="{IMAGE}" strokeWidth="2" opacity="0.5">\n{labels}\n'
        "  </PolygonLabels>\n"
        "</View>\n"
    )


@dataclass
class ConfigView:
    """What SegAL needs from a project's config.

    :ivar image_key: the task data key of the image (``$image`` -> ``image``).
    :ivar image_name: the Image tag's name (``to_name`` of results).
    :ivar brush: the BrushLabels tag's name, or ``None``; :ivar polygon: likewise.
    :ivar labels: tag name -> its label values.
    """

    image_key: str
    image_name: str
    brush: str | None
    polygon: str | None
    labels: dict[str, list[str]]

    def mismatch(self, classes: Sequence[str]) -> str | None:
        """``None`` when every labels tag holds exactly ``classes``; otherwise what is
        missing and what is extra, in words."""
        wanted = [str(c) for c in classes]
        problems: list[str] = []
        for tag, values in self.labels.items():
            missing = [c for c in wanted if c not in values]
            extra = [v for v in values if v not in wanted]
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"extra {', '.join(extra)}"] if extra else [])
            if parts:
                problems.append(f"{tag}: {'; '.join(parts)}")
        return " | ".join(problems) or None


def read_config(xml: str) -> ConfigView:
    """Parse a project's labelling config.

    :raises ValueError: not XML, no Image tag with a ``$key`` value, or no BrushLabels
        or PolygonLabels tag on that image.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"its labelling config is not XML ({exc})") from None
    images = [el for el in root.iter("Image") if (el.get("value") or "").startswith("$")]
    if not images:
        raise ValueError("its labelling config has no <Image value=\"$...\"> tag")
    image = images[0]
    name = image.get("name") or ""
    tags: dict[str, tuple[str, list[str]]] = {}
    for kind in ("BrushLabels", "PolygonLabels"):
        for el in root.iter(kind):
            if el.get("toName") != name:
                continue
            values = [lab.get("value") or "" for lab in el.iter("Label")]
            tags.setdefault(kind, (el.get("name") or kind.lower(), values))
    if not tags:
        raise ValueError(f"its labelling config has no BrushLabels or PolygonLabels on the image {name!r}")
    return ConfigView(
        image_key=(image.get("value") or "$")[1:],
        image_name=name,
        brush=tags["BrushLabels"][0] if "BrushLabels" in tags else None,
        polygon=tags["PolygonLabels"][0] if "PolygonLabels" in tags else None,
        labels={name_: values for name_, values in tags.values()},
    )
