"""Metrics of the smp models: confusion matrix, IoU convention, evaluate()."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import ModelConfig
from segal_smp import MODELS, ConfusionMatrix, confusion_matrix, scores_from_confusion

from listdata import ListDataset

IGNORE = 255


# truth and prediction of 10 pixels over 4 classes: class 3 appears nowhere,
# two pixels are ignored (one of them predicted as class 2, which must not count)
TRUTH = torch.tensor([0, 0, 0, 1, 1, 2, IGNORE, IGNORE, 1, 0])
PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])


def test_confusion_matrix_by_hand() -> None:
    expected = torch.tensor(
        [  # rows = truth, columns = prediction
            [2, 1, 1, 0],
            [0, 2, 1, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 0],
        ]
    )
    assert torch.equal(confusion_matrix(PRED, TRUTH, 4), expected)


def test_scores_by_hand() -> None:
    result = scores_from_confusion(confusion_matrix(PRED, TRUTH, 4))
    # class 0: tp 2, fp 0, fn 2 -> 2/4; class 1: tp 2, fp 1, fn 1 -> 2/4
    # class 2: tp 1, fp 2, fn 0 -> 1/3; class 3: absent everywhere -> NaN
    assert result.per_class_iou[:3] == pytest.approx([0.5, 0.5, 1 / 3])
    assert math.isnan(result.per_class_iou[3])
    assert result.miou == pytest.approx((0.5 + 0.5 + 1 / 3) / 3)
    assert result.pixel_accuracy == pytest.approx(5 / 8)


def test_class_only_predicted_counts_with_zero_iou() -> None:
    truth = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])
    result = scores_from_confusion(confusion_matrix(pred, truth, 3))
    assert result.per_class_iou == pytest.approx([0.5, 1.0, 0.0])
    assert result.miou == pytest.approx(0.5)


def test_nothing_counted_gives_nan() -> None:
    result = scores_from_confusion(confusion_matrix(torch.zeros(4), torch.full((4,), IGNORE), 2))
    assert math.isnan(result.miou) and math.isnan(result.pixel_accuracy)
    assert all(math.isnan(v) for v in result.per_class_iou)


def test_out_of_range_truth_is_not_counted() -> None:
    matrix = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, -1, 7]), 2)
    assert int(matrix.sum()) == 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 2, 3, IGNORE])), min_size=1, max_size=60),
    st.integers(1, 5),
)
def test_accumulated_matrix_equals_naive_count(pairs: list[tuple[int, int]], parts: int) -> None:
    pred = torch.tensor([p for p, _ in pairs])
    truth = torch.tensor([t for _, t in pairs])
    naive = torch.zeros(4, 4, dtype=torch.long)
    for p, t in pairs:
        if t != IGNORE:
            naive[t, p] += 1
    metric = ConfusionMatrix(4)
    for p_chunk, t_chunk in zip(pred.chunk(parts), truth.chunk(parts), strict=True):
        metric.update(p_chunk, t_chunk)
    assert torch.equal(metric.compute(), naive)


def test_evaluate_pads_mixed_sizes_with_ignore(monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate() batches images of different sizes: the padding must not count."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(20, 30), (33, 17), (8, 8)]
    images = [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in sizes]
    masks = [torch.randint(0, 3, (h, w), generator=gen) for h, w in sizes]
    masks[0][:5] = IGNORE
    data = ListDataset(images, masks, 3)
    model = MODELS["fpn"](ModelConfig(num_classes=3, device="cpu", options={"encoder": "tu-test_resnet", "batch_size": 2}))

    def rule(batch: torch.Tensor) -> torch.Tensor:
        # a fixed "prediction": class = red channel band; padded zeros predict class 0
        pred = batch[:, 0].long() * 3 // 256
        return torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()

    monkeypatch.setattr(model, "logits", rule)
    result = model.evaluate(data)
    expected = sum(confusion_matrix(rule(im[None])[0].argmax(0), m, 3) for im, m in zip(images, masks, strict=True))
    assert isinstance(expected, torch.Tensor)
    ref = scores_from_confusion(expected)
    assert result.miou == pytest.approx(ref.miou)
    assert result.pixel_accuracy == pytest.approx(ref.pixel_accuracy)
    assert result.per_class_iou == pytest.approx(ref.per_class_iou, nan_ok=True)


def test_evaluate_real_model_reports_progress() -> None:
    from segal_core.testing import RandomImages

    data = RandomImages(3, sizes=[(24, 40)], num_classes=3)
    model = MODELS["unet"](ModelConfig(num_classes=3, device="cpu", options={"encoder": "tu-test_resnet", "batch_size": 1}))
    calls: list[tuple[str, int, int]] = []
    result = model.evaluate(data, progress=lambda *a: calls.append(a))
    assert calls[-1] == ("evaluate", 2, 2)  # inference batch = 2 x batch size
    assert 0.0 <= result.pixel_accuracy <= 1.0
    assert len(result.per_class_iou) == 3


def test_evaluate_empty_split_is_nan() -> None:
    model = MODELS["unet"](ModelConfig(num_classes=2, device="cpu", options={"encoder": "tu-test_resnet"}))
    result = model.evaluate(ListDataset([], [], 2))
    assert math.isnan(result.miou) and math.isnan(result.pixel_accuracy)
