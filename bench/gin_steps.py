"""Every binding each pipeline step parses, macros resolved, as JSON: to check that a change to
the gin tree leaves each step's settings as they were (run it before and after, then diff).

    python bench/gin_steps.py gin/demo.gin gin/tennis_strokes.gin > steps.json

`<pipeline>:__top__` holds the pipeline file's own bindings (its setup), less `pipeline.*`.
Reads gin's private config dict (gin-config 0.5.0): a checking tool, not part of a run.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def resolve(value):
    from gin.config import ConfigurableReference

    if isinstance(value, ConfigurableReference):
        if value.configurable.name == "macro":
            return resolve(value.scoped_configurable_fn())
        return "@" + value.configurable.name + ("()" if value.evaluate else "")
    if isinstance(value, (list, tuple)):
        return [resolve(v) for v in value]
    if isinstance(value, dict):
        return {str(k): resolve(v) for k, v in value.items()}
    return value


def bindings() -> dict:
    import gin

    out = {}
    for (scope, selector), params in gin.config._CONFIG.items():
        if selector.endswith("macro"):
            continue
        name = selector.split(".")[-1]
        for param, value in params.items():
            out[f"{scope + '/' if scope else ''}{name}.{param}"] = resolve(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pipelines", nargs="+", help="pipeline gin files, e.g. gin/demo.gin")
    args = parser.parse_args()
    import gin

    import run
    from mmdistill.config import parse_config
    from mmdistill.pipeline import pipeline_settings

    run.import_configurables()
    result = {}
    for top in args.pipelines:
        gin.clear_config()
        parse_config([top], finalize=False)
        result[f"{top}:__top__"] = {k: v for k, v in bindings().items()
                                    if not k.startswith("pipeline.")}
        for step, (files, step_bindings) in pipeline_settings()["steps"].items():
            gin.clear_config()
            parse_config(files, step_bindings, finalize=False)
            result[f"{top}:{step}"] = bindings()
    json.dump(result, sys.stdout, indent=1, sort_keys=True, default=repr)


if __name__ == "__main__":
    main()
