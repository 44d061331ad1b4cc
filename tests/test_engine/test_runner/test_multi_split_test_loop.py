"""MultiSplitTestLoop on a toy model whose per-sentence IoUs are known."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from sera_mm.engine.runner import (MultiSplitTestLoop, TABLE_JSON, TABLE_MD,
                                   dataloader_for_split, select_splits)
from sera_mm.registry import DATASETS, LOOPS

# (intersection, union) of each sentence, per split; a sentence's mask is a
# row of 4 pixels, the prediction covers the first `pred` of them.
# IoU = pred / 4 when the gt is the whole row; an empty gt with an empty
# prediction counts 1.0.
SPLITS = {
    'a': [dict(gt=4, pred=4), dict(gt=4, pred=2)],            # IoU 1, .5
    'b': [dict(gt=4, pred=0), dict(gt=4, pred=4), dict(gt=0, pred=0)],
}


def expected_row(split):
    inter = [min(s['gt'], s['pred']) for s in SPLITS[split]]
    union = [max(s['gt'], s['pred']) for s in SPLITS[split]]
    ious = [i / u if u else 1.0 for i, u in zip(inter, union)]
    return {
        'mIoU': 100 * sum(ious) / len(ious),
        'oIoU': 100 * sum(inter) / sum(union),
        **{f'Prec@{t}': 100 * sum(x > t for x in ious) / len(ious)
           for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    }


@DATASETS.register_module(name='ToySplitDataset', force=True)
class ToySplitDataset(BaseDataset):
    METAINFO = dict(classes=('background', 'object'))

    def __init__(self, split, **kwargs):
        self.split = split
        super().__init__(ann_file='', serialize_data=False, **kwargs)

    def load_data_list(self):
        if self.split not in SPLITS:
            raise ValueError(f'ToySplitDataset: no split {self.split!r}')
        return [dict(ref_id=100 * (ord(self.split) - 96) + i, sent_id=i,
                     **s) for i, s in enumerate(SPLITS[self.split])]

    def __getitem__(self, idx):
        info = self.get_data_info(idx)
        gt = torch.zeros(1, 2, 4, dtype=torch.uint8)
        gt[0, 0, :info['gt']] = 1
        pred = torch.zeros(1, 2, 4, dtype=torch.uint8)
        pred[0, 0, :info['pred']] = 1
        return dict(inputs=pred.float(), data_samples=dict(
            gt=gt, ref_id=info['ref_id'], sent_id=info['sent_id'],
            text=f'sentence {info["sent_id"]}', img_path=f'{self.split}.jpg'))


class PassThrough(BaseModel):
    """Predicts what the sample says (inputs is the prediction)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Linear(1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        # pseudo_collate made data_samples a dict of per-sample lists
        samples = [{k: v[i] for k, v in data_samples.items()}
                   for i in range(len(inputs))]
        return [dict(pred_sem_seg=dict(data=p.long()),
                     gt_sem_seg=dict(data=s['gt']),
                     ref_id=s['ref_id'], sent_id=s['sent_id'],
                     text=s['text'], img_path=s['img_path'])
                for p, s in zip(inputs, samples)]


class RecordHook(Hook):

    def __init__(self):
        self.calls = []

    def before_test(self, runner):
        self.calls.append('before_test')

    def before_test_epoch(self, runner):
        self.calls.append(('epoch', runner.test_dataloader.dataset.split))

    def after_test_epoch(self, runner, metrics=None):
        self.calls.append(('metrics', sorted(metrics)))

    def after_test(self, runner):
        self.calls.append('after_test')


def make_runner(work_dir, splits, metric=None, out_dir=None):
    metric = metric or dict(type='RefSegMetric')
    hook = RecordHook()
    loop = dict(type='MultiSplitTestLoop', out_dir=out_dir)
    if splits is not None:
        loop['splits'] = splits
    runner = Runner(
        model=PassThrough(),
        work_dir=str(work_dir),
        test_dataloader=dict(
            dataset=dict(type='ToySplitDataset', split='a'),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
            batch_size=2, num_workers=0),
        test_evaluator=metric,
        test_cfg=loop,
        custom_hooks=[hook],
        default_scope='sera_mm')
    return runner, hook


def test_every_split_in_one_run(tmp_path):
    runner, hook = make_runner(tmp_path, ['a', 'b'])
    metrics = runner.test()
    assert isinstance(runner.test_loop, MultiSplitTestLoop)
    for split in 'ab':
        for key, value in expected_row(split).items():
            assert metrics[f'{split}/{key}'] == pytest.approx(value, abs=1e-9)
    # hooks: one test, one epoch per split with that split's metrics
    assert hook.calls[0] == 'before_test' and hook.calls[-1] == 'after_test'
    assert [c[1] for c in hook.calls if c[0] == 'epoch'] == ['a', 'b']
    assert [c[1][0].split('/')[0] for c in hook.calls if c[0] == 'metrics'] \
        == ['a', 'b']

    with open(osp.join(tmp_path, TABLE_JSON)) as f:
        table = json.load(f)
    assert list(table['splits']) == ['a', 'b']
    for split in 'ab':
        row = table['splits'][split]
        assert row['sentences'] == len(SPLITS[split])
        for key, value in expected_row(split).items():
            assert row[key] == pytest.approx(value, abs=1e-9)
        # one records file per split, never overwritten by the other
        assert row['per_sentence'] == osp.join(str(tmp_path),
                                               f'per_sentence_{split}.jsonl')
        with open(row['per_sentence']) as f:
            records = [json.loads(line) for line in f]
        assert [r['ref_id'] for r in records] == \
            [100 * (ord(split) - 96) + i for i in range(len(SPLITS[split]))]
    with open(osp.join(tmp_path, TABLE_MD)) as f:
        md = f.read().splitlines()
    assert md[2] == '| a | 2 | 75.00 | 75.00 | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 |'
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def test_configured_prefix_and_output_name_get_the_split(tmp_path):
    out = tmp_path / 'out'
    runner, _ = make_runner(
        tmp_path, ['a', dict(name='b_again', split='b')],
        metric=dict(type='RefSegMetric', prefix='toy', output_name='r.jsonl'),
        out_dir=str(out))
    metrics = runner.test()
    assert metrics['toy/b_again/mIoU'] == pytest.approx(
        expected_row('b')['mIoU'])
    assert sorted(os.listdir(out)) == sorted(
        ['r_a.jsonl', 'r_b_again.jsonl', TABLE_JSON, TABLE_MD])


def test_a_bad_split_fails_before_the_model_runs(tmp_path):
    runner, hook = make_runner(tmp_path, ['a', 'nope'])
    with pytest.raises(ValueError, match="no split 'nope'"):
        runner.test()
    assert hook.calls == []


def test_the_splits_run_in_their_order(tmp_path):
    runner, hook = make_runner(tmp_path, ['b', 'a'])
    metrics = runner.test()
    assert [c[1] for c in hook.calls if c[0] == 'epoch'] == ['b', 'a']
    assert metrics['a/mIoU'] == pytest.approx(expected_row('a')['mIoU'])


def test_the_loop_requires_its_splits(tmp_path):
    """test_cfg.splits is the one setting of the splits: a loop without
    them is refused (it reads no other key of the config)."""
    runner, hook = make_runner(tmp_path, None)
    with pytest.raises(TypeError, match='splits'):
        runner.test()
    runner, hook = make_runner(tmp_path, [])
    with pytest.raises(ValueError, match='test_cfg.splits must be a non-empty list'):
        runner.test()
    assert hook.calls == []


def test_registered():
    assert LOOPS.get('MultiSplitTestLoop') is MultiSplitTestLoop


def test_select_splits_picks_named_entries():
    available = ['val', dict(name='plus_val', split='val', ann_file='x.json')]
    assert select_splits(available, ['plus_val', 'testA']) == [
        dict(name='plus_val', split='val', ann_file='x.json'), 'testA']
    assert select_splits(None, ['val']) == ['val']


def test_dataloader_for_split_changes_every_leaf_and_copies():
    loader = dict(batch_size=2, dataset=dict(type='ConcatDataset', datasets=[
        dict(type='A', split='val'), dict(type='B', split='val')]))
    new = dataloader_for_split(loader, 'x', dict(split='testA', ann_file='f'))
    assert [d['split'] for d in new['dataset']['datasets']] == ['testA'] * 2
    assert new['dataset']['datasets'][1]['ann_file'] == 'f'
    assert [d['split'] for d in loader['dataset']['datasets']] == ['val'] * 2
    with pytest.raises(ValueError, match='test_dataloader'):
        dataloader_for_split(dict(batch_size=1), 'x', dict(split='val'))
