"""What a checkpoint does, in numbers the views and the CLI show: layer summary, test-set predictions,
feature maps, export.

Usage: `rows, total, classic = summary()`; `pred = predict_test_set(ckpt, model, data_dir)`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mnistcnn import data
from mnistcnn.errors import MnistcnnError
from mnistcnn.model import MyNet, count_parameters


def summary(model: MyNet | None = None) -> tuple[list[tuple[str, tuple, int]], int, dict]:
    """Per layer (name, output shape without batch, parameters), the total, and the lecture's comparison with
    a fully-connected layer producing the same first-layer activations."""
    model = model or MyNet()
    x = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        f1, f2 = model.features(x)
        c1, c2 = model.conv1(x), model.conv2(f1)  # the shapes before pooling, for the table
        logits = model(x)
    shape = lambda t: tuple(t.shape[1:])  # noqa: E731  (without the batch dimension)
    rows = [
        ("input", shape(x), 0),
        ("conv1 3×3, 1→32, pad 1", shape(c1), count_parameters(model.conv1)),
        (f"{model.activation} + max-pool 2", shape(f1), 0),
        ("conv2 3×3, 32→64", shape(c2), count_parameters(model.conv2)),
        (f"{model.activation} + max-pool 2", shape(f2), 0),
        ("flatten", (f2[0].numel(),), 0),
        ("fc1 2304→10 (logits)", shape(logits), count_parameters(model.fc1)),
    ]
    outputs = 32 * 28 * 28
    classic = {
        "inputs": 784,
        "outputs": outputs,
        "parameters": 784 * outputs + outputs,
        "conv1_parameters": count_parameters(model.conv1),
    }
    return rows, count_parameters(model), classic


def predict_test_set(ckpt, model, data_dir, batch_size: int | None = None, log=lambda _: None) -> dict:
    """Every test image's prediction from one `evaluate.on_test_set` (so they agree with `mnistcnn eval`): images
    (uint8), labels, pred, conf (probability of pred), and the pass's metrics. `model` is converted in place."""
    from mnistcnn.evaluate import on_test_set

    out = on_test_set(ckpt, model, data_dir, batch_size, log)
    probs = torch.softmax(out["logits"].float(), 1)
    conf, pred = probs.max(1)
    return {
        "probs": probs.cpu().numpy(),
        "images": out["images"].numpy(),
        "labels": out["labels"].numpy(),
        "pred": pred.cpu().numpy(),
        "conf": conf.cpu().numpy(),
        "metrics": out["metrics"],
    }


def digit_from(index: int | None, image: Path | None, data_dir, log=lambda _: None) -> tuple[np.ndarray, str]:
    """A 28×28 digit in [0, 1]: test image `index`, or a user's image prepared like MNIST's."""
    if (index is None) == (image is None):
        raise MnistcnnError("give either an IMAGE or --index N (a test-set image), not both")
    if image is not None:
        from mnistcnn.images import extract, load_gray

        return extract(load_gray(image), name=str(image)).digits[0], Path(image).name
    images, labels = data.read_test_set(data_dir, log)
    if not 0 <= index < len(images):
        raise MnistcnnError(f"--index must be between 0 and {len(images) - 1}; got {index}")
    return images[index].numpy() / 255.0, f"test #{index} (label {int(labels[index])})"


def feature_maps(ckpt, model, digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from mnistcnn.predict import model_input

    with torch.inference_mode():
        f1, f2 = model.features(model_input(ckpt, model, digit[None]))
    return f1[0].cpu().numpy(), f2[0].cpu().numpy()


def export(ckpt, model, fmt: str, out: Path) -> Path:
    """ONNX (dynamic batch) or TorchScript of the model; input: normalised images (B, 1, 28, 28). Built in
    memory, then written atomically: a failed write leaves whatever `out` held before."""
    import io

    from mnistcnn.outputs import write_bytes

    if fmt not in ("onnx", "torchscript"):
        raise MnistcnnError(f"--format must be onnx or torchscript; got {fmt!r}")
    model = model.cpu().eval()
    example = torch.zeros(2, 1, 28, 28)
    buffer = io.BytesIO()
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated, but still what C++/mobile load
            torch.jit.save(torch.jit.trace(model, example), buffer)
        return write_bytes(out, buffer.getvalue())
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MnistcnnError("ONNX export needs the export extra: pip install -e '.[export]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that a newer one exists
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return write_bytes(out, buffer.getvalue())
