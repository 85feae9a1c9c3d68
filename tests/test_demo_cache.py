"""The demo data cache under concurrency and crashes: one writer at a time, all or nothing."""
import fcntl
import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmdistill.data.layout import FLOW_TEMPLATE, FRAME_TEMPLATE, SKELETON_TEMPLATE
from mmdistill.demo.cache import ensure_demo_dataset
from mmdistill.demo.atomic import lock_path

REPO = Path(__file__).resolve().parent.parent
PARAMS = dict(num_classes=2, val_classes=1, clips_per_class=3, unlabeled_clips=24, num_frames=4,
              size=(24, 24))
# A child process that fills the cache; `delay` seconds after each written video keep it
# mid-write long enough for another process (or a kill) to meet it there.
CHILD = """
import json, sys, time
import mmdistill.demo.writer as writer
from mmdistill.demo.cache import ensure_demo_dataset
root, params, delay = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
write_clip = writer.write_clip
def slow_write_clip(*args):
    write_clip(*args)
    time.sleep(delay)
writer.write_clip = slow_write_clip
ensure_demo_dataset(root, progress=False, **params)
# What a caller finds when ensure_demo_dataset returns, before any other process is done.
from pathlib import Path
from mmdistill.data.layout import FLOW_TEMPLATE, FRAME_TEMPLATE, SKELETON_TEMPLATE
root, frames, missing = Path(root), params['num_frames'], []
for name in ('unlabeled.json', 'fewshot.json', 'fewshot_val.json'):
    for video in (entry['video'] for entry in json.loads((root / name).read_text())):
        paths = [FRAME_TEMPLATE.format(video=video, frame=k) for k in range(1, frames + 1)]
        paths += [FLOW_TEMPLATE.format(video=video, frame=k) for k in range(1, frames)]
        missing += [p for p in paths + [SKELETON_TEMPLATE.format(video=video)]
                    if not (root / p).is_file()]
assert not missing, f'{len(missing)} files missing on return, e.g. {missing[:3]}'
print('child done', flush=True)
"""


def start_child(root, delay, params=PARAMS):
    return subprocess.Popen([sys.executable, '-c', CHILD, str(root), json.dumps(params), str(delay)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_complete_dataset(root, params=PARAMS):
    """Every video listed has all its frames, flows and skeleton, and nothing else is there."""
    manifest = json.loads((root / 'manifest.json').read_text())
    assert manifest['complete'] is True and manifest['params']['unlabeled_clips'] == params['unlabeled_clips']
    frames = params['num_frames']
    listed = []
    for name in ('unlabeled.json', 'fewshot.json', 'fewshot_val.json'):
        for entry in json.loads((root / name).read_text()):
            video = entry['video']
            listed.append(video)
            for k in range(1, frames + 1):
                assert (root / FRAME_TEMPLATE.format(video=video, frame=k)).stat().st_size > 0
            for k in range(1, frames):
                assert (root / FLOW_TEMPLATE.format(video=video, frame=k)).stat().st_size > 0
            assert (root / SKELETON_TEMPLATE.format(video=video)).stat().st_size > 0
    expected = params['unlabeled_clips'] + params['clips_per_class'] * (
        params['num_classes'] + params['val_classes'])
    assert len(listed) == len(set(listed)) == expected
    assert sorted(p.name for p in (root / 'frames').iterdir()) == sorted(listed)
    assert sum(1 for _ in (root / 'frames').rglob('*.jpg')) == expected * frames


def leftovers(root):
    return sorted(p.name for p in root.parent.iterdir()
                  if p.name.startswith(f'.{root.name}.') and p.is_dir())


def read_line(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ''


def test_two_processes_filling_one_fresh_root_share_one_complete_dataset(tmp_path):
    root = tmp_path / 'demo_data'
    children = [start_child(root, delay=0.05) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err[-3000:]
        assert 'child done' in out
    generated = [out.count('Writing the synthetic demo dataset') + out.count('regenerating')
                 for out, _ in outputs]
    assert sorted(generated) == [0, 1], outputs  # the other one reused the finished data
    assert_complete_dataset(root)
    assert leftovers(root) == []


def wait_until_writing(root, child):
    """Return once `child` holds the lock and has begun writing its partial folder."""
    deadline = time.monotonic() + 120
    while not list(root.parent.glob(f'.{root.name}.partial-*/frames/*')):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()[-3000:]
        time.sleep(0.01)


def test_a_second_caller_waits_for_the_writer_and_reuses_its_data(tmp_path):
    root = tmp_path / 'demo_data'
    writer = start_child(root, delay=0.2)
    wait_until_writing(root, writer)
    assert lock_path(root).read_text().strip() == str(writer.pid)
    waiter = start_child(root, delay=0)
    line = read_line(waiter.stdout, timeout=120)
    assert f'Waiting for process {writer.pid}' in line and str(root) in line
    assert not (root / 'manifest.json').exists()
    for child in (writer, waiter):
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        assert ('Writing the synthetic' in out) == (child is writer)
    assert 'reusing it' in out
    assert_complete_dataset(root)


def test_a_killed_generator_leaves_no_complete_manifest_and_the_next_call_regenerates(tmp_path):
    root = tmp_path / 'demo_data'
    child = start_child(root, delay=0.2)
    wait_until_writing(root, child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not (root / 'manifest.json').exists()
    assert leftovers(root) == [f'.demo_data.partial-{child.pid}']
    with open(lock_path(root)) as lock:  # the kernel released the dead process's lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)

    ensure_demo_dataset(root, progress=False, **PARAMS)
    assert_complete_dataset(root)
    assert leftovers(root) == []


def test_leftover_folders_holding_foreign_files_are_not_deleted(tmp_path):
    root = tmp_path / 'demo_data'
    partial = tmp_path / '.demo_data.partial-12345'
    (partial / 'frames').mkdir(parents=True)
    (partial / 'thesis.tex').write_text('mine')
    with pytest.raises(FileExistsError, match='thesis.tex'):
        ensure_demo_dataset(root, progress=False, **PARAMS)
    assert (partial / 'thesis.tex').read_text() == 'mine' and not root.exists()


def test_a_folder_with_foreign_files_is_never_deleted_even_when_its_data_is_stale(tmp_path):
    root = ensure_demo_dataset(tmp_path / 'demo_data', progress=False, **PARAMS)
    (root / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='notes.txt'):
        ensure_demo_dataset(root, progress=False, **dict(PARAMS, seed=1))
    assert (root / 'notes.txt').read_text() == 'mine'
    assert_complete_dataset(root)
    assert leftovers(root) == []
