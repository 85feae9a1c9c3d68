"""Checkpoints, in one package: everything about a checkpoint file except training with it.

    reading.py    any container researchers hand over -> one `Checkpoint` (+ damage.py: telling a
                  truncated file from a foreign one)
    selection.py  picking one encoder inside it and inferring its architecture
    keymaps.py    the official VideoMAE and Hugging Face key layouts <-> ours
    loading.py    loading it into a VideoViT (`pretrained`, initialising students and the MAE)
    format.py     our training checkpoint's format tag, and reading one strictly
    writing.py    atomic writes (a SIGTERM held until the file is complete)
    evaluation.py rebuilding a checkpoint's encoder and CMT heads for evaluation
    command.py    `python -m mmdistill.ckpt inspect|export`

The trainer's side (what a training checkpoint holds, saving every epoch, resume, keep-best) is
`mmdistill.train.training_checkpoint`. This package imports models/, never train/.
"""
