"""A global batch -> per-process micro-batches and gradient accumulation: the one split that
pretraining (`TrainConfig`) and fine-tuning (`EvalConfig`) both make."""
from __future__ import annotations


def micro_batches(clips: int, world: int, cap: int = 0, repeats: int = 1) -> tuple[int, int]:
    """(clips per forward per process, forwards per optimizer step) for a global batch of `clips`
    over `world` processes.

    The batch splits evenly over the processes; each process then runs as few micro-batches as
    keep a forward within `cap` clips (0 = no cap). A micro-batch holds whole videos (a multiple
    of `repeats` clips, repeated augmentation)."""
    per_process, rest = divmod(clips, world)
    if rest:
        raise ValueError(f"a global batch of {clips} clips does not split over {world} processes")
    cap = cap or per_process
    for accum in range(1, per_process + 1):
        micro, left = divmod(per_process, accum)
        if not left and micro <= cap and micro % repeats == 0:
            return micro, accum
    raise ValueError(f"a global batch of {clips} clips over {world} processes = {per_process} clips each: no "
                     f"split into equal micro-batches of at most {cap} clips (batch_per_device), each whole "
                     f"videos (a multiple of repeated_aug {repeats})")
