"""tools/dataset_converters/check_refer.py: is a REFER download complete?

The trees are the synthetic generator's (a copy of the session's set) and
the hand-made RefCOCO-layout set of tests/helpers/refer.py, each broken in
one or several ways.
"""
import json
import os
import os.path as osp
import shutil

import pytest

from helpers.refer import image_file, set_segmentation, write_refer
from helpers.tool_runner import load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('dataset_converters/check_refer.py')


@pytest.fixture
def synthetic_copy(synthetic_refer, tmp_path):
    """A copy of the session's synthetic set, free to break."""
    root = str(tmp_path / 'synthetic')
    shutil.copytree(synthetic_refer, root)
    return root


def check(tool, capsys, *argv):
    """Runs the checker in this process; returns (exit code, output lines
    of stdout: the report)."""
    rc = tool.main([str(a) for a in argv])
    return rc, capsys.readouterr().out.splitlines()


def split_rows(lines, split_file):
    """{split: (refs, sentences, images)} of the table printed for
    ``split_file``."""
    start = lines.index(next(x for x in lines if x.startswith(split_file)))
    rows = {}
    for line in lines[start + 1:]:
        if not line.startswith('  '):
            break
        words = line.split()
        nums = [int(words[i + 1].replace(',', '')) for i, w in enumerate(words)
                if w in ('refs', 'sentences', 'images')]
        rows[words[0]] = tuple(nums)
    return rows


def test_complete_synthetic_tree_is_ready(tool, capsys, synthetic_copy):
    rc, lines = check(tool, capsys, '--data-root', synthetic_copy)
    assert rc == 0, '\n'.join(lines)
    assert lines[-1] == 'ready'
    meta = json.load(open(osp.join(synthetic_copy, 'synthetic_meta.json')))
    for flavour, folder in (('full', 'refsyn'), ('no_position', 'refsyn+')):
        rows = split_rows(lines, osp.join(synthetic_copy, folder,
                                          'refs(unc).p'))
        counts = meta['flavours'][flavour]['counts']
        assert rows == {s: (c['refs'], c['sentences'], c['images'])
                        for s, c in counts.items()}


def test_broken_tree_names_every_problem(tool, capsys, synthetic_copy):
    images = sorted(os.listdir(osp.join(synthetic_copy, 'images')))
    missing = [osp.join(synthetic_copy, 'images', images[k]) for k in (0, 9)]
    for path in missing:
        os.remove(path)
    cut = osp.join(synthetic_copy, 'images', images[4])
    data = open(cut, 'rb').read()
    open(cut, 'wb').write(data[:len(data) // 2])
    refs = osp.join(synthetic_copy, 'refsyn+', 'refs(unc).p')
    data = open(refs, 'rb').read()
    open(refs, 'wb').write(data[:len(data) // 2])

    rc, lines = check(tool, capsys, '--data-root', synthetic_copy)
    assert rc == 1
    report = '\n'.join(lines)
    for path in missing:
        assert any(line.strip().startswith(f'{path}: missing')
                   for line in lines), report
    assert any(line.strip().startswith(f'{cut}: the JPEG is cut short')
               for line in lines), report
    assert any(line.strip().startswith(f'{refs} is not a readable REFER '
                                       'pickle') for line in lines), report
    assert 'ready' not in lines[-1]
    assert lines[-1].startswith('to fix: 1 files missing or unreadable; '
                                '3 images missing')
    # the intact refs file is still counted
    assert 'train' in split_rows(lines, osp.join(synthetic_copy, 'refsyn',
                                                 'refs(unc).p'))


def test_every_bad_ref_and_mask_is_listed(tool, capsys, tmp_path):
    """The loader stops at the first bad ref; the checker lists them all,
    masks that do not decode by their annotation."""
    def break_refs(refs):
        refs[0]['ann_id'] = 4242  # ref 11
        refs[3]['image_id'] = 77  # ref 22

    def break_instances(inst):
        set_segmentation(301, dict(size=[18, 18], counts=[5, 3]))(inst)
        for img in inst['images']:
            if img['id'] == 1:
                img['height'] += 4  # the stored photo is 20 high
    root = write_refer(str(tmp_path / 'coco'), edit_instances=break_instances,
                       edit_refs=break_refs)
    rc, lines = check(tool, capsys, '--data-root', root)
    assert rc == 1
    report = '\n'.join(lines)
    refs = osp.join(root, 'refcoco', 'refs(unc).p')
    inst = osp.join(root, 'refcoco', 'instances.json')
    assert f'  {refs}: ref_id 11: ann_id 4242 is not in {inst} annotations' \
        in lines, report
    assert f'  {refs}: ref_id 22: image_id 77 is not in {inst} images' \
        in lines, report
    assert any(line.startswith(f'  {inst}: annotation 301: RLE counts cover')
               for line in lines), report
    photo = osp.join(root, 'train2014', image_file(1))
    assert any(line.startswith(f'  {photo}: the image is 20 x 30 (h x w) but '
                               'instances.json says 24 x 30')
               for line in lines), report
    assert lines[-1] == ('to fix: 2 refs the loader refuses; 1 masks that do '
                         'not decode; 1 images missing, unreadable or of the '
                         'wrong size (listed above)')


def test_counts_against_the_published_ones(tool, capsys, tmp_path):
    root = write_refer(str(tmp_path / 'coco'))
    rc, lines = check(tool, capsys, '--data-root', root)
    assert rc == 0 and lines[-1] == 'ready'
    refs = osp.join(root, 'refcoco', 'refs(unc).p')
    rows = split_rows(lines, refs)
    assert rows['train'] == (2, 5, 1)
    assert 'train  refs       2 of  42,404   sentences       5 of 120,624   ' \
        'images       1 of  16,994   <- differs' in '\n'.join(lines)
    assert f'note: {refs} split val: refs 2 (published 3,811), sentences 3 ' \
        '(published 10,834), images 1 (published 1,500) (a partial or other ' \
        'release?)' in lines
    rc, lines = check(tool, capsys, '--data-root', root, '--strict-counts')
    assert rc == 1
    assert lines[-1] == ('to fix: 5 splits whose counts differ from the '
                         'published ones (listed above)')


def test_published_counts_add_up_to_the_papers_totals(tool):
    """Sums over the splits of the table against each paper's totals:
    a typo in one cell shows here."""
    def total(key, k):
        return sum(row[k] for row in tool.PUBLISHED[key].values())
    assert [total(('refcoco', 'unc'), k) for k in range(3)] == \
        [50000, 142210, 19994]
    assert [total(('refcoco+', 'unc'), k) for k in range(3)] == \
        [49856, 141564, 19992]
    assert [total(('refcocog', 'umd'), k) for k in range(3)] == \
        [49822, 95010, 25799]
    # google: the same objects and sentences, images shared by the splits
    assert [total(('refcocog', 'google'), k) for k in range(2)] == \
        [49822, 95010]
    # the RefCOCO sentences per split
    assert [tool.PUBLISHED[('refcoco', 'unc')][s][1]
            for s in ('train', 'val', 'testA', 'testB')] == \
        [120624, 10834, 5657, 5095]


def test_empty_mask_is_a_note_and_named_datasets_must_exist(tool, capsys,
                                                            tmp_path):
    root = write_refer(str(tmp_path / 'coco'), edit_instances=set_segmentation(
        401, [[1, 1, 1, 1, 1, 1]]))
    rc, lines = check(tool, capsys, '--data-root', root, '--datasets',
                      'refcoco', 'refcoco+')
    assert rc == 1
    assert 'note: 1 referred annotations have an empty mask (the target has ' \
        'no pixel): 401' in lines
    assert f'  {osp.join(root, "refcoco+")}: folder not found' in lines
    assert lines[-1] == 'to fix: 1 files missing or unreadable (listed above)'


def test_quick_mode_checks_presence_only(tool, capsys, tmp_path):
    root = write_refer(str(tmp_path / 'coco'))
    path = osp.join(root, 'train2014', image_file(2))
    open(path, 'wb').write(b'not an image')
    rc, lines = check(tool, capsys, '--data-root', root, '--quick')
    assert rc == 0 and lines[-1] == 'ready'
    rc, lines = check(tool, capsys, '--data-root', root)
    assert rc == 1
    assert any(line.startswith(f'  {path}: not a readable image')
               for line in lines), '\n'.join(lines)
