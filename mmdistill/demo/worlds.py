"""Which splits a demo world has: their files, classes, clip counts and looks.

`single` is the demo world this project shipped first: one look for everything, appearance independent of the
class, fewshot.json / fewshot_val.json / unlabeled.json over the first actions.
`cross_domain` is the cross-domain few-shot setting in miniature: a labelled source domain
(source.json, its own actions, the 'studio' look with a class-tied backdrop tint), and a target
domain in another look whose actions are disjoint from the source's: an unlabelled pool
(unlabeled.json), labelled novel classes (fewshot.json) and class-disjoint validation classes
(fewshot_val.json). The two labelled target splits are filmed in `target_recordings` recordings
each: one backdrop and one performer per recording, every action several times in each, so the
scene says nothing about the action and recording-disjoint episodes have groups to keep apart. Parameters that belong to only one world must keep their defaults in the
other, so a binding never goes silently unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmdistill.demo.actions import ACTIONS
from mmdistill.demo.looks import LOOKS

WORLDS = ('single', 'cross_domain')
SOURCE_FILE = 'source.json'
# Defaults of the cross-domain world: 5 source, 6 target few-shot and 3 validation actions.
SOURCE_CLASSES = ('wave', 'jumping_jacks', 'squat', 'walk', 'punch')
TARGET_CLASSES = ('clap', 'kick', 'arm_circles', 'jump', 'march', 'side_bend')
TARGET_VAL_CLASSES = ('spin', 'bow', 'reach')
# Parameters of one world only (the rest are shared: seed, clips_per_class, unlabeled_clips,
# num_frames, size, jpeg_quality).
SINGLE_ONLY = ('num_classes', 'val_classes', 'max_distractors')
CROSS_DOMAIN_ONLY = ('source_classes', 'target_classes', 'target_val_classes',
                     'source_clips_per_class', 'source_look', 'target_look', 'spurious_cue',
                     'target_recordings')


@dataclass(frozen=True)
class Split:
    name: str
    file: str
    code: int          # in each clip's random stream (clip.clip_rng)
    prefix: str        # of its video ids
    classes: tuple
    count: int         # videos; labelled splits cycle over `classes`
    look: str | None   # None: the single world's appearance
    cue: float = 0.0   # probability that a clip's backdrop takes its class's hue
    recordings: int = 0  # 0: every clip its own scene; else rounds of clips share one (recording)

    def recording(self, index):
        """The recording of clip `index`, or None: consecutive rounds (one clip of every class)
        are cut from one recording, `recordings` equal runs of rounds over the split (with
        fewer rounds than recordings, a round each)."""
        if not self.recordings:
            return None
        rounds = -(-self.count // len(self.classes))
        return (index // len(self.classes)) * self.recordings // rounds


def world_params(params, defaults):
    """Check that no parameter of the other world was changed, then keep this world's only.

    The single world keeps exactly its historical parameter set, so its caches stay valid.
    """
    world = params.get('world', 'single')
    if world not in WORLDS:
        raise ValueError(f"demo_data.world must be one of {', '.join(WORLDS)}, got {world!r}.")
    foreign = CROSS_DOMAIN_ONLY if world == 'single' else SINGLE_ONLY
    changed = [name for name in foreign if name in params and params[name] != defaults[name]]
    if changed:
        other = 'cross_domain' if world == 'single' else 'single'
        raise ValueError(f"demo_data.{', demo_data.'.join(changed)} only apply to "
                         f"world='{other}', but world='{world}'. Remove those bindings or set "
                         f"demo_data.world = '{other}'.")
    drop = set(foreign) | ({'world'} if world == 'single' else set())
    return {k: v for k, v in params.items() if k not in drop}


def world_of(params):
    return params.get('world', 'single')


def splits(params):
    """The splits of the world `params` describe, in writing order."""
    if world_of(params) == 'single':
        names = list(ACTIONS)
        fewshot = tuple(names[:params['num_classes']])
        val = tuple(names[params['num_classes']:params['num_classes'] + params['val_classes']])
        per_class = params['clips_per_class']
        return [Split('unlabeled', 'unlabeled.json', 0, 'u', fewshot + val,
                      params['unlabeled_clips'], None),
                Split('fewshot', 'fewshot.json', 1, 'e', fewshot, per_class * len(fewshot), None),
                Split('fewshot_val', 'fewshot_val.json', 2, 'v', val, per_class * len(val), None)]
    source, target = tuple(params['source_classes']), tuple(params['target_classes'])
    val, per_class = tuple(params['target_val_classes']), params['clips_per_class']
    target_look = params['target_look']
    return [Split('source', SOURCE_FILE, 10, 's', source,
                  params['source_clips_per_class'] * len(source), params['source_look'],
                  params['spurious_cue']),
            Split('unlabeled', 'unlabeled.json', 11, 'u', target + val, params['unlabeled_clips'],
                  target_look),
            Split('fewshot', 'fewshot.json', 12, 'e', target, per_class * len(target), target_look,
                  recordings=params['target_recordings']),
            Split('fewshot_val', 'fewshot_val.json', 13, 'v', val, per_class * len(val),
                  target_look, recordings=params['target_recordings'])]


def check_cross_domain(params):
    """Class lists known and pairwise disjoint, looks known, counts and cue in range."""
    lists = {name: list(params[name]) for name in ('source_classes', 'target_classes',
                                                   'target_val_classes')}
    for name, classes in lists.items():
        unknown = [c for c in classes if c not in ACTIONS]
        if unknown:
            raise ValueError(f'demo_data.{name} has unknown actions {unknown}; choose from '
                             f'{", ".join(ACTIONS)}.')
        if len(set(classes)) != len(classes):
            raise ValueError(f'demo_data.{name} lists an action twice: {classes}.')
    if not lists['source_classes'] or not lists['target_classes']:
        raise ValueError('demo_data.source_classes and demo_data.target_classes must not be '
                         'empty in the cross_domain world.')
    names = list(lists)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(lists[a]) & set(lists[b]))
            if shared:
                raise ValueError(f'demo_data.{a} and demo_data.{b} share {shared}; the cross-domain '
                                 f'world needs class-disjoint source, target and validation '
                                 f'actions.')
    for name in ('source_look', 'target_look'):
        if params[name] not in LOOKS:
            raise ValueError(f'demo_data.{name} = {params[name]!r} is not a look; choose from '
                             f'{", ".join(LOOKS)}.')
    if not 0 <= params['spurious_cue'] <= 1:
        raise ValueError(f'demo_data.spurious_cue is a probability, got {params["spurious_cue"]}.')
    if params['source_clips_per_class'] < 1:
        raise ValueError('demo_data.source_clips_per_class must be >= 1.')
    if params['target_recordings'] < 0:
        raise ValueError(f"demo_data.target_recordings must be >= 0 (0: every clip its own "
                         f"scene), got {params['target_recordings']}.")
