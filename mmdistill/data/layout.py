"""The on-disk layout of a data root, defined once.

The readers' defaults (`sources.py`, `flow_sources.py`), the class-folder reader (`annotations.py`), the preparation
tools (`mmdistill/prepare/`) and the demo writer (`mmdistill/demo/`) all take their folder names
and file templates from here, so what one writes is what the others read without path settings.

Templates are `str.format` patterns relative to a data root: `video` is the annotation's video id
(may contain '/'), `frame` a file number. Frame files are numbered from 1 (FIRST_FRAME_NUMBER);
flow file k holds the motion from frame k to k + 1, so F frames give F - 1 flow files.
"""

FRAMES_DIR = "frames"
FLOWS_DIR = "flows"
SKELETONS_DIR = "skeletons"
FIRST_FRAME_NUMBER = 1

# File names inside a video's folder (FRAMES_DIR/<video>/, FLOWS_DIR/<video>/).
FRAME_FILE = "{frame:06d}.jpg"
FLOW_PAIR_FILE = "pair_{frame:05d}.npy"

# Paths under a data root; the gin defaults of the readers in sources.py and flow_sources.py.
FRAME_TEMPLATE = FRAMES_DIR + "/{video}/" + FRAME_FILE           # frames/{video}/{frame:06d}.jpg
FLOW_TEMPLATE = FLOWS_DIR + "/{video}/" + FLOW_PAIR_FILE         # flows/{video}/pair_{frame:05d}.npy
FLOW_ARRAY_TEMPLATE = FLOWS_DIR + "/{video}.npy"                 # one (F-1, 2, H, W) array per video
FLOW_JPEG_TEMPLATE = FLOWS_DIR + "/{video}/{axis}_{frame:05d}.jpg"  # denseflow-style x_/y_ JPEGs
SKELETON_TEMPLATE = SKELETONS_DIR + "/{video}.pkl"
VIDEO_TEMPLATE = "{video}.mp4"  # RGB read from the videos themselves

# Video files the class-folder reader and the preparation tools recognise (lower case).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
