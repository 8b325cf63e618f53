"""Which shard of the work this process does (`mdmf extract --shard`): given as `i/n`, or `auto` from the scheduler.

`auto` reads, in this order:

* a Slurm job array (`sbatch --array=...`): `SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`. Array ids need not
  start at 0: the index is `(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP` (`--array=1-8` and
  `--array=0-30:10` both work); an irregular list such as `--array=1,4,9` cannot be numbered and is refused.
* torchrun (or any launcher that sets them): `RANK` and `WORLD_SIZE`.
* both (an array job whose tasks each start several processes): shard `index · WORLD_SIZE + RANK` of
  `COUNT · WORLD_SIZE`.
* neither: `0/1`, the whole store.

Other Slurm variables (`SLURM_PROCID`, `SLURM_NTASKS`) are not read: a batch script sees them too, outside `srun`,
where they would make one process extract only part of the store.
"""

from __future__ import annotations

from collections.abc import Mapping

from mdmf.pipeline.core.errors import MdmfError

AUTO = "auto"


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` -> (i, n), checked."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MdmfError(f"--shard {text!r}: write it as i/n, e.g. 0/4, or auto (from Slurm or torchrun)") from None
    if n < 1 or not 0 <= i < n:
        raise MdmfError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def _ints(env: Mapping[str, str], *names: str) -> list[int | None]:
    out = []
    for name in names:
        text = env.get(name, "").strip()
        try:
            out.append(int(text) if text else None)
        except ValueError:
            raise MdmfError(f"--shard auto: {name}={text!r} is not a whole number; give --shard i/n instead") from None
    return out


def _slurm_array(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    task, count, low, high, step = _ints(env, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                                         "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP")
    if task is None:
        return None
    if count is None:
        raise MdmfError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give --shard i/n")
    low = 0 if low is None else low
    step = step or 1
    index, off = divmod(task - low, step)
    regular = off == 0 and (high is None or (high - low) // step + 1 == count)
    if not regular or not 0 <= index < count:
        raise MdmfError(f"--shard auto: Slurm array task {task} is not one of {count} evenly spaced ids from {low} "
                        f"(SLURM_ARRAY_TASK_MIN) by {step} (SLURM_ARRAY_TASK_STEP); use a range such as --array=0-"
                        f"{count - 1}, or give --shard i/n")
    said = f"SLURM_ARRAY_TASK_ID={task}" + (f" - SLURM_ARRAY_TASK_MIN={low}" if low else "") + \
        (f" / SLURM_ARRAY_TASK_STEP={step}" if step != 1 else "") + f" of SLURM_ARRAY_TASK_COUNT={count}"
    return index, count, said


def _launcher(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    rank, world = _ints(env, "RANK", "WORLD_SIZE")
    if world is None or world <= 1:
        return None
    if rank is None or not 0 <= rank < world:
        raise MdmfError(f"--shard auto: WORLD_SIZE={world} but RANK={env.get('RANK')!r}; give --shard i/n")
    return rank, world, f"RANK={rank} of WORLD_SIZE={world}"


def resolve_shard(text: str, env: Mapping[str, str]) -> tuple[int, int, str]:
    """`--shard` as (index, count, where it came from): `i/n` as given (""), or `auto` from `env` (see above; "" when
    nothing in `env` says, and the shard is 0/1)."""
    if text.strip().lower() != AUTO:
        return (*parse_shard(text), "")
    array, launcher = _slurm_array(env), _launcher(env)
    if array and launcher:
        (a, na, sa), (r, nr, sr) = array, launcher
        return a * nr + r, na * nr, f"{sa}, {sr}"
    return array or launcher or (0, 1, "")
