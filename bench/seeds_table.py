"""Tables over training seeds from the evaluate steps' summary.json files (the tennis pipelines'
in bench/results/tennis_seeds.md, the demo's in BENCHMARKS.md).

    python bench/seeds_table.py CLIPS SEED RUN_DIR [CLIPS SEED RUN_DIR ...]

e.g. `21-30 0 output/2026-12-06/05-50-59_tennis_strokes_seed0_slice21-30`, or `demo 1
../seed1/output/2026-12-06/09-19-40_demo_evaluate` (CLIPS is a label for the clips evaluated).
Prints, per CLIPS, every model's accuracy +/- 95% CI per seed and setting (n/e: the setting could
not be drawn on these clips, with the evaluate step's reason from fewshot_trained.json), the
recordings per class; with two seeds or more, each model's mean over seeds and the all-teacher
student's paired difference from each model the claim is about, +/- the Student-t 95% half-width
over seeds (`mmdistill.eval.stats.summarize_runs`: how another training seed may land, which the
per-run CIs over episodes do not say); then the evaluate step's own verdicts (from the 95% CIs,
`fewshot/<setting>/vs_<model>` in summary.json) of the all-teacher student against the models
the claim is about, with whether each holds on every run given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere
from mmdistill.eval.stats import summarize_runs  # noqa: E402

MODELS = {
    "trained": "student, all three teachers",
    "student_untrained_teachers": "student from untrained teachers (control)",
    "untrained": "the same ViT, never trained",
    "teacher_rgb": "RGB teacher",
    "colour_histogram": "colour histogram",
    "teacher_flow": "flow teacher, on flow",
    "teacher_skeleton": "skeleton teacher, on skeletons",
    "student_rgb_only": "student, RGB teacher only",
    "student_flow_only": "student, flow teacher only",
    "student_skeleton_only": "student, skeleton teacher only",
}
CLAIM = ["student_untrained_teachers", "untrained", "teacher_rgb", "colour_histogram"]
SETTINGS = {"5way_1shot": "1-shot", "5way_5shot": "5-shot",
            "5way_1shot_disjoint": "1-shot disj.", "5way_5shot_disjoint": "5-shot disj."}
NOT_EVALUABLE = "n/e"


def key(model: str, setting: str, value: str) -> str:
    """summary.json's key of a model's value (the evaluated student's keys carry no model name)."""
    return ("" if model == "trained" else f"{model}/") + f"fewshot/{setting}/{value}"


def accuracy(summary: dict, model: str, setting: str) -> float | None:
    return summary.get(key(model, setting, "acc"))


def over_seeds(seeds: dict[int, dict]) -> None:
    """Means over seeds and the student's paired differences, +/- the t half-width over seeds."""
    settings = [s for s in SETTINGS if all(accuracy(summary, "trained", s) is not None
                                           for summary in seeds.values())]
    print(f"\nOver the {len(seeds)} seeds: mean +/- Student-t 95% half-width of the per-seed "
          f"accuracies, and the all-teacher student minus each model, paired by seed (*: the "
          f"interval excludes 0)\n")
    print("| model | " + " | ".join(SETTINGS[s] for s in settings) + " |")
    print("| --- " * (len(settings) + 1) + "|")

    def cell_over(values: list[float | None], star: bool = False) -> str:
        if any(value is None for value in values):  # a model some run did not evaluate
            return NOT_EVALUABLE
        runs = summarize_runs(values)
        apart = star and abs(runs.mean) > runs.ci95
        return f"{runs.mean:.1f} +/- {runs.ci95:.1f}" + ("*" if apart else "")

    for model, label in MODELS.items():
        values = [[accuracy(summary, model, s) for summary in seeds.values()] for s in settings]
        print(f"| {label} | " + " | ".join(cell_over(v) for v in values) + " |")
    for model in CLAIM:
        row = []
        for s in settings:
            others = [accuracy(summary, model, s) for summary in seeds.values()]
            differences = [None if other is None else accuracy(summary, "trained", s) - other
                           for summary, other in zip(seeds.values(), others)]
            row.append(cell_over(differences, star=True))
        print(f"| student minus {MODELS[model]} | " + " | ".join(row) + " |")


def cell(summary: dict, model: str, setting: str) -> str:
    acc = accuracy(summary, model, setting)
    if acc is None:
        return NOT_EVALUABLE
    return f"{acc:.1f} +/- {summary[key(model, setting, 'ci95')]:.1f}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="CLIPS SEED RUN_DIR")
    argv = parser.parse_args(argv).runs
    if len(argv) % 3:
        parser.error(f"{len(argv)} arguments: give CLIPS SEED RUN_DIR triples")
    runs: dict[str, dict[int, dict]] = {}
    first_dir: dict[str, Path] = {}
    for clips, seed, run_dir in zip(argv[0::3], argv[1::3], argv[2::3]):
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        if summary.get("status") != "finished":
            sys.exit(f"{run_dir}/summary.json: status {summary.get('status')!r}, not finished")
        if int(seed) in runs.get(clips, {}):
            parser.error(f"clips {clips} seed {seed} given twice")
        runs.setdefault(clips, {})[int(seed)] = summary
        first_dir.setdefault(clips, Path(run_dir))
    for clips, seeds in runs.items():
        settings = list(SETTINGS)
        queries = sorted({summary[f"fewshot/{s}/q_query"] for summary in seeds.values()
                          for s in settings if f"fewshot/{s}/q_query" in summary})
        print(f"\n**Clips {clips}** (seeds {', '.join(map(str, seeds))}; 5-way, "
              f"{'/'.join(map(str, queries))} queries; accuracy in %, mean +/- 95% CI; "
              f"{NOT_EVALUABLE}: not evaluable on these clips)\n")
        head = [f"seed {seed} {SETTINGS[s]}" for s in settings for seed in seeds]
        print("| model | " + " | ".join(head) + " |")
        print("| --- " * (len(head) + 1) + "|")
        for model, label in MODELS.items():
            row = [cell(seeds[seed], model, s) for s in settings for seed in seeds]
            print(f"| {label} | " + " | ".join(row) + " |")
        groups = {k.rsplit("/", 1)[1]: v for k, v in next(iter(seeds.values())).items()
                  if k.startswith("fewshot/groups/")}
        print("\nRecordings per class: " + ", ".join(f"{c} {n}" for c, n in groups.items()))
        why = json.loads((first_dir[clips] / "fewshot_trained.json").read_text())["not_evaluated"]
        for setting, reason in why.items():  # the same clips and groups for every model and seed
            print(f"\n{SETTINGS[setting]} not evaluable: {reason.split(' Lower n_way')[0]}")
        if len(seeds) > 1:
            over_seeds(seeds)
    print("\n**Verdicts of the all-teacher student (CIs separated: better / worse; else overlap)**\n")
    columns = [(clips, seed) for clips, seeds in runs.items() for seed in seeds]
    print("| against | setting | " + " | ".join(f"{c} s{s}" for c, s in columns)
          + " | better on all |")
    print("| --- " * (len(columns) + 3) + "|")
    for model in CLAIM:
        for setting, name in SETTINGS.items():
            words = [runs[c][s].get(f"fewshot/{setting}/vs_{model}", NOT_EVALUABLE)
                     for c, s in columns]
            if all(w == NOT_EVALUABLE for w in words):
                continue
            drawn = [w for w in words if w != NOT_EVALUABLE]
            counts = ", ".join(f"{drawn.count(w)} {w}" for w in ("better", "overlap", "worse")
                               if drawn.count(w))
            holds = "yes" if all(w == "better" for w in drawn) else f"no ({counts})"
            if len(drawn) < len(words):
                holds += f", {len(drawn)} of {len(words)} evaluable"
            print(f"| {MODELS[model]} | {name} | " + " | ".join(words) + f" | {holds} |")


if __name__ == "__main__":
    main(sys.argv[1:])
