"""Look at one video: its motion arrays, every mask on the clip the loader gives, and, with a
checkpoint, the reconstruction of the hidden patches.

    python train/visualize.py --video pan_object_h264_refs3 --out runs/vis               # demo shards
    python train/visualize.py --shards data/shards/k400 --video ID --checkpoint runs/demo/checkpoint.pt --out DIR

Files written into --out (PNG: the middle frame of the range; GIF: every frame of it):

    mv.png / mv.gif        codec motion vectors as arrows on the 8 px cell grid (valid cells only,
                           every --step-th cell, length x --arrow-scale), from the cell centre
                           along the motion (mv[t]: content moved from t-1 to t)
    flow.png / flow.gif    frame | camera-compensated ("warped") flow | camera-inclusive flow
                           (compensated + homography displacement), HSV wheel: hue = direction,
                           brightness = speed, one scale for both (the wheel in the corner, its
                           rim = the top speed shown)
    tracks.png / .gif      the trajectories starting at frame t (positions rebuilt with
                           shards.tracks.positions), drawn on frame t + L, coloured by
                           step from dark (start) to yellow (end)
    hog.png / hog.gif      frame | HOG glyphs at 2x: per cell a line along the dominant edge
                           (perpendicular to the dominant gradient bin), length ~ its magnitude
    masks.png / .gif       the clip of `train/clips/dataset.py` (same sampling and crop, no flip) and every
                           mask of train.pretraining.masks.MASKS on it: rows = masks, columns = time slices
                           (first frame of each tubelet), hidden patches greyed out
    reconstruction.png/.gif  with --checkpoint (pixel target): original | the encoder's visible
                           patches | reconstruction (hidden patches predicted, visible copied)

The clip geometry and mask ratio come from the checkpoint's config when one is given, from the
flags otherwise. Drawing uses OpenCV; GIFs are written with Pillow.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

if __package__ in (None, ""):  # `python train/visualize.py` as well as `python -m train.visualize`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.cli import UsageError, run_main  # noqa: E402
from shards.schema import CELL  # noqa: E402
from shards.tracks import positions  # noqa: E402
from shards.cli import ArgumentParser  # noqa: E402
from train.clips.keys import VIDEO  # noqa: E402
from train.pretraining.config import DEMO_SHARDS, TrainConfig, resolve_shards  # noqa: E402
from train.clips.dataset import ClipDataset, ClipSpec  # noqa: E402
from train.pretraining.masks import MASKS  # noqa: E402
from train.clips.pair_flow import camera_inclusive  # noqa: E402
from train.pretraining.targets.pixel import MEAN, STD, patchify  # noqa: E402
from train.cli import check_sources, existing_file, existing_shards, output_folder, shard_meta  # noqa: E402
from shards import ShardRef, open_shards  # noqa: E402

WHITE, YELLOW, GREY = (255, 255, 255), (255, 230, 0), (64, 64, 64)


# ---- drawing primitives (pure: arrays in, RGB uint8 arrays out) ---------------------------------

def zoomed(frame: np.ndarray, zoom: float, dim: float = 1.0) -> np.ndarray:
    """frame resized by `zoom` (nearest up, area down), brightness x `dim` (overlays read better on 0.6)."""
    img = frame if zoom == 1 else cv2.resize(
        frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST if zoom > 1 else cv2.INTER_AREA)
    return (img * np.float32(dim)).astype(np.uint8) if dim != 1 else img.copy()


def titled(img: np.ndarray, text: str, band: int = 16) -> np.ndarray:
    """Prepend a black band with `text` above an RGB image."""
    top = np.zeros((band, img.shape[1], 3), np.uint8)
    cv2.putText(top, text, (3, band - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, WHITE, 1, cv2.LINE_AA)
    return np.concatenate([top, img], 0)


def hstack(panels: list[np.ndarray], gap: int = 2) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, gap), (0, 0))) for p in panels]
    return np.concatenate(padded, 1)[:, :-gap]


def vstack(panels: list[np.ndarray], gap: int = 2) -> np.ndarray:
    w = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, gap), (0, w - p.shape[1]), (0, 0))) for p in panels]
    return np.concatenate(padded, 0)[:-gap]


def cell_centre(i: int, j: int, zoom: float) -> tuple[float, float]:
    """Pixel (x, y) of cell (i, j)'s centre, (8 j + 3.5, 8 i + 3.5) at stored resolution, zoomed."""
    half = (CELL - 1) / 2
    return (CELL * j + half + 0.5) * zoom - 0.5, (CELL * i + half + 0.5) * zoom - 0.5


def draw_motion_vectors(frame: np.ndarray, mv: np.ndarray, valid: np.ndarray, step: int = 2,
                        scale: float = 3.0, zoom: float = 1.0) -> np.ndarray:
    """Arrows from each valid cell's centre along mv (Hc,Wc,2) px/frame x `scale`; every `step`-th cell."""
    img = zoomed(frame, zoom, dim=0.6)
    for i in range(0, mv.shape[0], step):
        for j in range(0, mv.shape[1], step):
            if not valid[i, j]:
                continue
            x, y = cell_centre(i, j, zoom)
            dx, dy = mv[i, j] * scale * zoom
            if dx * dx + dy * dy < 1:
                cv2.circle(img, (round(x), round(y)), 1, YELLOW, -1)
            else:
                cv2.arrowedLine(img, (round(x), round(y)), (round(x + dx), round(y + dy)), YELLOW, 1,
                                cv2.LINE_AA, tipLength=0.3)
    return img


def flow_to_color(flow: np.ndarray, max_speed: float) -> np.ndarray:
    """(h,w,2) px -> (h,w,3) RGB: hue = direction (0 deg = +x = red, y down), value = speed / max_speed."""
    speed, angle = cv2.cartToPolar(flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32),
                                   angleInDegrees=True)
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8) % 180                    # OpenCV hue is 0-179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(speed / max(max_speed, 1e-6) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def color_wheel(size: int, max_speed: float) -> np.ndarray:
    """The legend of flow_to_color: a disk whose rim is max_speed, on black with a grey frame."""
    r = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - r
    flow = np.stack([xs, ys], -1) / r * max_speed
    wheel = flow_to_color(flow, max_speed)
    wheel[np.hypot(xs, ys) > r] = 0
    return cv2.copyMakeBorder(wheel, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def draw_tracks(frame: np.ndarray, pos: np.ndarray, valid: np.ndarray, step: int = 2, zoom: float = 1.0,
                cmap: str = "plasma") -> np.ndarray:
    """Tracks pos (Hc,Wc,L+1,2) px of one start frame, segment l drawn while valid (Hc,Wc,L) holds,
    coloured by l; a dot at the end of each."""
    import matplotlib

    img = zoomed(frame, zoom, dim=0.6)
    L = pos.shape[2] - 1
    colors = (np.asarray(matplotlib.colormaps[cmap](np.linspace(0.1, 1.0, max(L, 1)))[:, :3]) * 255).astype(int)
    p = (pos + 0.5) * zoom - 0.5
    for i in range(0, pos.shape[0], step):
        for j in range(0, pos.shape[1], step):
            for l in range(L):
                if valid[i, j, l]:
                    a, b = np.round(p[i, j, l]).astype(int), np.round(p[i, j, l + 1]).astype(int)
                    cv2.line(img, tuple(map(int, a)), tuple(map(int, b)), tuple(map(int, colors[l])), 1, cv2.LINE_AA)
            end = np.round(p[i, j, int(valid[i, j].sum())]).astype(int)
            cv2.circle(img, tuple(map(int, end)), 1, tuple(map(int, colors[-1])), -1)
    return img


def draw_hog(hog: np.ndarray, zoom: float = 2.0, max_value: float | None = None) -> np.ndarray:
    """(Hc,Wc,9) -> glyphs on black: per cell a line through the centre along the dominant edge.

    Bin b holds gradients of orientation [20b, 20b + 20) deg (atan2(gy, gx), y down); the edge
    runs perpendicular to the gradient, so the line is at 20b + 10 + 90 deg. Length and
    brightness ~ the dominant bin's value / max_value (default: its 99th percentile here)."""
    hc, wc, bins = hog.shape
    img = np.zeros((round(hc * CELL * zoom), round(wc * CELL * zoom), 3), np.uint8)
    best = hog.argmax(-1)
    value = np.take_along_axis(hog, best[..., None], -1)[..., 0]
    top = max_value if max_value is not None else float(np.percentile(value, 99)) or 1.0
    angle = np.deg2rad(best * (180 / bins) + 90 / bins + 90)
    for i in range(hc):
        for j in range(wc):
            strength = min(value[i, j] / top, 1.0)
            if strength < 0.05:
                continue
            x, y = cell_centre(i, j, zoom)
            half = 0.5 * CELL * zoom * strength
            dx, dy = half * np.cos(angle[i, j]), half * np.sin(angle[i, j])
            shade = int(80 + 175 * strength)
            cv2.line(img, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)), (shade,) * 3, 1, cv2.LINE_AA)
    return img


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """ImageNet-normalized (3,T,S,S) -> (T,S,S,3) uint8."""
    x = video.float() * torch.tensor(STD).view(3, 1, 1, 1) + torch.tensor(MEAN).view(3, 1, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).numpy()


def token_map(mask: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> np.ndarray:
    """(N,) bool over tokens -> (T,S,S) bool over pixels."""
    t, h, w = grid
    m = mask.view(t, h, w).repeat_interleave(tubelet, 0).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m.numpy()


def grey_out(frames: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Hidden pixels (T,S,S) turned 85% grey: the content stays faintly visible."""
    out = frames.astype(np.float32)
    out[hidden] = 0.15 * out[hidden] + 0.85 * np.float32(GREY)
    return out.round().astype(np.uint8)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> torch.Tensor:
    """(B,N,tubelet*patch*patch,C) -> (B,C,T,H,W): the inverse of train.pretraining.targets.pixel.patchify."""
    B, N, P, C = tokens.shape
    t, h, w = grid
    x = tokens.reshape(B, t, h, w, tubelet, patch, patch, C).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(B, C, t * tubelet, h * patch, w * patch)


# ---- the figures -------------------------------------------------------------------------------

def save_png(img: np.ndarray, path: Path, colors: int = 0) -> Path:
    """RGB PNG, or a palette PNG of `colors` colours (smaller, for docs) when colors > 0."""
    from PIL import Image

    image = Image.fromarray(img)
    (image.quantize(colors) if colors else image).save(path, optimize=True)
    return path


def save_gif(frames: list[np.ndarray], path: Path, fps: float = 6.0, colors: int = 0) -> Path:
    """Animated GIF, looping; each frame gets its own palette of `colors` (<= 256, 0 = 256)."""
    from PIL import Image

    images = [Image.fromarray(f).quantize(colors or 256) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True)
    return path


def motion_figures(video, start: int, count: int, step: int = 2, arrow_scale: float = 3.0,
                   zoom: float = 1.0) -> dict[str, list[np.ndarray]]:
    """Frames of the mv, flow, tracks and hog figures for stored frames [start, start + count)."""
    n = int(video.attrs["num_frames"])
    t0, t1 = max(0, min(start, n - 2)), min(n - 1, start + count)   # frames with a flow to the next
    if t1 <= t0:
        raise ValueError(f"{n} frame(s) from frame {start}: the motion figures need two frames or more")
    L, stride = int(video.attrs["traj_len"]), int(video.attrs["flow_stride"])
    frames = video["frames"][t0:min(n, t1 + L)]
    flow, hom = video["flow"][t0:t1], video["homography"][t0:min(n - 1, t1 + L)]
    full = camera_inclusive(flow, hom[:t1 - t0], stride)                          # (K,h,w,2)
    speed_top = max(float(np.percentile(np.linalg.norm(full, axis=-1), 99)), 0.5)
    H, W = frames.shape[1:3]
    mv, mv_valid = video["mv"][t0:t1], video["mv_valid"][t0:t1]
    traj, traj_valid, hog = video["traj"][t0:t1], video["traj_valid"][t0:t1], video["hog"][t0:t1]
    pos = positions(traj, traj_valid, hom)                                       # (K,Hc,Wc,L+1,2)
    hog_top = float(np.percentile(hog.max(-1), 99)) or 1.0
    wheel = color_wheel(max(24, round(min(H, W) * zoom / 5)), speed_top)

    figs: dict[str, list[np.ndarray]] = {"mv": [], "flow": [], "tracks": [], "hog": []}
    for k in range(t1 - t0):
        t = t0 + k
        figs["mv"].append(titled(draw_motion_vectors(frames[k], mv[k], mv_valid[k], step, arrow_scale, zoom),
                                 f"frame {t}: motion vectors x{arrow_scale:g}"))
        colours = []
        for name, f in (("compensated flow", flow[k]), ("camera-inclusive flow", full[k])):
            c = zoomed(cv2.resize(flow_to_color(f, speed_top), (W, H), interpolation=cv2.INTER_NEAREST), zoom)
            colours.append(titled(c, f"{name}, {t}->{t + 1}"))
        colours[-1][-wheel.shape[0] - 2:-2, -wheel.shape[1] - 2:-2] = wheel
        figs["flow"].append(hstack([titled(zoomed(frames[k], zoom), f"frame {t}"), *colours]))
        end = min(k + L, len(frames) - 1)
        figs["tracks"].append(titled(draw_tracks(frames[end], pos[k], traj_valid[k], step, zoom),
                                     f"tracks from frame {t}, on frame {t0 + end}"))
        figs["hog"].append(hstack([titled(zoomed(frames[k], 2 * zoom), f"frame {t}"),
                                   titled(draw_hog(hog[k], 2 * zoom, hog_top), "HOG: dominant edge")]))
    return figs


def clip_of(shards: ShardRef, vid: str, cfg: TrainConfig, sample: int) -> dict[str, torch.Tensor]:
    """The clip `train/clips/dataset.py` gives for global sample `sample` of this video (no flip), batched (B=1)."""
    needs = frozenset().union(*(m.needs for m in MASKS.values()))
    spec = ClipSpec(cfg.num_frames, cfg.sampling_rate, cfg.input_size, cfg.tubelet, cfg.min_crop, False, needs,
                    traj_len=cfg.traj_len)
    dataset = ClipDataset(shards, spec, cfg.seed)
    clip = dataset[(sample, dataset.ids.index(vid))]
    return {k: v[None] for k, v in clip.items()}


def tables(rows: dict[str, np.ndarray], tubelet: int, tile: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """rows name -> (T,S,S,3) clips -> a grid (rows x the first frame of every tubelet) and the
    frames of an animation (the rows side by side), frames resized to tile x tile."""
    resize = lambda clip: np.stack([cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA) for f in clip])
    small = {name: resize(clip) for name, clip in rows.items()}
    T = len(next(iter(small.values())))
    grid = vstack([titled(hstack([v[k] for k in range(0, T, tubelet)]), name) for name, v in small.items()])
    frames = [hstack([titled(v[k], name.split(",")[0]) for name, v in small.items()]) for k in range(T)]
    return grid, frames


def mask_figures(batch: dict, cfg: TrainConfig, tile: int = 112) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every mask of train.pretraining.masks.MASKS on the clip `batch` (B=1): grid image and animation frames."""
    grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    frames = to_uint8(batch[VIDEO][0])                                       # (T,S,S,3)
    rows = {"clip": frames}
    for name, fn in MASKS.items():
        mask = fn(batch, grid, cfg.ratio, torch.Generator().manual_seed(cfg.seed))[0]
        rows[f"{name} {cfg.ratio:g}"] = grey_out(frames, token_map(mask, grid, cfg.tubelet, cfg.patch_size))
    return tables(rows, cfg.tubelet, tile)


def reconstruction_figures(batch: dict, ckpt: dict, cfg: TrainConfig,
                           tile: int = 112) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Original | visible patches | reconstruction of a pixel-target checkpoint on `batch` (B=1):
    grid image, animation frames and the MSE over hidden pixels (pixels in [0, 1])."""
    grid = cfg.grid
    model = cfg.build_model(ckpt.get("heads") or int(ckpt["out_dim"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    mask = MASKS[cfg.mask](batch, grid, cfg.ratio, torch.Generator().manual_seed(cfg.seed))   # (1,N)
    with torch.no_grad():
        pred = model(batch[VIDEO].float(), mask)                                             # (1,Nm,P*3)
    x = batch[VIDEO].float() * torch.tensor(STD).view(1, 3, 1, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1, 1)
    patches = patchify(x, cfg.tubelet, cfg.patch_size)                                         # (1,N,P,3) in [0,1]
    pred = pred.view(1, -1, patches.shape[2], 3)
    if cfg.norm_target:  # the model predicts per-token normalized pixels: undo with the true patch statistics
        true = patches[mask][None]                                                            # (1,Nm,P,3)
        pred = pred * (true.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6) + true.mean(-2, keepdim=True)
    recon = patches.clone()
    recon[mask] = pred[0].clamp(0, 1)
    mse = float(((recon[mask] - patches[mask]) ** 2).mean())
    as_frames = lambda p: (unpatchify(p, grid, cfg.tubelet, cfg.patch_size)[0].permute(1, 2, 3, 0)
                           .clamp(0, 1) * 255).round().byte().numpy()                         # (T,S,S,3)
    original = as_frames(patches)
    hidden = token_map(mask[0], grid, cfg.tubelet, cfg.patch_size)
    rows = {"original": original,
            f"visible ({cfg.mask} {cfg.ratio:g})": grey_out(original, hidden),
            f"reconstruction, MSE {mse:.4f}": as_frames(recon)}
    return (*tables(rows, cfg.tubelet, tile), mse)


# ---- CLI -------------------------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="visualize.py", description=__doc__)
    add = parser.add_argument
    add("--shards", default=DEMO_SHARDS, help=f"shard set (default: {DEMO_SHARDS})")
    add("--video", default=None, help="video id (default: the first id of the set)")
    add("--checkpoint", default=None, help="train/pretrain.py checkpoint: clip geometry, mask ratio and, for "
        "a pixel target, the reconstruction (default: none, the geometry flags below)")
    add("--out", required=True, help="output folder (required)")
    add("--start", type=int, default=0, help="first stored frame of the motion figures (default: 0)")
    add("--frames", type=int, default=16, help="stored frames in the motion figures (default: 16)")
    add("--step", type=int, default=2, help="draw every step-th cell's arrow / track (default: 2)")
    add("--arrow-scale", type=float, default=3.0, help="arrow length per px/frame of motion (default: 3.0)")
    add("--zoom", type=float, default=1.0, help="motion figures at zoom x stored resolution (default: 1.0)")
    add("--tile", type=int, default=112, help="px per clip frame in the mask / reconstruction grids (default: 112)")
    add("--fps", type=float, default=6.0, help="GIF frame rate (default: 6.0)")
    add("--colors", type=int, default=0, help="palette size of PNGs and GIFs (0: RGB PNG, 256-colour GIF; "
        "64 makes the small files of docs/images) (default: 0)")
    add("--sample", type=int, default=0, help="global sample number of the loader's clip (default: 0)")
    add("--source-root", default="", help="for a set extracted with --frames none: the folder its source videos "
        "moved to (default: the paths recorded at extraction)")
    geometry = TrainConfig()
    for flag, kind, default in (("--num-frames", int, geometry.num_frames), ("--sampling-rate", int, 2),
                                ("--input-size", int, geometry.input_size), ("--min-crop", float, geometry.min_crop),
                                ("--mask-ratio", float, geometry.ratio)):
        add(flag, type=kind, default=default, help=f"clip geometry without --checkpoint (default: {default})")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = build_parser().parse_args(argv)
    shards = existing_shards(resolve_shards(args.shards))
    ref = ShardRef(shards, args.source_root)
    check_sources(ref)
    out = output_folder(args.out)
    if args.checkpoint:
        existing_file(args.checkpoint, "--checkpoint", "a train/pretrain.py checkpoint.pt")
    else:
        try:
            cfg = TrainConfig(num_frames=args.num_frames, sampling_rate=args.sampling_rate, input_size=args.input_size,
                              min_crop=args.min_crop, mask_ratio=args.mask_ratio).validate()
        except ValueError as e:
            raise UsageError(str(e)) from e

    ids = list(shard_meta(shards))
    vid = args.video or ids[0]
    if vid not in ids:
        close = difflib.get_close_matches(vid, ids, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"--video {vid}: not in {shards} ({len(ids)} videos); {hint}"
                         f"e.g. {', '.join(ids[:5])}")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if args.checkpoint:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        cfg = TrainConfig.from_dict(ckpt["config"])
    paths = []

    def write(name: str, still: np.ndarray, frames: list[np.ndarray]) -> None:
        paths.extend([save_png(still, out / f"{name}.png", args.colors),
                      save_gif(frames, out / f"{name}.gif", args.fps, args.colors)])

    with open_shards(ref) as ds:
        figs = motion_figures(ds[vid], args.start, args.frames, args.step, args.arrow_scale, args.zoom)
    for name, frames in figs.items():
        write(name, frames[len(frames) // 2], frames)
    batch = clip_of(ref, vid, cfg, args.sample)
    write("masks", *mask_figures(batch, cfg, args.tile))
    if ckpt is not None and cfg.target == "pixel":
        grid, frames, mse = reconstruction_figures(batch, ckpt, cfg, args.tile)
        write("reconstruction", grid, frames)
        print(f"reconstruction: {cfg.mask} mask {cfg.ratio:g}, hidden-pixel MSE {mse:.4f} (pixels in [0, 1])")
    elif ckpt is not None:
        print(f"reconstruction: skipped, the checkpoint's target is {cfg.target!r}, not pixels")
    print(f"{vid}: " + ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} kB" for p in paths) + f" -> {out}")
    return {p.name: p for p in paths}


if __name__ == "__main__":
    run_main(main, "visualize.py")
