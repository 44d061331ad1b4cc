"""tools/dataset_converters/custom2refer.py: labelled photos to REFER files.

The sets are written by tests/helpers/custom_data.py, which also says what
the written set must give (every sentence's mask, decoded here from the
input); the written files are read back by RefCOCODataset, as training does.
"""
import json
import os
import os.path as osp
import pickle
from collections import defaultdict

import numpy as np
import pytest

from helpers.custom_data import write_coco_set, write_labelme_set, write_photo
from helpers.tool_runner import REPO, explain, load_tool, run_tool

TINY_BASE = osp.join(REPO, 'configs', 'synthetic', 'sera-tiny_synthetic.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool('dataset_converters/custom2refer.py')


def convert(tool, capsys, *argv):
    """Runs the converter in this process; returns (exit code, output)."""
    rc = tool.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def coco_args(s, out, *extra):
    return ['coco', '--instances', s['instances'], '--images', s['images'],
            '--sentences', s['sentences'], '--out', out, *extra]


def load_split(out, split, name='custom', by='custom'):
    """The test-mode samples of a written split, as the loader gives them."""
    from sera_mm.datasets.refcoco import RefCOCODataset
    ds = RefCOCODataset(data_root=str(out), ann_file=f'{name}/instances.json',
                        split_file=f'{name}/refs({by}).p', split=split,
                        data_prefix=dict(img_path='images/'), test_mode=True)
    return [ds.get_data_info(i) for i in range(len(ds))]


def load_all(out, splits=('train', 'val', 'test')):
    return {split: load_split(out, split) for split in splits}


def assert_masks_right(samples_by_split, masks, pixels=None):
    """Every sentence of the input is a sample whose decoded mask is its
    object's mask (and whose image is its photo)."""
    from PIL import Image

    from sera_mm.datasets.transforms.load_referring_mask import \
        decode_segmentation
    seen = set()
    for samples in samples_by_split.values():
        for info in samples:
            text = info['text']
            seen.add(text)
            mask = decode_segmentation(info['segmentation'], info['height'],
                                       info['width'])
            np.testing.assert_array_equal(mask, masks[text], err_msg=text)
            if pixels is not None:
                stored = np.asarray(Image.open(info['img_path']).convert('RGB'))
                np.testing.assert_array_equal(stored, pixels[text],
                                              err_msg=text)
    assert seen == set(masks)


def assert_planted_reported(output, planted):
    """Each planted problem is on a line naming its location."""
    lines = output.splitlines()
    for what, (where, words) in planted.items():
        hits = [line for line in lines if where in line
                and all(w in line for w in words)]
        assert hits, f'{what} ({where}, {words}) not reported in:\n{output}'


def images_by_split(samples_by_split):
    splits = defaultdict(set)
    for split, samples in samples_by_split.items():
        for info in samples:
            splits[info['image_id']].add(split)
    return splits


# --------------------------------------------------------------------------
# planted problems: all reported at once, nothing written
# --------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_coco_problems_all_listed_and_nothing_written(tool, capsys, tmp_path,
                                                      fmt):
    s = write_coco_set(str(tmp_path / 'in'), fmt=fmt, plant=True)
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, *coco_args(s, out))
    assert rc == 1
    assert_planted_reported(output, s['planted'])
    assert f'{len(s["planted"])} problem(s) found' in output
    assert not out.exists()


def test_labelme_problems_all_listed_and_nothing_written(tool, capsys,
                                                         tmp_path):
    s = write_labelme_set(str(tmp_path / 'photos'), plant=True)
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, 'labelme', s['folder'], '--out', out)
    assert rc == 1
    assert_planted_reported(output, s['planted'])
    assert f'{len(s["planted"])} problem(s) found' in output
    assert not out.exists()


def test_after_the_fixes_the_set_converts(tool, capsys, tmp_path):
    """The planted set, repaired by hand, converts: the problems were the
    only obstacles."""
    s = write_coco_set(str(tmp_path / 'in'), plant=True)
    rows = [json.loads(line) for line in open(s['sentences'])
            if line.strip().endswith('}')]
    rows = [r for r in rows if r['ann_id'] not in (99999, 88888, '', 1000)]
    with open(s['sentences'], 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    inst = json.load(open(s['instances']))
    inst['annotations'][6]['segmentation'] = [[2, 2, 14, 2, 14, 14, 2, 14]]
    json.dump(inst, open(s['instances'], 'w'))
    write_photo(osp.join(s['images'], 'photo_05.png'), 38, 26, seed=5)
    rc, output = convert(tool, capsys, *coco_args(s, tmp_path / 'out'))
    assert rc == 0, output
    texts = {info['text'] for samples in load_all(tmp_path / 'out').values()
             for info in samples}
    assert texts == {r['sentence'] for r in rows}


# --------------------------------------------------------------------------
# a clean set: what the loader reads back
# --------------------------------------------------------------------------
def test_coco_set_loads_with_the_right_masks_and_photos(tool, capsys,
                                                        tmp_path):
    s = write_coco_set(str(tmp_path / 'in'))
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, *coco_args(s, out))
    assert rc == 0, output
    assert 'note: 1 image(s) have no sentence and are left out' in output
    samples = load_all(out)
    assert_masks_right(samples, s['masks'], s['pixels'])
    inst = json.load(open(out / 'custom' / 'instances.json'))
    # the photo without a sentence is left out; every object of the others
    # is kept with its id
    assert {i['file_name'] for i in inst['images']} == \
        {f'photo_{k:02d}.png' for k in range(10)}
    assert sorted(a['id'] for a in inst['annotations']) == sorted(
        i * 10 + j for i in range(100, 110) for j in (0, 1))
    assert all(len(v) == 1 for v in images_by_split(samples).values())


def test_csv_and_json_lines_give_the_same_files(tool, capsys, tmp_path):
    outs = []
    for fmt in ('jsonl', 'csv'):
        s = write_coco_set(str(tmp_path / fmt), fmt=fmt)
        out = tmp_path / f'out_{fmt}'
        assert convert(tool, capsys, *coco_args(s, out))[0] == 0
        outs.append(out)
    for name in ('instances.json', 'refs(custom).p'):
        assert (outs[0] / 'custom' / name).read_bytes() == \
            (outs[1] / 'custom' / name).read_bytes()


def test_sentence_fields_by_other_names(tool, capsys, tmp_path):
    """A CSV with capitalised columns, other names of the fields, images
    named with their folder or by id, and a column the converter ignores."""
    s = write_coco_set(str(tmp_path / 'in'), fmt='csv')
    with open(s['sentences'], 'w', newline='') as f:
        f.write('Image_ID,Annotation_IDs,Text,Note\n')
        for k, r in enumerate(s['rows']):
            image = f'images/{r["image"]}' if k % 2 else \
                str(100 + int(r['image'][6:8]))
            f.write(f'{image},{r["ann_id"]},{r["sentence"]},checked\n')
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, *coco_args(s, out))
    assert rc == 0, output
    assert "field(s) ['note'] ignored" in output
    assert_masks_right(load_all(out), s['masks'], s['pixels'])


def test_labelme_set_loads_with_the_right_masks(tool, capsys, tmp_path):
    s = write_labelme_set(str(tmp_path / 'photos'))
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, 'labelme', s['folder'], '--out', out)
    assert rc == 0, output
    samples = load_all(out)
    # description lines are sentences of one ref; a group is one object with
    # two polygons, whose label is not a sentence (a part has a description)
    assert_masks_right(samples, s['masks'])
    for info in (i for v in samples.values() for i in v):
        if info['text'].startswith('the broken fence'):
            assert len(info['segmentation']) == 2
    refs = pickle.load(open(out / 'custom' / 'refs(custom).p', 'rb'))
    cats = [r for r in refs if r['sentences'][0]['sent'].startswith('the grey')]
    assert all(len(r['sentences']) == 2 for r in cats)
    # photos of the subfolder keep it
    assert osp.isfile(out / 'images' / 'day2' / 'IMG_002.jpg')


# --------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------
def test_splits_are_by_image_seeded_and_follow_the_ratios(tool, capsys,
                                                          tmp_path):
    s = write_coco_set(str(tmp_path / 'in'))
    refs = {}
    for name, seed in (('a', 0), ('b', 0), ('c', 7)):
        out = tmp_path / name
        args = coco_args(s, out, '--seed', seed, '--splits', 'train=0.6',
                         'val=0.2', 'test=0.2')
        assert convert(tool, capsys, *args)[0] == 0
        refs[name] = (out / 'custom' / 'refs(custom).p').read_bytes()
        samples = load_all(out)
        per_image = images_by_split(samples)
        assert all(len(v) == 1 for v in per_image.values())
        counts = defaultdict(int)
        for (split, ) in per_image.values():
            counts[split] += 1
        assert dict(counts) == dict(train=6, val=2, test=2)
    assert refs['a'] == refs['b']

    def split_of(blob):
        return {r['image_id']: r['split'] for r in pickle.loads(blob)}
    assert split_of(refs['a']) != split_of(refs['c'])


def test_assign_splits(tool):
    names = [f'img{k:02d}.jpg' for k in range(20)]
    ratios = dict(train=0.5, val=0.25, test=0.25)
    drawn = tool.assign_splits(names, ratios, seed=3)
    assert sorted(drawn) == names
    assert [list(drawn.values()).count(s) for s in ratios] == [10, 5, 5]
    # the input order does not matter, the seed does
    assert tool.assign_splits(names[::-1], ratios, seed=3) == drawn
    assert tool.assign_splits(names, ratios, seed=4) != drawn
    # a small set still fills every split
    few = tool.assign_splits(names[:3], dict(train=0.8, val=0.1, test=0.1), 0)
    assert sorted(few.values()) == ['test', 'train', 'val']


def test_a_given_split_is_kept_and_a_conflict_is_reported(tool, capsys,
                                                          tmp_path):
    s = write_coco_set(str(tmp_path / 'in'))
    rows = s['rows']
    for r in rows:
        if r['image'] == 'photo_00.png':
            r['split'] = 'val'
    with open(s['sentences'], 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    out = tmp_path / 'out'
    assert convert(tool, capsys, *coco_args(s, out))[0] == 0
    val_images = {i['image_id'] for i in load_split(out, 'val')}
    assert 100 in val_images

    conflict = [n for n, r in enumerate(rows, 1)
                if r['image'] == 'photo_00.png'][-1]
    rows[conflict - 1]['split'] = 'train'
    with open(s['sentences'], 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    rc, output = convert(tool, capsys, *coco_args(s, tmp_path / 'out2'))
    assert rc == 1
    assert f'sentences.jsonl:{conflict}: split ' in output
    assert 'one split only' in output
    assert not (tmp_path / 'out2').exists()


# --------------------------------------------------------------------------
# several objects or none: gRefCOCO's layout
# --------------------------------------------------------------------------
def test_several_or_no_objects_give_grefcoco_json(tool, capsys, tmp_path):
    s = write_coco_set(str(tmp_path / 'in'))
    rows = s['rows'] + [
        dict(image='photo_00.png', ann_id='1000;1001', sentence='both blocks'),
        dict(image='photo_01.png', ann_id=-1, sentence='the purple dog')]
    with open(s['sentences'], 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    n = len(rows)

    rc, output = convert(tool, capsys, *coco_args(s, tmp_path / 'refer'),
                         '--format', 'refer')
    assert rc == 1
    assert f'sentences.jsonl:{n - 1}: the sentence names 2 objects' in output
    assert f'sentences.jsonl:{n}: the sentence names no object' in output
    assert not (tmp_path / 'refer').exists()

    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, *coco_args(s, out))
    assert rc == 0, output
    assert not (out / 'custom' / 'refs(custom).p').exists()
    grefs = json.load(open(out / 'custom' / 'grefs(custom).json'))
    by_sent = {r['sentences'][0]['sent']: r for r in grefs}
    assert by_sent['both blocks']['ann_id'] == [1000, 1001]
    assert by_sent['both blocks']['category_id'] == [1, 2]
    assert by_sent['the purple dog']['ann_id'] == [-1]
    assert by_sent['the purple dog']['image_id'] == 101
    single = by_sent['the left block 1020 take 0']
    assert single['ann_id'] == [1020]
    assert len({(r['image_id'], r['split']) for r in grefs}) == 10

    # GRefCOCODataset reads the written set: the union for several objects,
    # zeros for none, every input sentence once
    from sera_mm.datasets import GRefCOCODataset
    from sera_mm.datasets.transforms import LoadReferringMask
    masks = dict(s['masks'], **{
        'both blocks': s['masks']['the left block 1000 take 0']
        | s['masks']['the right block 1001 take 0'],
        'the purple dog': np.zeros_like(s['masks']['the left block 1010 take 0'])})
    seen = {}
    for split in ('train', 'val', 'test'):
        ds = GRefCOCODataset(data_root=str(out), ann_file='custom/instances.json',
                             split_file='custom/grefs(custom).json', split=split,
                             data_prefix=dict(img_path='images/'), test_mode=True)
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            seen[info['text']] = (info['no_target'], info['num_targets'])
            np.testing.assert_array_equal(
                LoadReferringMask()(info)['gt_seg_map'], masks[info['text']],
                err_msg=info['text'])
    assert set(seen) == set(masks)
    assert seen['both blocks'] == (False, 2)
    assert seen['the purple dog'] == (True, 0)
    # the printed config names the dataset that reads the file
    assert "type='GRefCOCODataset'" in output
    assert "split_file='custom/grefs(custom).json'" in output
    assert "val_evaluator = test_evaluator = dict(type='GRefSegMetric')" in output


# --------------------------------------------------------------------------
# photos turned by EXIF, reruns, the config
# --------------------------------------------------------------------------
def test_a_photo_turned_by_exif_is_written_upright(tool, capsys, tmp_path):
    """LabelMe draws on the turned photo; the loaders read stored pixels, so
    the converter stores the photo turned."""
    import mmcv
    from PIL import Image, ImageOps

    from sera_mm.datasets.transforms.load_referring_mask import \
        LoadReferringMask
    folder = tmp_path / 'photos'
    folder.mkdir()
    src = str(folder / 'turned.jpg')
    # a smooth picture (JPEG keeps it), stored 40 x 30, upright 30 x 40
    y, x = np.mgrid[0:30, 0:40]
    stored = np.stack([x * 6, y * 8, np.full_like(x, 128)], -1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(src, exif=exif.tobytes(), quality=95)
    for k, name in enumerate(('a', 'b')):
        write_photo(str(folder / f'{name}.jpg'), 20, 20, seed=k)
    for name, (w, h) in (('turned', (30, 40)), ('a', (20, 20)),
                         ('b', (20, 20))):
        json.dump(dict(shapes=[dict(label=f'the thing in {name}',
                                    points=[[1, 1], [w - 1, 1], [w - 1, h - 1]],
                                    shape_type='polygon')],
                       imagePath=f'{name}.jpg', imageWidth=w, imageHeight=h),
                  open(folder / f'{name}.json', 'w'))
    out = tmp_path / 'out'
    rc, output = convert(tool, capsys, 'labelme', folder, '--out', out,
                         '--splits', 'train=1')
    assert rc == 0, output
    assert '1 photo(s) written upright' in output
    # read as the configs read images: BGR, EXIF orientation ignored
    written = mmcv.imread(str(out / 'images' / 'turned.jpg'),
                          flag='color_ignore_orientation')
    assert written.shape[:2] == (40, 30)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(src)))
    assert np.abs(written[..., ::-1].astype(int) - upright).mean() < 2
    info = next(i for i in load_split(out, 'train')
                if i['text'] == 'the thing in turned')
    results = dict(info, img=written, ori_shape=written.shape[:2])
    assert LoadReferringMask()(results)['gt_seg_map'].shape == (40, 30)


def test_a_rerun_writes_nothing_new_and_a_change_needs_force(tool, capsys,
                                                             tmp_path):
    s = write_labelme_set(str(tmp_path / 'photos'), num_photos=4)
    out = tmp_path / 'out'
    args = ['labelme', s['folder'], '--out', out]
    assert convert(tool, capsys, *args)[0] == 0
    refs = out / 'custom' / 'refs(custom).p'
    before = refs.stat().st_mtime_ns
    assert convert(tool, capsys, *args)[0] == 0
    assert refs.stat().st_mtime_ns == before
    rc, output = convert(tool, capsys, *args, '--seed', 5)
    assert rc == 1 and 'pass --force' in output
    assert refs.stat().st_mtime_ns == before
    assert convert(tool, capsys, *args, '--seed', 5, '--force')[0] == 0


def test_the_printed_config_builds_every_split(tool, capsys, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from sera_mm.registry import DATASETS
    s = write_labelme_set(str(tmp_path / 'photos'))
    out = tmp_path / 'out'
    config = tmp_path / 'configs' / 'mine.py'
    rc, output = convert(tool, capsys, 'labelme', s['folder'], '--out', out,
                         '--base-config', TINY_BASE, '--config-out', config)
    assert rc == 0, output
    text = config.read_text()
    assert len(text.splitlines()) == 5
    cfg = Config.fromfile(str(config))
    assert cfg.test_cfg.splits == ['val', 'test']
    with DefaultScope.overwrite_default_scope('sera_mm'):
        for loader, split in (('train_dataloader', 'train'),
                              ('val_dataloader', 'val'),
                              ('test_dataloader', 'test')):
            dataset = DATASETS.build(dict(cfg[loader].dataset, split=split))
            assert dataset.data_root == str(out) + '/'
            assert len(dataset) > 0
            assert dataset[0]['inputs'].shape[-2:] == (112, 112)


@pytest.mark.integration
def test_the_walkthrough_trains_and_tests(tool, capsys, tmp_path):
    """docs/en/custom_data.md on a small LabelMe set: convert, train the
    tiny model for one epoch, test it."""
    s = write_labelme_set(str(tmp_path / 'photos'), num_photos=12)
    out = tmp_path / 'myphotos'
    config = tmp_path / 'sera-tiny_myphotos.py'
    rc, output = convert(tool, capsys, 'labelme', s['folder'], '--out', out,
                         '--splits', 'train=0.75', 'val=0.25',
                         '--base-config', TINY_BASE, '--config-out', config)
    assert rc == 0, output
    work_dir = str(tmp_path / 'work')
    loaders = [f'{x}_dataloader.num_workers=0' for x in ('train', 'val', 'test')]
    loaders += [f'{x}_dataloader.persistent_workers=False'
                for x in ('train', 'val', 'test')]
    proc = run_tool('train.py', [str(config), '--work-dir', work_dir],
                    loaders + ['train_dataloader.batch_size=8',
                               'train_cfg.max_epochs=1'])
    assert proc.returncode == 0, explain(proc)
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)
    results = str(tmp_path / 'results')
    proc = run_tool('test.py', [str(config), checkpoint, '--work-dir',
                                work_dir, '--out', results], loaders)
    assert proc.returncode == 0, explain(proc)
    table = json.load(open(osp.join(results, 'test_results.json')))
    assert 'val' in json.dumps(table) and 'mIoU' in json.dumps(table)
    os.remove(checkpoint)


def test_too_few_images_for_the_splits(tool, capsys, tmp_path):
    s = write_labelme_set(str(tmp_path / 'photos'), num_photos=2)
    rc, output = convert(tool, capsys, 'labelme', s['folder'], '--out',
                         tmp_path / 'out')
    assert rc == 1
    assert "--splits: split(s) ['test'] get no image: 2 images cannot fill " \
        '3 splits' in output
    assert not (tmp_path / 'out').exists()
