"""Import MediaPipe's selfie segmenter from its npm package into the bundle ``models/person/``.

The source is ``selfie_segmentation.tflite`` of the npm package ``@mediapipe/selfie_segmentation`` (pinned in
``package.json``; ``npm ci`` puts it under ``node_modules/``). Its flatbuffer is read with the ``tflite`` parser: the
convolutions' fp16 weights (each behind a ``DEQUANTIZE`` op) are widened to float32, exactly, and re-laid out from
TFLite's ``OHWI`` (depthwise ``1HWC``) to PyTorch's ``OIHW``, into :class:`app.engine.selfie_net.SelfieSegmenter`.
The graph's convolutions are matched one to one, in execution order, with the module's (recorded by forward hooks);
every pair must agree in kind, shape, stride and padding, and the graph's other ops are checked to be the ones the
module implements, so a different graph fails loudly instead of converting wrongly.

Written: ``model.safetensors`` (float32), ``model.json`` (the card), ``LICENSE`` (Apache-2.0) and ``NOTICE``.
``tests/test_person_model.py`` checks the result against the TFLite runtime and the shipped bundle against this script.

Usage: python scripts/import_selfie_segmenter.py [--tflite node_modules/@mediapipe/selfie_segmentation/selfie_segmentation.tflite] [--out models/person]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
import torch
from torch import nn

from app.engine.selfie_net import SELFIE_ARCH, SelfieSegmenter
from app.io.bundle import save_bundle
from app.io.card import ClassInfo, DropoutConfig, InputSpec, ModelCard, Normalization

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "@mediapipe/selfie_segmentation"
VERSION = "0.1.1675465747"
FILE = "selfie_segmentation.tflite"
DEFAULT_TFLITE = ROOT / "node_modules" / PACKAGE / FILE
LICENSE_TEXT = ROOT / "scripts" / "licenses" / "Apache-2.0.txt"
TRANSPOSE_CONV = "Convolution2DTransposeBias"
INPUT_SHAPE = (1, 256, 256, 3)
# Every op the module implements; anything else in the graph stops the import.
KNOWN_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "HARD_SWISH", "RELU", "AVERAGE_POOL_2D", "LOGISTIC", "MUL", "ADD", "RESIZE_BILINEAR", TRANSPOSE_CONV}
)
_OP_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
DOMAIN = (
    "Photos of people, selfie/video-call framing (MediaPipe's selfie segmenter, Google): person vs background; never "
    "trained on anything else, so on a photo without a person (an animal, a landscape, a synthetic scene) its 'person' "
    "pixels are guesses, however confident they look. Trained without dropout: its MC-dropout maps come from dropout "
    "inserted after training (a heuristic); test-time augmentation is its principled uncertainty method."
)


class ConversionError(RuntimeError):
    """The ``.tflite`` file is not the graph this importer knows."""


@dataclass
class Op:
    """One operator of the graph: its name, input/output tensor indices and options."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, int | bool] = field(default_factory=dict)


class Graph:
    """The first subgraph of a ``.tflite`` flatbuffer, with its constant tensors readable as float32 arrays.

    Args:
        data: The file's bytes.
    """

    def __init__(self, data: bytes) -> None:
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ConversionError(f"expected one subgraph, found {self.model.SubgraphsLength()}")
        self.graph = self.model.Subgraphs(0)
        self.ops = [self._op(i) for i in range(self.graph.OperatorsLength())]
        self.producer = {t: op for op in self.ops for t in op.outputs}

    def _op(self, index: int) -> Op:
        raw = self.graph.Operators(index)
        code = self.model.OperatorCodes(raw.OpcodeIndex())
        name = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if name == "CUSTOM":
            name = code.CustomCode().decode()
        op = Op(index, name, [int(t) for t in raw.InputsAsNumpy()], [int(t) for t in raw.OutputsAsNumpy()])
        table = raw.BuiltinOptions()
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            conv = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            conv.Init(table.Bytes, table.Pos)
            op.options = {
                "stride_h": conv.StrideH(),
                "stride_w": conv.StrideW(),
                "same": conv.Padding() == tflite.Padding.SAME,
                "activation": conv.FusedActivationFunction(),
                "dilation_h": conv.DilationHFactor(),
                "dilation_w": conv.DilationWFactor(),
            }
            if name == "DEPTHWISE_CONV_2D":
                op.options["multiplier"] = conv.DepthMultiplier()
        elif name == TRANSPOSE_CONV:
            # MediaPipe's TfLiteTransposeConvParams: padding (kTfLitePaddingSame = 1), stride_width, stride_height.
            params = np.frombuffer(raw.CustomOptionsAsNumpy().tobytes(), dtype="<i4")
            op.options = {"same": int(params[0]) == 1, "stride_w": int(params[1]), "stride_h": int(params[2])}
        elif name == "RESIZE_BILINEAR":
            resize = tflite.ResizeBilinearOptions()
            resize.Init(table.Bytes, table.Pos)
            op.options = {"align_corners": resize.AlignCorners(), "half_pixel_centers": resize.HalfPixelCenters()}
        elif name in ("ADD", "MUL"):
            arith = tflite.AddOptions() if name == "ADD" else tflite.MulOptions()
            arith.Init(table.Bytes, table.Pos)
            op.options = {"activation": arith.FusedActivationFunction()}
        return op

    def shape(self, tensor: int) -> tuple[int, ...]:
        """The declared shape of a tensor."""
        t = self.graph.Tensors(tensor)
        return tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def name(self, tensor: int) -> str:
        """A tensor's name in the graph."""
        return str(self.graph.Tensors(tensor).Name().decode())

    def constant(self, tensor: int) -> np.ndarray:
        """A constant tensor as float32: a float32 buffer, or an fp16 buffer behind a ``DEQUANTIZE`` op (widened exactly)."""
        op = self.producer.get(tensor)
        if op is not None:
            if op.name != "DEQUANTIZE":
                raise ConversionError(f"tensor {self.name(tensor)} is computed by {op.name}, not a constant")
            tensor = op.inputs[0]
        t = self.graph.Tensors(tensor)
        dtype = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}.get(t.Type())
        if dtype is None:
            raise ConversionError(f"tensor {self.name(tensor)} has type {t.Type()}, not float16 or float32")
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int):
            raise ConversionError(f"tensor {self.name(tensor)} has no data")
        return np.frombuffer(data.tobytes(), dtype=dtype).reshape(self.shape(tensor)).astype(np.float32)


def _check_graph(graph: Graph) -> None:
    """The graph's input, output and non-convolution ops are what :class:`SelfieSegmenter` implements."""
    unknown = Counter(op.name for op in graph.ops if op.name not in KNOWN_OPS)
    if unknown:
        raise ConversionError(f"ops the module does not implement: {dict(unknown)}")
    inputs, outputs = list(graph.graph.InputsAsNumpy()), list(graph.graph.OutputsAsNumpy())
    if len(inputs) != 1 or graph.shape(int(inputs[0])) != INPUT_SHAPE:
        raise ConversionError(f"expected one input of shape {INPUT_SHAPE}, got {[graph.shape(int(t)) for t in inputs]}")
    last = graph.producer.get(int(outputs[0])) if len(outputs) == 1 else None
    if last is None or last.name != "LOGISTIC" or graph.producer.get(last.inputs[0], last).name != TRANSPOSE_CONV:
        raise ConversionError("expected the output to be LOGISTIC of the Convolution2DTransposeBias layer")
    for op in graph.ops:
        if op.name == "RESIZE_BILINEAR" and (op.options["align_corners"] or not op.options["half_pixel_centers"]):
            raise ConversionError(f"op {op.index}: RESIZE_BILINEAR must use half-pixel centres (torch's align_corners=False), got {op.options}")
        if op.options.get("activation", 0) != 0:
            raise ConversionError(f"op {op.index} ({op.name}) has a fused activation; the module expects separate activation ops")


def _torch_convs(model: SelfieSegmenter) -> list[tuple[str, nn.Conv2d | nn.ConvTranspose2d]]:
    """The module's convolutions in the order a forward pass runs them (recorded by hooks on a 256 × 256 input)."""
    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, nn.Conv2d | nn.ConvTranspose2d]] = []
    handles = [
        m.register_forward_hook(lambda module, _a, _o: order.append((names[module], module)))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, INPUT_SHAPE[1], INPUT_SHAPE[2]))
    finally:
        for h in handles:
            h.remove()
    return order


def _torch_weight(op: Op, kernel: np.ndarray) -> np.ndarray:
    """A TFLite kernel in PyTorch's layout: conv ``OHWI`` → ``OIHW``; depthwise ``1HWC`` → ``C1HW``; transposed ``OHWI`` → ``IOHW``."""
    if op.name == "CONV_2D":
        return kernel.transpose(0, 3, 1, 2)
    if op.name == "DEPTHWISE_CONV_2D":
        depthwise: np.ndarray = kernel[0].transpose(2, 0, 1)[:, None]
        return depthwise
    return kernel.transpose(3, 0, 1, 2)


def _pair(graph: Graph, op: Op, name: str, module: nn.Conv2d | nn.ConvTranspose2d) -> dict[str, torch.Tensor]:
    """The weights of one graph convolution for ``module``, after checking that both are the same layer."""
    where = f"graph op {op.index} ({op.name}, {graph.name(op.outputs[0])}) vs module {name}"
    kind = TRANSPOSE_CONV if isinstance(module, nn.ConvTranspose2d) else "DEPTHWISE_CONV_2D" if module.groups > 1 else "CONV_2D"
    if op.name != kind:
        raise ConversionError(f"{where}: kinds differ ({kind} expected)")
    if op.name == "DEPTHWISE_CONV_2D" and op.options["multiplier"] != 1:
        raise ConversionError(f"{where}: depth multiplier {op.options['multiplier']} (1 expected)")
    if op.name != TRANSPOSE_CONV and (op.options["dilation_h"], op.options["dilation_w"]) != (1, 1):
        raise ConversionError(f"{where}: dilated convolution")
    if (op.options["stride_h"], op.options["stride_w"]) != tuple(module.stride):
        raise ConversionError(f"{where}: stride {op.options['stride_h'], op.options['stride_w']} vs {tuple(module.stride)}")
    if module.kernel_size != (1, 1) and not op.options["same"]:
        raise ConversionError(f"{where}: padding is VALID; the module pads as SAME")
    weight = torch.from_numpy(np.ascontiguousarray(_torch_weight(op, graph.constant(op.inputs[1]))))
    bias = torch.from_numpy(np.ascontiguousarray(graph.constant(op.inputs[2])))
    if weight.shape != module.weight.shape or module.bias is None or bias.shape != module.bias.shape:
        raise ConversionError(f"{where}: weight {tuple(weight.shape)} / bias {tuple(bias.shape)} vs {tuple(module.weight.shape)}")
    return {f"{name}.weight": weight, f"{name}.bias": bias}


def convert(tflite_path: Path) -> SelfieSegmenter:
    """The PyTorch module holding the ``.tflite`` file's weights (float32, eval mode).

    Raises:
        ConversionError: the graph is not the selfie segmenter's (an unknown op, a layer that does not match).
    """
    graph = Graph(tflite_path.read_bytes())
    _check_graph(graph)
    model = SelfieSegmenter().eval()
    convs = [op for op in graph.ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", TRANSPOSE_CONV)]
    modules = _torch_convs(model)
    if len(convs) != len(modules):
        raise ConversionError(f"the graph has {len(convs)} convolutions, the module {len(modules)}")
    state: dict[str, torch.Tensor] = {}
    for op, (name, module) in zip(convs, modules, strict=True):
        state.update(_pair(graph, op, name, module))
    model.load_state_dict(state, strict=True)
    return model


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def person_card(digest: str, parameters: int) -> ModelCard:
    """The card of ``models/person``.

    Args:
        digest: SHA-256 of the source ``.tflite``.
        parameters: The network's parameter count.
    """
    return ModelCard(
        name="person",
        architecture={"arch": SELFIE_ARCH, "classes": 2},
        classes=[ClassInfo(name="background", colour="#1f1f1f"), ClassInfo(name="person", colour="#e6194b")],
        normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        dropout=DropoutConfig(sites=["head"], rate=0.1, mode="channel", trained_with_dropout=False),
        input=InputSpec(working_size=INPUT_SHAPE[1]),
        domain=DOMAIN,
        default_tta="flips",
        provenance={
            "source": {
                "package": f"npm {PACKAGE}",
                "version": VERSION,
                "file": FILE,
                "sha256": digest,
                "license": "Apache-2.0",
                "homepage": "https://google.github.io/mediapipe/solutions/selfie_segmentation",
            },
            "command": f"python scripts/import_selfie_segmenter.py --tflite node_modules/{PACKAGE}/{FILE} --out models/person",
            "conversion": "fp16 weights widened to float32 (exact), OHWI/1HWC → OIHW; the one logit z becomes two-class logits [0, z] (softmax = sigmoid)",
            "parameters": parameters,
            "weights_dtype": "float32",
            "dropout": "none in training; channel dropout (rate 0.1) on the decoder output, before the final transposed convolution, is inserted at inference",
            "verified": "tests/test_person_model.py: equals the TFLite runtime (ai-edge-litert) to <= 1e-3 in probability on skimage.data photos",
        },
    )


def notice(digest: str) -> str:
    """The bundle's NOTICE: what it is, where it comes from, its licence and what was changed."""
    return (
        "models/person: MediaPipe's selfie segmenter (person vs background), converted to PyTorch.\n"
        "\n"
        f"Source:   npm package {PACKAGE}, version {VERSION}\n"
        f"File:     {FILE}\n"
        f"SHA-256:  {digest}\n"
        "Homepage: https://google.github.io/mediapipe/solutions/selfie_segmentation\n"
        "Authors:  The MediaPipe Authors (Google LLC)\n"
        "License:  Apache License, Version 2.0 (the file LICENSE beside this one)\n"
        "\n"
        "Changes (Apache-2.0 section 4(b)): the weights of the .tflite graph were converted by\n"
        "scripts/import_selfie_segmenter.py into model.safetensors for the equivalent PyTorch module\n"
        "app/engine/selfie_net.py: fp16 widened to float32 (exactly), kernels re-laid out from NHWC/OHWI to OIHW.\n"
        "The single output logit z is presented as two-class logits [0, z] (background, person). No weight was\n"
        "retrained or otherwise altered. model.json is this project's card, not MediaPipe's.\n"
    )


def write_bundle(tflite_path: Path, out_dir: Path) -> Path:
    """Convert ``tflite_path`` and write the bundle (weights, card, LICENSE, NOTICE) to ``out_dir``."""
    model = convert(tflite_path)
    digest = sha256(tflite_path)
    parameters = sum(p.numel() for p in model.parameters())
    save_bundle(person_card(digest, parameters), model, out_dir, half=False)
    shutil.copyfile(LICENSE_TEXT, out_dir / "LICENSE")
    (out_dir / "NOTICE").write_text(notice(digest))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Convert and write; print what was written."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE, help=f"the .tflite file (default: {DEFAULT_TFLITE.relative_to(ROOT)}, from `npm ci`)")
    p.add_argument("--out", type=Path, default=ROOT / "models" / "person", help="bundle folder to write")
    args = p.parse_args(argv)
    if not args.tflite.is_file():
        print(f"{args.tflite} not found: run `npm ci` (package.json pins {PACKAGE}@{VERSION}) or pass --tflite", file=sys.stderr)
        return 2
    out = write_bundle(args.tflite, args.out)
    print(f"wrote {out} from {args.tflite} (sha256 {sha256(args.tflite)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
