"""Bad inputs: each raises at construction, naming the file, key or id."""
import os
import pickle
import warnings

import pytest

from sera_mm.datasets import RefCOCODataset
from helpers.refer import (annotation, dataset_cfg, dict_refs_pickle, edit_first_ref, image_file,
                           instances_not_json, malicious_refs_pickle, remove_image,
                           set_segmentation, truncate_instances, write_refer)


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
    'missing image': (None, None, remove_image, {}, FileNotFoundError,
                      [image_file(1), 'Data preparation']),
    'truncated json': (None, None, truncate_instances, {}, ValueError,
                       ['instances.json', 'JSON']),
    'not json': (None, None, instances_not_json, {}, ValueError,
                 ['instances.json', 'JSON']),
    'unknown ann_id': (None, edit_first_ref(lambda r: r.update(ann_id=999)), None,
                       {}, ValueError, ['ref_id 11', 'ann_id 999',
                                        'instances.json']),
    'unknown image_id': (None, edit_first_ref(lambda r: r.update(image_id=77)),
                         None, {}, ValueError,
                         ['ref_id 11', 'image_id 77', 'instances.json']),
    'ann of another image': (None, edit_first_ref(lambda r: r.update(ann_id=201)),
                             None, {}, ValueError,
                             ['ref_id 11', 'ann_id 201', 'image_id 2']),
    'empty sentences': (None, edit_first_ref(lambda r: r.update(sentences=[])),
                        None, {}, ValueError, ['ref_id 11', 'sentences']),
    'sentence without sent': (
        None, edit_first_ref(lambda r: r['sentences'][0].pop('sent')), None, {},
        ValueError, ['ref_id 11', "'sent'"]),
    'ref without ann_id': (None, edit_first_ref(lambda r: r.pop('ann_id')), None,
                           {}, ValueError, ['refs(unc).p', "'ann_id'"]),
    'split not in file': (None, lambda refs: refs.pop(), None,
                          dict(split='test'), ValueError,
                          ["'test'", 'splits present', "'testA'", "'val'"]),
    'unknown split name': (None, None, None, dict(split='validation'),
                           ValueError, ["'validation'"]),
    'odd polygon': (set_segmentation(101, [[1, 2, 3, 4, 5, 6, 7]]), None, None, {},
                    ValueError, ['annotation 101', 'polygon 0',
                                 '7 coordinates']),
    'two-point polygon': (set_segmentation(102, [[1, 1, 5, 5, 5, 1], [1, 2, 3, 4]]),
                          None, None, {}, ValueError,
                          ['annotation 102', 'polygon 1', '4 coordinates']),
    'rle size': (None, None, None, dict(split='val'), None, None),  # below
    'malicious pickle': (None, None, malicious_refs_pickle, {}, pickle.UnpicklingError,
                         ['refs(unc).p']),
    'pickle of a dict': (None, None, dict_refs_pickle, {}, ValueError,
                         ['refs(unc).p', 'list']),
}


def _rle_size(inst):
    annotation(inst, 201)['segmentation']['size'] = [20, 16]


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


def test_empty_sentences_warn_once_listing_the_ids(tmp_path):
    """Empty sentences load (the model sees start and end tokens only) but
    one warning lists every (ref_id, sent_id)."""
    def edit(refs):
        refs[0]['sentences'][0]['sent'] = ''  # ref 11, sent 1000
        refs[1]['sentences'][1]['sent'] = '  '  # ref 12, sent 1004
    root = write_refer(str(tmp_path), edit_refs=edit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ds = RefCOCODataset(**dataset_cfg(root, split='train'))
    assert len(ds) == 2
    ours = [str(w.message) for w in caught if 'empty sentence' in str(w.message)]
    assert len(ours) == 1, ours
    for word in ('refs(unc).p', '2 empty', 'ref_id 11 sent_id 1000',
                 'ref_id 12 sent_id 1004'):
        assert word in ours[0], (word, ours[0])
