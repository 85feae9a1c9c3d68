"""The demo world: synthetic multi-modal action clips written in the real on-disk formats.

The demo must run on a fresh clone without any download, yet exercise the same readers as real
data. So this package renders small videos of a 3-D stick figure (random clothes, background,
position, size, speed and viewpoint) performing one of several actions, and writes frames, flow,
skeletons and annotation files the project's readers take unchanged (docs/demo_data.md).

Flow and keypoints come from the same geometry that draws the frames: every visible pixel
belongs to one rigid capsule (a limb, the torso, the head or a distractor), and its flow is
where that point of the capsule sits in the next frame. Appearance is sampled independently of
the action in the single world, so only pose and motion tell the classes apart; the
cross-domain world shifts appearance between a source and a target domain (worlds.py).

Modules, from the figure up:
    figure.py      body model, pose -> 3-D joints, COCO-17 keypoint names
    actions.py     the actions (pose over time) and ACTIONS, the class list
    appearance.py  background, clothes, distractors, as capsule layers
    looks.py       the cross-domain world's domain looks (studio source, street target)
    raster.py      capsules -> frames and exact forward flow
    clip.py        one clip of one action: all of the above, from one random stream
    worlds.py      which splits a world has ('single', 'cross_domain'): files, classes, looks
    writer.py      a whole dataset on disk (gin `demo_data`): splits, files, manifest
    atomic.py      one writer at a time (file lock), data published complete or not at all
    cache.py       generate once, reuse after (gin `demo_data_cache`)
    cli.py         python -m mmdistill.demo

Nothing is imported here, so importing one module never loads the others.
"""
