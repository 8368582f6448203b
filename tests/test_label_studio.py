"""--oracle label-studio without a server: brush RLE, polygon rasterising, the
labelling config, annotation rules, options, an unreachable server.
(The real-server tests are in test_label_studio_server.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import Handoff, Query, SegalError
from segal_core.testing import RandomImages
from segal_label_studio import LabelStudioOracle
from segal_label_studio.client import _is_refresh_jwt
from segal_label_studio.labelconfig import label_config, read_config
from segal_label_studio.masks import LabelError, annotation_mask, latest_annotation, prediction_results
from segal_label_studio.raster import fill_polygon, percent_to_pixels
from segal_label_studio.rle import RLEError, decode, decode_alpha, encode, encode_mask

CLASSES = ["road", "car & bus", "sky"]
COLORS = [(128, 64, 128), (0, 0, 142), (70, 130, 180)]


# -- brush RLE ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 70000)), max_size=12))
def test_rle_round_trip(runs: list[tuple[int, int]]) -> None:
    values = np.concatenate([np.full(n, v) for v, n in runs]) if runs else np.zeros(0, np.int64)
    assert np.array_equal(decode(encode(values)), values)


def test_rle_header_and_bits_by_hand() -> None:
    # 3 values of 8 bits, all 7: header 32+5+16 bits, then one repeat chunk:
    # 1 (repeat), 00 (size class 0 = 3 bits), 010 (length 3), 00000111 (value 7)
    data = encode(np.array([7, 7, 7]))
    bits = "".join(f"{b:08b}" for b in data)
    assert bits[:32] == f"{3:032b}" and bits[32:37] == "00111"
    assert bits[37:53] == "0010" "0101" "1001" "1111"  # widths 3, 6, 10, 16 minus one
    assert bits[53:67] == "1" "00" "010" "00000111"
    assert set(bits[67:]) <= {"0"} and len(bits) % 8 == 0


def test_rle_decodes_literal_chunks_and_other_widths() -> None:
    # a stream written by hand with a 4-bit word and widths 1,2,3,4: literal [1, 2], then 5 x 9
    bits = f"{7:032b}" + f"{3:05b}" + "0000" "0001" "0010" "0011"
    bits += "0" "00" "1" "0001" "0010"  # literal, class 0 (1 bit): length 2, values 1, 2
    bits += "1" "10" "100" "1001"  # repeat, class 2 (3 bits): length 5, value 9
    bits += "0" * (-len(bits) % 8)
    data = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode(data).tolist() == [1, 2, 9, 9, 9, 9, 9]


def test_rle_mask_alpha_and_bad_streams() -> None:
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:4, 2:6] = True
    alpha = decode_alpha(encode_mask(mask), 5, 7)
    assert np.array_equal(alpha >= 128, mask) and set(np.unique(alpha)) == {0, 255}
    with pytest.raises(RLEError, match="not 5x8x4"):
        decode_alpha(encode_mask(mask), 5, 8)
    with pytest.raises(RLEError, match="truncated"):
        decode(encode_mask(mask)[:9])
    with pytest.raises(RLEError, match="more than"):
        decode_alpha(encode(np.zeros(10_000)), 2, 2)
    with pytest.raises(RLEError, match="list of bytes"):
        decode([300, 1])


# -- polygons ----------------------------------------------------------------------------


def _by_centres(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A second implementation of the rule, for convex polygons listed clockwise on
    screen (y down): a centre is inside when it is strictly on the inner side of every
    edge; on an edge, inside for left edges (going up) and top edges (going right)."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = np.ones((height, width), dtype=bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
        cross = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        on_edge_inside = (y1 < y0) or (y1 == y0 and x1 > x0)
        inside &= (cross > 0) | ((cross == 0) & on_edge_inside)
    return inside


def test_polygon_rectangle_on_pixel_corners_is_exact() -> None:
    height, width = 10, 12
    pts = percent_to_pixels([[100 * 2 / 12, 10], [100 * 9 / 12, 10], [100 * 9 / 12, 70], [100 * 2 / 12, 70]],
                            height, width)
    expected = np.zeros((height, width), dtype=bool)
    expected[1:7, 2:9] = True
    assert np.array_equal(fill_polygon(pts, height, width), expected)


def test_polygon_centres_on_edges_count_for_left_and_top_edges_only() -> None:
    height, width = 6, 8
    expected = np.zeros((height, width), dtype=bool)
    expected[0:3, 0:4] = True  # centres x = 0.5 (left edge: in) .. 3.5; 4.5 is on the right edge: out
    rect = np.array([[0.5, 0.5], [4.5, 0.5], [4.5, 3.5], [0.5, 3.5]])
    assert np.array_equal(fill_polygon(rect, height, width), expected)
    assert np.array_equal(fill_polygon(rect[::-1], height, width), expected)  # either direction
    left = np.array([[0, 0], [4.5, 0], [4.5, 6], [0, 6]])
    right = np.array([[4.5, 0], [8, 0], [8, 6], [4.5, 6]])
    a, b = fill_polygon(left, height, width), fill_polygon(right, height, width)
    assert not (a & b).any() and (a | b).all() and b[:, 4].all()  # on the shared edge: the right one's left edge


def test_polygon_rules_shared_edges_and_triangles() -> None:
    height, width = 16, 16
    left = np.array([[0, 0], [8, 0], [8, 16], [0, 16]], dtype=float)
    right = np.array([[8, 0], [16, 0], [16, 16], [8, 16]], dtype=float)
    a, b = fill_polygon(left, height, width), fill_polygon(right, height, width)
    assert not (a & b).any() and (a | b).all()
    triangle = np.array([[1.3, 2.2], [14.6, 5.1], [4.4, 13.7]])
    filled = fill_polygon(triangle, height, width)
    assert np.array_equal(filled, _by_centres(triangle, height, width)) and filled.sum() > 40
    assert not fill_polygon(np.array([[1, 1], [5, 5]], dtype=float), height, width).any()
    outside = fill_polygon(np.array([[-5, -5], [40, -5], [40, 40], [-5, 40]], dtype=float), height, width)
    assert outside.all()


# -- the labelling config ----------------------------------------------------------------


def test_generated_config_reads_back_and_mismatches_are_named() -> None:
    xml = label_config(CLASSES, COLORS)
    assert 'value="car &amp; bus"' in xml and 'background="#800080"' not in xml and "#804080" in xml
    view = read_config(xml)
    assert (view.image_key, view.image_name, view.brush, view.polygon) == ("image", "image", "brush", "polygon")
    assert view.mismatch(CLASSES) is None
    wrong = view.mismatch(["road", "sky", "tree"])
    assert wrong == "brush: missing tree; extra car & bus | polygon: missing tree; extra car & bus"
    with pytest.raises(ValueError, match="not XML"):
        read_config("<View>")
    with pytest.raises(ValueError, match="no BrushLabels or PolygonLabels"):
        read_config('<View><Image name="i" value="$x"/><Choices name="c" toName="i"/></View>')


# -- annotations to masks ----------------------------------------------------------------


def _brush(label: str, mask: np.ndarray) -> dict:
    h, w = mask.shape
    return {"type": "brushlabels", "original_width": w, "original_height": h,
            "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [label]}}


def _polygon(label: str, points: list[list[float]], h: int, w: int) -> dict:
    return {"type": "polygonlabels", "original_width": w, "original_height": h,
            "value": {"points": points, "polygonlabels": [label], "closed": True}}


def test_results_paint_in_order_later_wins_rest_ignored() -> None:
    h, w = 8, 10
    big = np.zeros((h, w), dtype=bool)
    big[0:6, 0:6] = True
    results = [_brush("road", big), _polygon("sky", [[40, 25], [80, 25], [80, 75], [40, 75]], h, w),
               {"type": "relation", "from_id": "a", "to_id": "b"}]
    mask = annotation_mask(results, CLASSES, h, w, 255)
    expected = np.full((h, w), 255)
    expected[0:6, 0:6] = 0
    expected[2:6, 4:8] = 2
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize("result, message", [
    ({"type": "rectanglelabels", "value": {"rectanglelabels": ["road"]}}, "rectanglelabels result"),
    ({"type": "polygonlabels", "value": {"points": [[0, 0], [1, 1], [0, 1]], "polygonlabels": ["tree"]}},
     "'tree' is not one of the classes"),
    ({"type": "polygonlabels", "value": {"points": [[0, 0]], "polygonlabels": ["road", "sky"]}}, "2 labels"),
    ({"type": "polygonlabels", "original_width": 5, "original_height": 8,
      "value": {"points": [[0, 0]], "polygonlabels": ["road"]}}, "5x8 image"),
    ({"type": "brushlabels", "value": {"rle": [1, 2, 3], "brushlabels": ["road"]}}, "cannot be read"),
    ({"type": "polygonlabels", "value": {"points": "nope", "polygonlabels": ["road"]}}, "not \\[x%, y%\\]"),
])
def test_unusable_results_say_why(result: dict, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        annotation_mask([result], CLASSES, 8, 10, 255)


def test_latest_non_cancelled_annotation() -> None:
    anns = [{"id": 1, "updated_at": "2026-01-02T00:00:00Z", "was_cancelled": False},
            {"id": 2, "updated_at": "2026-01-03T00:00:00Z", "was_cancelled": True},
            {"id": 3, "updated_at": "2026-01-02T10:00:00Z", "was_cancelled": False}]
    assert latest_annotation(anns)["id"] == 3
    assert latest_annotation([anns[1]]) is None and latest_annotation([]) is None


def test_prediction_results_draw_the_prediction_exactly() -> None:
    pred = np.random.default_rng(1).integers(0, 3, (9, 13))
    results = prediction_results(pred, CLASSES, "brush", "image")
    assert sorted(r["value"]["brushlabels"][0] for r in results) == sorted(CLASSES)
    assert np.array_equal(annotation_mask(results, CLASSES, 9, 13, 255), pred)


# -- options and connection errors -------------------------------------------------------


def test_options_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(SegalError, match="url=http://HOST:8080 \\(or set LABEL_STUDIO_URL\\)"):
        LabelStudioOracle(token="x")
    with pytest.raises(SegalError, match="token=... \\(or set LABEL_STUDIO_API_KEY\\)"):
        LabelStudioOracle(url="http://localhost:8080")
    with pytest.raises(SegalError, match="url=localhost:8080: expected http"):
        LabelStudioOracle(url="localhost:8080", token="x")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls.example:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "abc")
    oracle = LabelStudioOracle()
    assert (oracle.url, oracle.token, oracle.waits) == ("http://ls.example:8080", "abc", True)


def test_personal_access_tokens_are_told_from_legacy_ones() -> None:
    import base64
    import json

    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    assert _is_refresh_jwt(f"{part({'alg': 'HS256'})}.{part({'token_type': 'refresh'})}.sig")
    assert not _is_refresh_jwt(f"{part({'alg': 'HS256'})}.{part({'token_type': 'access'})}.sig")
    assert not _is_refresh_jwt("0123456789abcdef0123456789abcdef01234567")


def _handoff(folder: Path, pool: RandomImages, round: int = 0) -> Handoff:  # noqa: A002
    folder.mkdir(parents=True, exist_ok=True)
    return Handoff(round=round, queries=[Query(pool.ids[0], 1.0)], pool=pool, folder=folder,
                   classes=pool.classes, colors=[(1, 2, 3)] * len(pool.classes), ignore_index=255)


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    oracle = LabelStudioOracle(url=f"http://127.0.0.1:{port}", token="abc", timeout=5)
    handoff = _handoff(tmp_path / "run" / "queries" / "round-000", RandomImages(2))
    with pytest.raises(SegalError, match=f"url=http://127.0.0.1:{port}: no Label Studio answers there") as err:
        oracle.submit(handoff)
    assert "\n" not in str(err.value)


def test_collect_without_the_record_is_one_line(tmp_path: Path) -> None:
    oracle = LabelStudioOracle(url="http://127.0.0.1:9", token="abc")
    handoff = _handoff(tmp_path / "run" / "queries" / "round-000", RandomImages(2))
    with pytest.raises(SegalError, match="label-studio.json: missing or incomplete"):
        oracle.collect(handoff)
    (handoff.folder / "label-studio.json").write_text("{oops")
    with pytest.raises(SegalError, match="cannot be read"):
        oracle.collect(handoff)


def test_registered_under_both_names() -> None:
    from segal_core.plugins import load_plugins

    registry = load_plugins().registry
    assert registry.oracle("label-studio") is LabelStudioOracle
    assert registry.oracle("label_studio") is LabelStudioOracle


def test_a_silent_server_and_a_web_server_that_is_not_label_studio(tmp_path: Path) -> None:
    import http.server
    import threading

    from segal_label_studio.client import LabelStudio

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(SegalError, match="did not answer GET /api/projects/ within 1 s; .* timeout=SECONDS"):
            LabelStudio(f"http://127.0.0.1:{port}", "abc", timeout=1).projects()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(SegalError, match=f"url={url}: the server there does not answer like Label Studio"):
            LabelStudioOracle(url=url, token="abc").submit(_handoff(tmp_path / "r" / "queries" / "round-000",
                                                                    RandomImages(2)))
    finally:
        server.shutdown()
        server.server_close()


def test_a_brush_pixel_counts_from_alpha_128() -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.int64)
    rgba[..., 3] = [[0, 1, 127], [128, 200, 255]]  # soft stroke edges
    result = {"type": "brushlabels", "original_width": 3, "original_height": 2,
              "value": {"format": "rle", "rle": encode(rgba.ravel()), "brushlabels": ["sky"]}}
    assert annotation_mask([result], CLASSES, 2, 3, 255).tolist() == [[255, 255, 255], [2, 2, 2]]
