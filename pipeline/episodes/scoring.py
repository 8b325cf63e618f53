"""Planning and batching the episodes of an evaluation: the model's parts (PPS → fuse → score, `FewShotMethod`) in
an order that does the work that does not depend on the episode once (used by evaluation and the report's per-query
predictions; the one spelling of scoring an episode is the model's `forward`, which training, `naive_logits` and
`predict` run).

In eval mode (dropout off, batch-norm on running statistics) reusing work is exact:
* `encode` (temporal context) runs once per video;
* a support video's fused tokens depend only on the video and its own class prompt: computed once per video;
* a query video's fused tokens depend only on the video and the prompt PPS gives it: computed once per distinct
  (video, prompt) pair that the episodes ever ask for;
* only `score` (prototypes, OTAM, fusion) runs per episode, batched over many episodes.
In order: all episodes are drawn and their queries' prompts chosen (CPU), which fixes the distinct pairs; each pair is
fused in batches as it is first asked for, into a table allocated once (on a GPU this runs asynchronously, overlapping
the drawing); then `score` runs on chunks of episodes gathered from the tables (on a CPU in worker threads, one per
torch thread). `naive_logits` runs the model's full `forward` on every episode instead; both give the same
predictions. Training cannot reuse like this: batch-norm in train mode couples the videos of an episode.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch

from mdmf.base import ordered_shot_mean
from mdmf.pipeline.core.progress import progress_bar
from mdmf.pipeline.episodes.sampler import EpisodeSampler


class EpisodePlan(Protocol):
    """What scoring needs to know of a run of episodes (`pipeline.evaluate.episodic.EvalConfig` is one)."""

    way: int
    shot: int
    episodes: int
    seed: int
    batch_episodes: int  # episodes per sampled batch: one PPS generator each
    batch_videos: int  # videos (or pairs) per encode / fuse pass
    score_episodes: int | None  # episodes per `score` call; None: chosen by `score_chunk_size`
    progress: bool


def episode_generator(seed: int, start: int) -> torch.Generator:
    # One generator per episode batch, a function of (seed, first episode): batching is the same in both paths.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(start)) % (2**63))


def _gather(tokens: dict[str, torch.Tensor], index: torch.Tensor,
            buffers: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Rows `index` of every view's `(rows, L, D)` table -> `(*index.shape, L, D)`.

    `index_select` on the flattened table copies whole rows (advanced indexing copies element by element, ~2x
    slower on a CPU); with `buffers` the rows land in a buffer reused from call to call, so that big gathers do not
    fault in fresh pages every time.
    """
    out = {}
    for view, t in tokens.items():
        flat, n = t.reshape(t.shape[0], -1), index.numel()
        if buffers is None:
            rows = torch.index_select(flat, 0, index.reshape(-1))
        else:
            if view not in buffers or buffers[view].shape[0] < n:
                buffers[view] = flat.new_empty(n, flat.shape[1])
            rows = torch.index_select(flat, 0, index.reshape(-1), out=buffers[view][:n])
        out[view] = rows.view(*index.shape, *t.shape[1:])
    return out


def _gather_prototypes(tokens: dict[str, torch.Tensor], index: torch.Tensor,
                       buffers: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Class prototypes straight from every view's `(rows, L, D)` table: index `(E, N, K)` -> `(E, N, L, D)`.

    The model's own `ordered_shot_mean`, with shot k gathered into a scratch buffer and added in place to the sum
    of the shots before it: bit-identical with `score`'s prototypes of the gathered `(E, N, K, L, D)` tokens, which
    are never materialised (5x less memory traffic at 5 shots, and the buffers stay in cache).
    """
    E, N, K = index.shape
    by_shot = index.permute(2, 0, 1).reshape(K, E * N)  # one contiguous index row per shot
    out = {}
    for view, t in tokens.items():
        flat, n = t.reshape(t.shape[0], -1), E * N
        if buffers is None:
            total, scratch = flat.new_empty(n, flat.shape[1]), (flat.new_empty(n, flat.shape[1]) if K > 1 else None)
        else:
            if view not in buffers or buffers[view].shape[1] < n:
                buffers[view] = flat.new_empty(2, n, flat.shape[1])
            total, scratch = buffers[view][0, :n], buffers[view][1, :n]

        def shot(k: int) -> torch.Tensor:
            return torch.index_select(flat, 0, by_shot[k], out=total if k == 0 else scratch)

        out[view] = ordered_shot_mean(shot, K, in_place=True).view(E, N, *t.shape[1:])
    return out


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`. To a GPU through pinned memory, without waiting: a plain copy from pageable memory
    waits for everything queued on the stream, which would stop the CPU from planning ahead of the GPU. (The pinned
    block is not reused before the copy has finished: torch's host allocator records the copy's stream.)"""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@torch.no_grad()
def _batched(fn, n: int, batch: int, *tensors):
    """Apply `fn` to row-batches of `tensors` and concatenate the resulting dicts."""
    outs = [fn(*(t[i : i + batch] if t is not None else None for t in tensors)) for i in range(0, n, batch)]
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def naive_logits(model, sampler: EpisodeSampler, frames, prompts, cfg: EpisodePlan):
    """(start, batch, logits (E, M, N), prompt class (E, M)) per episode batch: the model's full `forward` on every
    episode."""
    device = frames.device
    for start in range(0, cfg.episodes, cfg.batch_episodes):
        batch = sampler.batch(start, min(cfg.batch_episodes, cfg.episodes - start))
        support = frames[batch.support.to(device)]  # (E, N, K, T, D)
        query = frames[batch.query.to(device)]  # (E, M, T, D)
        class_prompts = prompts[batch.classes.to(device)]  # (E, N, D)
        scores = model(support, class_prompts, query, generator=episode_generator(cfg.seed, start))
        choice = scores.prompt_choice
        prompt_class = (torch.full_like(batch.query, -1) if choice is None
                        else torch.gather(batch.classes, 1, choice.cpu()))
        yield start, batch, scores.logits, prompt_class


def reused_logits(model, sampler: EpisodeSampler, frames, prompts, labels, cfg: EpisodePlan, title: str):
    """(start, batch, logits, prompt class) per episode batch, from work done once per video and once per (video,
    prompt) pair.

    First every episode batch is drawn and its queries' prompts chosen (on the CPU), and the (video, prompt) pairs
    not seen before are queued for `fuse`; then `score` runs per batch on the gathered tokens. On a GPU the fusing is
    asynchronous, so drawing the episodes overlaps with it.
    """
    device = frames.device
    # PPS similarity first: it comes back to the CPU (a sync), and done after queueing the encode and support-fuse
    # passes it would wait for them; this way, on a GPU, the planning below runs while they execute.
    sim = pps_similarity(model, frames, prompts)
    work = EpisodeIndependentWork(model, frames, prompts, labels, query_pair_capacity(model, sampler, frames.shape[0],
                                                                                        prompts.shape[0], cfg),
                                  cfg.batch_videos)
    planned = []
    with progress_bar(cfg.progress, title + ": episodes and fused tokens", total=cfg.episodes,
                      unit="episodes") as advance:
        for start, batch, query_class in plan_queries(model, sampler, sim, cfg):
            planned.append((start, batch, work.request(batch.query, query_class), query_class))
            advance(len(batch), pairs=work.pairs.size)
        work.finish()

    chunk = cfg.score_episodes or score_chunk_size(cfg, device, work.support)
    return score_planned(model, work, planned, chunk, device)


def score_planned(model, work: EpisodeIndependentWork, planned, chunk: int, device: torch.device):
    """(start, batch, logits, prompt class) per planned batch, `score` running on `chunk` episodes at a time.

    On a CPU the chunks go to one worker thread per intra-op thread, each worker running its operations on one
    thread. Scoring is thousands of small operations; split over threads inside each operation, every operation
    waits for all threads, which on a loaded machine costs far more than it gains (measured here: 2 threads on 2
    busy cores scored 10x slower than 1). Independent workers need no such waiting, and still use every core.
    """
    def score_chunk(slots, support, i, buffers=(None, None)):
        q_tokens = _gather(work.query, slots[i : i + chunk], buffers[0])  # (E, M, L, D)
        if model.scores_shots:  # every shot's tokens (E, N, K, L, D)
            return model.score(q_tokens, _gather(work.support, support[i : i + chunk], buffers[1])).logits
        prototypes = _gather_prototypes(work.support, support[i : i + chunk], buffers[1])  # (E, N, L, D)
        return model.score_prototypes(q_tokens, prototypes).logits

    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        # In order, on one stream (on a GPU the kernels of the next chunk queue up behind those of this one). All
        # indices go to the device in one copy first: a copy from pageable memory per chunk would wait for the chunk
        # before it each time.
        slots_all = _to_device(torch.cat([slots for _, _, slots, _ in planned]), device)
        support_all = _to_device(torch.cat([batch.support for _, batch, _, _ in planned]), device)
        buffers = ({}, {}) if device.type == "cpu" else (None, None)  # a GPU's caching allocator does this itself
        offset = 0
        for start, batch, _, prompt_class in planned:
            rows = slice(offset, offset + len(batch))
            offset += len(batch)
            yield start, batch, torch.cat([score_chunk(slots_all[rows], support_all[rows], i, buffers)
                                           for i in range(0, len(batch), chunk)]), prompt_class
        return

    local = threading.local()

    def run(batch, slots, i):
        if not hasattr(local, "buffers"):  # per worker: gather buffers reused from chunk to chunk
            torch.set_num_threads(1)
            local.buffers = ({}, {})
        with torch.no_grad():  # grad mode is per thread
            return score_chunk(slots, batch.support, i, local.buffers)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [[pool.submit(run, batch, slots, i) for i in range(0, len(batch), chunk)]
                       for _, batch, slots, _ in planned]
            for (start, batch, _, prompt_class), parts in zip(planned, futures):
                yield start, batch, torch.cat([f.result() for f in parts]), prompt_class
    finally:
        torch.set_num_threads(threads)  # the workers' setting is also process-wide for threads started later


def score_chunk_size(cfg: EpisodePlan, device: torch.device, support: dict[str, torch.Tensor]) -> int:
    """Episodes per `score` call. On a CPU, small enough that one view's gathered support tokens stay near 32 MB:
    the many small operations of OTAM then work on data in cache and big temporaries do not fault in fresh memory.
    On a GPU, the whole batch: fewer, larger kernels."""
    if device.type != "cpu":
        return cfg.batch_episodes
    row = max(t[0].numel() for t in support.values()) * 4  # bytes of one video's tokens in one view
    return max(8, min(cfg.batch_episodes, (32 << 20) // (cfg.way * cfg.shot * row)))


def pps_similarity(model, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor | None:
    """`(V, C)` PPS similarity of every video to every class prompt, on the CPU; None when queries take no prompt."""
    if model.query_prompt_mode != "pps":
        return None
    return model.pps_similarity(frames, prompts).cpu()


def plan_queries(model, sampler: EpisodeSampler, sim: torch.Tensor | None, cfg: EpisodePlan):
    """(start, batch, query_class (E, M)) per episode batch: the split class whose prompt each query takes (PPS draw
    with the batch's generator, exactly as `forward` draws it), or -1 for no prompt. All on the CPU."""
    for start in range(0, cfg.episodes, cfg.batch_episodes):
        batch = sampler.batch(start, min(cfg.batch_episodes, cfg.episodes - start))
        if sim is None:
            yield start, batch, torch.full_like(batch.query, -1)
            continue
        M = batch.query.shape[1]
        episode_sim = torch.gather(sim[batch.query], 2, batch.classes[:, None, :].expand(-1, M, -1))  # (E, M, N)
        chosen = model.select_prompts(episode_sim, mode=model.config.pps_eval_mode,
                                      generator=episode_generator(cfg.seed, start))  # (E, M)
        yield start, batch, torch.gather(batch.classes, 1, chosen)


def query_pair_capacity(model, sampler: EpisodeSampler, videos: int, classes: int, cfg: EpisodePlan) -> int:
    """An upper bound on the distinct (video, prompt) pairs `cfg.episodes` episodes can ask for."""
    prompts_per_video = classes if model.query_prompt_mode == "pps" else 1
    return min(videos * prompts_per_video, cfg.episodes * sampler.spec.queries_per_episode)


class PairTable:
    """Row numbers ("slots") for distinct (video, prompt class) pairs, given in order of first request; class -1 is
    no prompt. A flat lookup table of V·(C+1) entries, so a batch of requests costs a few tensor ops."""

    def __init__(self, videos: int, classes: int):
        self.width = classes + 1
        self.slot_of = torch.full((videos * self.width,), -1, dtype=torch.long)
        self.size = 0

    def assign(self, videos: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """videos, classes (any equal shape, CPU) -> (slots shaped like videos, new videos, new classes)."""
        keys = (videos * self.width + classes + 1).reshape(-1)
        new = torch.unique(keys[self.slot_of[keys] < 0])  # sorted: pairs of one video are fused side by side
        self.slot_of[new] = torch.arange(self.size, self.size + len(new))
        self.size += len(new)
        return self.slot_of[keys].reshape(videos.shape), new // self.width, new % self.width - 1


class EpisodeIndependentWork:
    """All the work of an evaluation that does not depend on the episode, each piece done once.

    * `encoded`: `encode` of every video;
    * `support`: view -> `(V, L, D)`, every video fused with its own class prompt (what a support video needs);
    * `query`: view -> `(capacity, L, D)`, row `slot` = the video and prompt of a requested (video, prompt class)
      pair (`request` gives the slots), fused in batches of `batch_videos` pairs as requests come in.
    In eval mode each of these depends only on its video (and prompt), so this equals what `forward` computes.
    """

    @torch.no_grad()
    def __init__(self, model, frames: torch.Tensor, prompts: torch.Tensor, labels: torch.Tensor, capacity: int,
                 batch_videos: int):
        self.model, self.prompts, self.batch, self.capacity = model, prompts, int(batch_videos), int(capacity)
        videos = frames.shape[0]
        self.encoded = _batched(model.encode, videos, self.batch, frames)
        self.support = _batched(lambda enc, p: model.fuse(enc, p, role="support"), videos, self.batch,
                                _DictRows(self.encoded), prompts[labels.to(prompts.device)])
        self.pairs = PairTable(videos, prompts.shape[0])
        self.query: dict[str, torch.Tensor] = {}
        self._pending_videos: list[torch.Tensor] = []
        self._pending_classes: list[torch.Tensor] = []
        self._pending = 0
        self.filled = 0  # query rows computed so far

    def request(self, videos: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """videos, classes `(…)` (CPU, class -1 = no prompt) -> slots `(…)`: rows of `query` that will hold their
        tokens once `finish` has run."""
        slots, new_videos, new_classes = self.pairs.assign(videos, classes)
        if len(new_videos):
            self._pending_videos.append(new_videos)
            self._pending_classes.append(new_classes)
            self._pending += len(new_videos)
        while self._pending >= self.batch:
            self._fuse(self.batch)
        return slots

    def finish(self) -> None:
        """Fuse the pairs still queued."""
        if self._pending:
            self._fuse(self._pending)

    @torch.no_grad()
    def _fuse(self, n: int) -> None:
        videos, classes = torch.cat(self._pending_videos), torch.cat(self._pending_classes)
        self._pending_videos, self._pending_classes = [videos[n:]], [classes[n:]]
        self._pending -= n
        videos, classes = videos[:n], classes[:n]
        device = self.prompts.device
        # The planner gives every query a prompt (PPS) or none at all; a batch never mixes the two.
        prompts = None if bool((classes < 0).all()) else self.prompts[_to_device(classes.clamp(min=0), device)]
        out = self.model.fuse(_DictRows(self.encoded)[_to_device(videos, device)], prompts, role="query")
        if not self.query:  # allocated once, at the bound: no copies as it fills (CPU pages are only touched later)
            self.query = {k: v.new_empty((self.capacity, *v.shape[1:])) for k, v in out.items()}
        for k, v in out.items():
            self.query[k][self.filled : self.filled + n] = v
        self.filled += n


class _DictRows:
    """Row-slicing view over a dict of equally long tensors (so `_batched` can slice it like a tensor)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.tensors.items()}
