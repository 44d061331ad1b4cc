"""Bad inputs: each raises at construction, naming the file, key or id."""
import os
import pickle

import pytest

from sera_mm.datasets import RefCOCODataset

from .refer_fixture import dataset_cfg, image_file, write_refer


def _ann(inst, ann_id):
    return [a for a in inst['annotations'] if a['id'] == ann_id][0]


def _set_seg(ann_id, seg):
    def edit(inst):
        _ann(inst, ann_id)['segmentation'] = seg
    return edit


def _ref_edit(fn):
    def edit(refs):
        fn(refs[0])  # ref_id 11, ann 101, image 1, split train
    return edit


def _truncate(root):
    path = os.path.join(root, 'refcoco', 'instances.json')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def _not_json(root):
    open(os.path.join(root, 'refcoco', 'instances.json'), 'w').write(
        'images: none\n')


def _malicious(root):
    class Evil:
        def __reduce__(self):
            return (open, (os.path.join(root, 'pwned'), 'w'))
    with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump([Evil()], f, protocol=2)


def _dict_pickle(root):
    with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump({'refs': []}, f, protocol=2)


def _remove_image(root):
    os.remove(os.path.join(root, 'train2014', image_file(1)))


CASES = {
    # name: (instances edit, refs edit, file edit, cfg override, error, words)
    'missing data_root': (None, None, None, dict(data_root='@/nowhere'),
                          FileNotFoundError, ['nowhere', 'Data preparation']),
    'missing ann_file': (None, None, None,
                         dict(ann_file='refcoco/missing.json'),
                         FileNotFoundError,
                         ['refcoco/missing.json', 'Data preparation']),
    'missing split_file': (None, None, None,
                           dict(split_file='refcoco/refs(umd).p'),
                           FileNotFoundError,
                           ['refs(umd).p', 'Data preparation']),
    'missing image': (None, None, _remove_image, {}, FileNotFoundError,
                      [image_file(1), 'Data preparation']),
    'truncated json': (None, None, _truncate, {}, ValueError,
                       ['instances.json', 'JSON']),
    'not json': (None, None, _not_json, {}, ValueError,
                 ['instances.json', 'JSON']),
    'unknown ann_id': (None, _ref_edit(lambda r: r.update(ann_id=999)), None,
                       {}, ValueError, ['ref_id 11', 'ann_id 999',
                                        'instances.json']),
    'unknown image_id': (None, _ref_edit(lambda r: r.update(image_id=77)),
                         None, {}, ValueError,
                         ['ref_id 11', 'image_id 77', 'instances.json']),
    'ann of another image': (None, _ref_edit(lambda r: r.update(ann_id=201)),
                             None, {}, ValueError,
                             ['ref_id 11', 'ann_id 201', 'image_id 2']),
    'empty sentences': (None, _ref_edit(lambda r: r.update(sentences=[])),
                        None, {}, ValueError, ['ref_id 11', 'sentences']),
    'sentence without sent': (
        None, _ref_edit(lambda r: r['sentences'][0].pop('sent')), None, {},
        ValueError, ['ref_id 11', "'sent'"]),
    'ref without ann_id': (None, _ref_edit(lambda r: r.pop('ann_id')), None,
                           {}, ValueError, ['refs(unc).p', "'ann_id'"]),
    'split not in file': (None, lambda refs: refs.pop(), None,
                          dict(split='test'), ValueError,
                          ["'test'", 'splits present', "'testA'", "'val'"]),
    'unknown split name': (None, None, None, dict(split='validation'),
                           ValueError, ["'validation'"]),
    'odd polygon': (_set_seg(101, [[1, 2, 3, 4, 5, 6, 7]]), None, None, {},
                    ValueError, ['annotation 101', 'polygon 0',
                                 '7 coordinates']),
    'two-point polygon': (_set_seg(102, [[1, 1, 5, 5, 5, 1], [1, 2, 3, 4]]),
                          None, None, {}, ValueError,
                          ['annotation 102', 'polygon 1', '4 coordinates']),
    'rle size': (None, None, None, dict(split='val'), None, None),  # below
    'malicious pickle': (None, None, _malicious, {}, pickle.UnpicklingError,
                         ['refs(unc).p']),
    'pickle of a dict': (None, None, _dict_pickle, {}, ValueError,
                         ['refs(unc).p', 'list']),
}


def _rle_size(inst):
    _ann(inst, 201)['segmentation']['size'] = [20, 16]


CASES['rle size'] = (_rle_size, None, None, dict(split='val'), ValueError,
                     ['annotation 201', 'RLE size [20, 16]', '[24, 16]'])


@pytest.mark.parametrize('name', list(CASES))
def test_bad_input_raises_naming_the_culprit(tmp_path, name):
    edit_inst, edit_refs, edit_files, override, error, words = CASES[name]
    root = write_refer(str(tmp_path), edit_instances=edit_inst,
                       edit_refs=edit_refs)
    if edit_files:
        edit_files(root)
    if override.get('data_root', '').startswith('@'):
        override = dict(override, data_root=str(tmp_path / 'nowhere'))
    cfg = dataset_cfg(root, split='train')
    cfg.update(override)
    with pytest.raises(error) as e:
        RefCOCODataset(**cfg)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert not os.path.exists(os.path.join(root, 'pwned'))


def test_untouched_fixture_builds(tmp_path):
    """The control of the table: without an edit every split builds."""
    root = write_refer(str(tmp_path))
    for split in ('train', 'val', 'testA', 'testB', 'test'):
        assert len(RefCOCODataset(**dataset_cfg(root, split=split))) > 0
