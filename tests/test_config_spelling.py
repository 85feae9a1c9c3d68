"""One spelling per setting: a binding the code would ignore (the caller passes that value) or a
retired spelling is refused when the config is parsed, naming the binding that works."""
import ast
import inspect
import sys
from pathlib import Path

import gin
import pytest

from mmdistill.config import RETIRED, SUPPLIED, ConfigError, parse_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import run  # noqa: E402

run.import_configurables()

# Parameters a caller passes at some call sites only, the binding taking effect at the others
# (unscoped, so neither a denylist nor a scoped refusal fits): where the binding holds.
PARTLY_PASSED = {
    "fewshot.use_heads": "the evaluate stage's trained model (baselines have no heads; "
                         "validation reads the pooled feature)",
    "fewshot.ensemble_heads": "the evaluate stage's trained model, as fewshot.use_heads",
    "fewshot.progress": "the evaluate stage (validation runs quietly between epochs)",
    "demo_data_cache.root": "gin runs (pipeline.setup); `python -m mmdistill.demo` parses no gin "
                            "and passes its folder argument",
}


def _working(key: str) -> str:
    working = SUPPLIED[key]
    return working[len("nothing: "):] if working.startswith("nothing: ") else working


@pytest.mark.parametrize("key", sorted(SUPPLIED))
def test_a_binding_the_caller_overrides_is_refused_naming_the_working_one(key):
    with pytest.raises(ConfigError) as err:
        parse_config([], [f"{key} = None"])
    message = str(err.value)
    assert f"{key.split('/')[-1]}` is passed by the code" in message
    assert _working(key) in message


@pytest.mark.parametrize("key", sorted(k for k in SUPPLIED if "/" in k))
def test_a_scoped_refusal_leaves_other_scopes_bindable(key):
    scope, name = key.split("/", 1)
    parse_config([], [f"{name} = None", f"unlabeled/{name} = None"], finalize=False)
    assert gin.query_parameter(f"unlabeled/{name}") is None
    gin.clear_config()
    with pytest.raises(ConfigError, match=f"scope '{scope}'"):
        parse_config([], [f"outer/{scope}/{name} = None"])  # nested scopes count too


@pytest.mark.parametrize("binding, name", [
    ("fewshot.n_way = 3", "fewshot.n_way"), ("fewshot.k_shot = 5", "fewshot.k_shot"),
    ("fewshot.q_query = 5", "fewshot.q_query"), ("fewshot.episodes = 10", "fewshot.episodes"),
    ("tube_mask.ratio = 0.5", "tube_mask"), ("unlabeled/tube_mask.ratio = 0.5", "tube_mask"),
    ("unlabeled/clip_data.mask = @tube_mask()", "tube_mask"),
])
def test_a_retired_spelling_is_refused_naming_the_new_one(binding, name):
    with pytest.raises(ConfigError, match="no longer a") as err:
        parse_config([], [binding])
    assert RETIRED[name] in str(err.value)


def test_a_refused_binding_in_a_gin_file_names_the_file(tmp_path):
    config = tmp_path / "exp.gin"
    config.write_text("train.epochs = 1\nteacher_flow/pretrained.path = '/x.ckpt'\n")
    with pytest.raises(ConfigError, match="exp.gin.*distill.teacher_checkpoints"):
        parse_config([config])
    gin.clear_config()
    config.write_text("fewshot_data/data_loader.shuffle = True\n")
    with pytest.raises(ConfigError, match="exp.gin.*reads every clip in order"):
        parse_config([config])


def test_the_data_tools_refuse_a_retired_configurable_they_would_skip():
    with pytest.raises(ConfigError, match="tube_mask.*distill.mask_ratio"):
        parse_config([], ["tube_mask.ratio = 0.5"], finalize=False, skip_unknown=True)


def _configurables() -> dict:
    """Python name of each mmdistill configurable -> (gin name, its parameters in order, denylist)."""
    found = {}
    for _, configurable in gin.config._REGISTRY.items():
        wrapped = configurable.wrapped
        if not getattr(wrapped, "__module__", "").startswith("mmdistill"):
            continue
        target = wrapped.__init__ if inspect.isclass(wrapped) else wrapped
        params = [p for p in inspect.signature(target).parameters if p != "self"]
        found[wrapped.__name__] = (configurable.name, params, set(configurable.denylist or ()))
    return found


def _supplied(call: ast.Call, params: list[str]) -> list[str]:
    positional = [params[i] for i, arg in enumerate(call.args)
                  if i < len(params) and not isinstance(arg, ast.Starred)]
    return positional + [k.arg for k in call.keywords if k.arg is not None]


def test_every_parameter_a_caller_passes_is_refused_as_a_binding():
    """Reads every call of a configurable in mmdistill/ and run.py: a parameter it passes must be
    denylisted, refused in the scopes it is passed in, or listed in PARTLY_PASSED with why."""
    configurables = _configurables()
    assert {"build_clip_dataset", "run_fewshot", "initialise_from_checkpoint"} <= set(configurables)
    scoped = {key.split("/", 1)[1] for key in SUPPLIED if "/" in key}
    unrefused, calls = [], 0
    for path in [ROOT / "run.py", *sorted((ROOT / "mmdistill").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in configurables):
                continue
            calls += 1
            name, params, denylist = configurables[node.func.id]
            for param in _supplied(node, params):
                key = f"{name}.{param}"
                if param not in denylist and key not in scoped and key not in PARTLY_PASSED:
                    unrefused.append(f"{path.relative_to(ROOT)}:{node.lineno} {key}")
    assert calls > 20  # the scan sees the call sites
    assert not unrefused, f"passed by a caller but bindable (add to the denylist): {unrefused}"
    for key in SUPPLIED:  # and every unscoped SUPPLIED name is really on gin's denylist
        if "/" not in key:
            configurable, param = key.split(".")
            assert param in gin.config._REGISTRY.get_match(configurable).denylist, key
