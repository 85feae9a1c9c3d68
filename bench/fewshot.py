"""Few-shot evaluation speed: the original's per-episode re-forward against extract-once.

Both sides see the same in-memory clips, the same model, the same episodes (one seeded sampler)
and the same classifier (our torch logistic regression; the original fitted scikit-learn per
episode). (a) "per-episode": every episode forwards all of its N*(K+Q) clips (x mask views) and
fits one classifier, as the original did. (b) "extract-once": every clip is forwarded once per
view, then all episodes are classified in one batch. Clip decoding is excluded from both sides
(the clips are tensors in memory); counting it would only widen the gap.

    python bench/fewshot.py                      # 400 episodes, 5-way 1-shot 15 queries, CPU
    python bench/fewshot.py --mask-views 2       # the original's masked-view ensemble
    python bench/fewshot.py --device cuda --amp bf16 --size small --frames 16 --img 224
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

# The repo root, so `python bench/<script>.py` finds mmdistill from a fresh clone without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdistill.data.masking import token_indices  # noqa: E402
from mmdistill.eval.classifiers import get_classifier  # noqa: E402
from mmdistill.eval.episodes import sample_episodes  # noqa: E402
from mmdistill.eval.features import extract_features, tube_mask_fn  # noqa: E402
from mmdistill.eval.fewshot import evaluate  # noqa: E402


class SyntheticClips(Dataset):
    """Labelled clips in memory: a per-class pattern plus noise, so accuracy is above chance."""

    def __init__(self, classes: int, per_class: int, frames: int, size: int, noise: float,
                 seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.class_names = [f"class_{c}" for c in range(classes)]
        self.labels = torch.arange(classes).repeat_interleave(per_class)
        patterns = torch.randn(classes, 3, frames, size, size, generator=g)
        self.rgb = patterns[self.labels] + noise * torch.randn(len(self.labels), 3, frames, size,
                                                             size, generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"rgb": self.rgb[i], "label": int(self.labels[i]), "index": i}


def build_model(args) -> nn.Module:
    from mmdistill.models.vit import video_vit
    return video_vit(size=args.size, num_frames=args.frames, img_size=args.img,
                     use_mean_pooling=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_episode(model, data, episodes, n_way, classify, device, amp_dtype, mask_fn, mask_views):
    """The original's evaluation: forward every clip of every episode, fit, predict."""
    accuracies = []
    autocast = dict(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    n_support = episodes.support.shape[1]
    for e in range(len(episodes)):
        clip_idx = torch.cat([episodes.support[e], episodes.query[e]])
        x = data.rgb[clip_idx].to(device, non_blocking=True)  # one batch of N*(K+Q) clips
        with torch.no_grad(), torch.autocast(**autocast):
            if mask_views:
                views = [model(x, token_indices(mask_fn(v, clip_idx).to(device))[0])[1].float()
                         for v in range(mask_views)]
            else:
                views = [model(x)[1].float()]
        support = views[0][:n_support].unsqueeze(0)
        query = torch.cat([v[n_support:] for v in views]).unsqueeze(0)
        probs = classify(support, episodes.support_labels[e:e + 1].to(device), query, n_way)
        probs = probs.view(len(views), -1, n_way).mean(0)  # average the query views
        correct = probs.argmax(-1).cpu() == episodes.query_labels[e]
        accuracies.append(100.0 * correct.double().mean().item())
    return torch.tensor(accuracies, dtype=torch.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--q-query", type=int, default=15)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--clips-per-class", type=int, default=17)
    parser.add_argument("--size", default="tiny", help="video_vit size (tiny|small|base|...)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--img", type=int, default=32)
    parser.add_argument("--noise", type=float, default=3.0,
                        help="clip noise against a unit class pattern (sets the accuracy)")
    parser.add_argument("--mask-views", type=int, default=0,
                        help="masked query views (the original's ensemble used 2)")
    parser.add_argument("--classifier", default="logistic")
    parser.add_argument("--batch-size", type=int, default=32, help="extract-once batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 gives steadier timings on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    torch.manual_seed(args.seed)
    model = build_model(args).to(device).eval()
    data = SyntheticClips(args.classes, args.clips_per_class, args.frames, args.img,
                          args.noise, args.seed)
    classify = get_classifier(args.classifier)
    mask_fn = tube_mask_fn(model.grid_size, 0.75, args.seed) if args.mask_views else None
    setting = (args.n_way, args.k_shot, args.q_query, args.episodes)
    episodes = sample_episodes(data.labels, data.class_names, *setting, seed=args.seed)
    clips_per_episode = args.n_way * (args.k_shot + args.q_query)
    views = max(args.mask_views, 1)

    with torch.no_grad():  # warm-up shared by both sides (allocator, kernels, thread pools)
        model(data.rgb[:clips_per_episode].to(device))
    classify(torch.randn(1, 5, 8), torch.arange(5).view(1, 5), torch.randn(1, 3, 8), 5)

    sync(device)
    start = time.perf_counter()
    baseline = per_episode(model, data, episodes, args.n_way, classify, device, amp_dtype,
                           mask_fn, args.mask_views)
    sync(device)
    baseline_s = time.perf_counter() - start

    sync(device)
    start = time.perf_counter()
    loader = DataLoader(data, batch_size=args.batch_size)
    bank = extract_features(model, loader, device, amp_dtype, mask_views=args.mask_views,
                            seed=args.seed, progress=False)
    sync(device)
    extract_s = time.perf_counter() - start
    report = evaluate(bank, [setting], args.classifier, seed=args.seed, device=device)
    sync(device)
    ours_s = time.perf_counter() - start
    ours = torch.from_numpy(report.results[0].episode_accuracy)

    same = int((ours == baseline).sum())
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"model: video_vit {args.size}, {args.frames}x{args.img}x{args.img}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params; amp {args.amp}; "
          f"{len(data)} clips in {args.classes} classes; classifier {args.classifier}")
    print(f"setting: {args.episodes} episodes, {args.n_way}-way {args.k_shot}-shot "
          f"{args.q_query} queries, {args.mask_views} mask views")
    print(f"(a) per-episode re-forward: {baseline_s:8.2f} s  "
          f"({args.episodes * clips_per_episode * views} clip forwards)")
    print(f"(b) extract once + batched: {ours_s:8.2f} s  ({len(data) * (1 + args.mask_views)} "
          f"clip forwards, extraction {extract_s:.2f} s, episodes {ours_s - extract_s:.2f} s)")
    print(f"speed-up: {baseline_s / ours_s:.1f}x")
    print(f"accuracy: per-episode {baseline.mean():.2f}%, extract-once {ours.mean():.2f}%; "
          f"identical in {same}/{args.episodes} episodes")
    if same != args.episodes:
        raise SystemExit("per-episode accuracies differ between the two paths")


if __name__ == "__main__":
    main()
