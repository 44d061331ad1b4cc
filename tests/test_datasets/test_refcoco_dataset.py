"""RefCOCODataset on the hand-made REFER set."""
import collections
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sera_mm.datasets import RefCOCODataset
from sera_mm.registry import DATASETS

from helpers.refer import EXPECTED_COUNTS, IMAGES, dataset_cfg, image_file

REQUIRED_KEYS = {'img_path', 'ref_id', 'ann_id', 'image_id', 'sent_id', 'text',
                 'segmentation', 'height', 'width'}


@pytest.mark.parametrize('split', sorted(EXPECTED_COUNTS))
@pytest.mark.parametrize('test_mode', [False, True])
def test_sample_counts(refer_root, split, test_mode):
    ds = DATASETS.build(dict(type='RefCOCODataset', **dataset_cfg(
        refer_root, split=split, test_mode=test_mode)))
    assert isinstance(ds, RefCOCODataset)
    assert len(ds) == EXPECTED_COUNTS[split][int(test_mode)]


def test_test_mode_one_sample_per_sentence(refer_root, refer_tables):
    anns, refs = refer_tables
    ds = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                      test_mode=True))
    got = sorted((ds[i]['ref_id'], ds[i]['sent_id'], ds[i]['text'])
                 for i in range(len(ds)))
    want = sorted((r['ref_id'], s['sent_id'], s['sent'])
                  for r in refs.values() if r['split'] == 'train'
                  for s in r['sentences'])
    assert got == want
    sample = ds[0]
    assert REQUIRED_KEYS <= set(sample)
    ref = refs[sample['ref_id']]
    assert sample['ann_id'] == ref['ann_id']
    assert sample['image_id'] == ref['image_id']
    assert sample['segmentation'] == anns[ref['ann_id']]['segmentation']
    assert (sample['height'], sample['width']) == IMAGES[ref['image_id']]


def test_image_path_from_instances_not_ref_file_name(refer_root):
    ds = RefCOCODataset(**dataset_cfg(refer_root, split='val'))
    sample = ds[0]
    # REFER's ref file_name has an '_<ann_id>' suffix; the image is the
    # instances.json one.
    assert sample['img_path'] == os.path.join(
        refer_root, 'train2014', image_file(sample['image_id']))
    assert os.path.isfile(sample['img_path'])


def test_training_draws_the_sentence_anew_every_epoch(refer_root, refer_tables):
    _, refs = refer_tables
    ds = RefCOCODataset(**dataset_cfg(refer_root, split='train'))
    idx = [i for i in range(len(ds)) if ds[i]['ref_id'] == 11][0]
    draws = []
    for epoch in range(200):
        ds.set_epoch(epoch, seed=0)
        draws.append(ds[idx])
        # within an epoch (and seed) the draw is fixed
        assert ds[idx]['sent_id'] == draws[-1]['sent_id']
    assert REQUIRED_KEYS <= set(draws[0])
    assert 'sentences' not in draws[0]
    want = {(s['sent_id'], s['sent']) for s in refs[11]['sentences']}
    seen = collections.Counter((d['sent_id'], d['text']) for d in draws)
    # All three sentences appear (chance of missing one in 200 draws: ~1e-35)
    # and every drawn pair is a real (sent_id, sentence) of that referent.
    assert set(seen) == want
    # another seed, another sequence of draws
    other = []
    for epoch in range(200):
        ds.set_epoch(epoch, seed=1)
        other.append(ds[idx]['sent_id'])
    assert other != [d['sent_id'] for d in draws]


def _draws_through_loader(ds, epochs, **loader_kwargs):
    """(sent_id, the pipeline's random numbers) per ref_id, for each epoch of
    ``epochs``, fetched through one torch DataLoader."""
    loader = DataLoader(ds, batch_size=None, shuffle=False, **loader_kwargs)
    result = []
    for epoch in epochs:
        ds.set_epoch(epoch, seed=7)
        result.append({d['ref_id']: (d['sent_id'], d['pipeline_draw']) for d in loader})
    return result


class _RandomTransform:
    """A pipeline step drawing from the global generators, as random
    augmentations do."""

    def __call__(self, results):
        results['pipeline_draw'] = (random.random(), float(np.random.rand()),
                                    float(torch.rand(())))
        return results


def test_draws_do_not_depend_on_workers_or_their_persistence(refer_root):
    ds = RefCOCODataset(**dict(dataset_cfg(refer_root, split='train'),
                               pipeline=[_RandomTransform()]))
    persistent = _draws_through_loader(ds, range(3), num_workers=2, persistent_workers=True)
    fresh = _draws_through_loader(ds, range(3), num_workers=1)
    assert persistent == fresh
    # a resumed run starts its workers at epoch 2: same draws as the run
    # whose workers lived through epochs 0 and 1
    (resumed, ) = _draws_through_loader(ds, [2], num_workers=1, persistent_workers=True)
    assert resumed == persistent[2]
    # the sentences and the pipeline's random numbers change with the epoch
    assert persistent[0] != persistent[1]
    in_main = _draws_through_loader(ds, range(3), num_workers=0)
    assert [{k: v[0] for k, v in e.items()} for e in in_main] == \
        [{k: v[0] for k, v in e.items()} for e in persistent]


def test_shuffle_sentences_is_a_deterministic_permutation(refer_root):
    plain = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                         test_mode=True))
    a = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                     test_mode=True, shuffle_sentences=True))
    b = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                     test_mode=True, shuffle_sentences=True))
    orig = [(plain[i]['ref_id'], plain[i]['text']) for i in range(len(plain))]
    sh_a = [(a[i]['ref_id'], a[i]['text']) for i in range(len(a))]
    sh_b = [(b[i]['ref_id'], b[i]['text']) for i in range(len(b))]
    assert sh_a == sh_b
    assert sorted(t for _, t in sh_a) == sorted(t for _, t in orig)
    assert [r for r, _ in sh_a] == [r for r, _ in orig]  # referents stay
    # no fixed point: every sample got another sample's sentence
    assert all(a[i]['sent_id'] != plain[i]['sent_id'] for i in range(len(a)))
    c = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                     test_mode=True, shuffle_sentences=True,
                                     shuffle_seed=1))
    assert [c[i]['text'] for i in range(len(c))] != [t for _, t in sh_a]


def test_shuffle_sentences_in_training_moves_sentence_lists(refer_root,
                                                            refer_tables):
    _, refs = refer_tables
    ds = RefCOCODataset(**dataset_cfg(refer_root, split='train',
                                      shuffle_sentences=True))
    own = {r['ref_id']: {s['sent'] for s in r['sentences']}
           for r in refs.values()}
    for i in range(len(ds)):
        texts = set()
        for epoch in range(100):  # the draw changes from epoch to epoch
            ds.set_epoch(epoch)
            texts.add(ds[i]['text'])
        owners = [r for r, sents in own.items() if sents == texts]
        # the whole sentence list of one other referent moved here
        assert len(owners) == 1 and owners[0] != ds[i]['ref_id']


def test_check_images_once_and_switch(tmp_path):
    from helpers.refer import write_refer
    root = write_refer(str(tmp_path), write_images=False)
    with pytest.raises(FileNotFoundError) as e:
        RefCOCODataset(**dataset_cfg(root, split='train'))
    assert image_file(1) in str(e.value)
    assert "Data preparation" in str(e.value)
    ds = RefCOCODataset(**dataset_cfg(root, split='train',
                                      check_images=False))
    assert len(ds) == 2
