"""A hand-made REFER set: every segmentation kind, every split.

Shared by the dataset, pipeline and bad-input tests; the fixtures
``refer_root`` and ``refer_tables`` are in tests/test_datasets/conftest.py.
The edits at the end break one thing each (for ``write_refer``'s
``edit_instances`` / ``edit_refs``, or applied to a written root).
"""
import json
import os
import pickle
from typing import Callable, Optional

import numpy as np

# image id -> (height, width)
IMAGES = {1: (20, 30), 2: (24, 16), 3: (18, 18), 4: (10, 12), 5: (16, 14)}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """Column-major run lengths, first run counting zeros (written by hand,
    independent of the generator's encoder)."""
    flat = list(mask.flatten(order='F'))
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return dict(size=list(mask.shape), counts=counts)


def _rect(h, w, r0, r1, c0, c1):
    m = np.zeros((h, w), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def annotation_table():
    from pycocotools import mask as mask_utils
    compressed = mask_utils.encode(np.asfortranarray(_rect(24, 16, 3, 10, 4, 12)))
    compressed['counts'] = compressed['counts'].decode('ascii')
    return [
        dict(id=101, image_id=1, category_id=1,
             segmentation=[[2, 2, 20, 2, 2, 15]]),
        dict(id=102, image_id=1, category_id=2,  # two parts
             segmentation=[[22, 2, 28, 2, 28, 8, 22, 8],
                           [22, 12, 28, 12, 25, 18]]),
        dict(id=103, image_id=1, category_id=3,  # never referred to
             segmentation=[[10, 10, 14, 10, 14, 14]]),
        dict(id=201, image_id=2, category_id=1, segmentation=compressed),
        dict(id=202, image_id=2, category_id=1,
             segmentation=_uncompressed_rle(_rect(24, 16, 12, 20, 2, 6))),
        dict(id=301, image_id=3, category_id=2,
             segmentation=[[3, 3, 15, 3, 15, 15, 3, 15]]),
        dict(id=401, image_id=4, category_id=3,
             segmentation=[[1, 1, 10, 1, 5, 8]]),
        dict(id=501, image_id=5, category_id=3,
             segmentation=[[2, 2, 12, 2, 12, 12]]),
    ]


_SENTS = {
    11: ['the left triangle', 'big triangle', 'thing on the left'],
    12: ['two pieces on the right', 'the right one'],
    21: ['upper box', 'box at the top'],
    22: ['lower box'],
    31: ['the square'],
    41: ['a triangle', 'the small triangle', 'triangle in the middle'],
    51: ['the last one', 'final triangle'],
}
_REFS = [(11, 101, 1, 'train'), (12, 102, 1, 'train'), (21, 201, 2, 'val'),
         (22, 202, 2, 'val'), (31, 301, 3, 'testA'), (41, 401, 4, 'testB'),
         (51, 501, 5, 'test')]

#: samples per split: (training mode, test mode)
EXPECTED_COUNTS = dict(train=(2, 5), val=(2, 3), testA=(1, 1), testB=(1, 3),
                       test=(1, 2))


def ref_table():
    refs, sent_id = [], 1000
    for ref_id, ann_id, image_id, split in _REFS:
        sentences = []
        for s in _SENTS[ref_id]:
            sentences.append(dict(sent_id=sent_id, sent=s, raw=s.capitalize(),
                                  tokens=s.split()))
            sent_id += 1
        refs.append(dict(
            ref_id=ref_id, ann_id=ann_id, image_id=image_id, split=split,
            sentences=sentences, sent_ids=[x['sent_id'] for x in sentences],
            category_id=1,
            # REFER's suffix: not an existing file.
            file_name=f'COCO_train2014_{image_id:012d}_{ann_id}.jpg'))
    return refs


def image_file(image_id: int) -> str:
    return f'COCO_train2014_{image_id:012d}.jpg'


def write_refer(root: str,
                edit_instances: Optional[Callable[[dict], None]] = None,
                edit_refs: Optional[Callable[[list], None]] = None,
                write_images: bool = True) -> str:
    """Writes the hand-made set into ``root`` in mmdetection's RefCOCO layout
    (``train2014/``, ``refcoco/instances.json``, ``refcoco/refs(unc).p``),
    after applying the optional edits. Returns ``root``."""
    from PIL import Image
    os.makedirs(os.path.join(root, 'refcoco'), exist_ok=True)
    os.makedirs(os.path.join(root, 'train2014'), exist_ok=True)
    instances = dict(
        images=[dict(id=i, file_name=image_file(i), height=h, width=w)
                for i, (h, w) in IMAGES.items()],
        annotations=annotation_table(),
        categories=[dict(id=i, name=f'c{i}') for i in (1, 2, 3)])
    refs = ref_table()
    if edit_instances:
        edit_instances(instances)
    if edit_refs:
        edit_refs(refs)
    with open(os.path.join(root, 'refcoco', 'instances.json'), 'w') as f:
        json.dump(instances, f)
    with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    if write_images:
        rng = np.random.default_rng(0)
        for i, (h, w) in IMAGES.items():
            img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(
                os.path.join(root, 'train2014', image_file(i)))
    return root


def dataset_cfg(root: str, **kwargs) -> dict:
    """Constructor arguments of RefCOCODataset for the hand-made set."""
    cfg = dict(data_root=root,
               ann_file='refcoco/instances.json',
               split_file='refcoco/refs(unc).p',
               data_prefix=dict(img_path='train2014/'), pipeline=[])
    cfg.update(kwargs)
    return cfg


# Edits of the hand-made set, one fault each.
def annotation(inst, ann_id):
    return [a for a in inst['annotations'] if a['id'] == ann_id][0]


def set_segmentation(ann_id, seg):
    def edit(inst):
        annotation(inst, ann_id)['segmentation'] = seg
    return edit


def edit_first_ref(fn):
    def edit(refs):
        fn(refs[0])  # ref_id 11, ann 101, image 1, split train
    return edit


def truncate_instances(root):
    path = os.path.join(root, 'refcoco', 'instances.json')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def instances_not_json(root):
    open(os.path.join(root, 'refcoco', 'instances.json'), 'w').write(
        'images: none\n')


def malicious_refs_pickle(root):
    class Evil:
        def __reduce__(self):
            return (open, (os.path.join(root, 'pwned'), 'w'))
    with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump([Evil()], f, protocol=2)


def dict_refs_pickle(root):
    with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump({'refs': []}, f, protocol=2)


def remove_image(root):
    os.remove(os.path.join(root, 'train2014', image_file(1)))


def deep_instances_json(depth: int = 100000):
    """An edit of a written root: instances.json gains a key whose value is
    a list nested ``depth`` deep (json.dump itself cannot write it)."""
    def edit(root):
        path = os.path.join(root, 'refcoco', 'instances.json')
        text = open(path).read()
        assert text.endswith('}')
        open(path, 'w').write(
            text[:-1] + ', "deep": ' + '[' * depth + ']' * depth + '}')
    return edit


def deep_refs_pickle(field: str, depth: int = 100000):
    """An edit of a written root: ref 11's ``field`` becomes a list nested
    ``depth`` deep, spliced into the pickle's opcodes (pickle.dump itself
    cannot write it)."""
    import struct

    def edit(root):
        refs = ref_table()
        marker = 987654321
        refs[0][field] = marker
        data = pickle.dumps(refs, protocol=2)
        binint = b'J' + struct.pack('<i', marker)
        assert data.count(binint) == 1
        # EMPTY_LIST opcodes, then APPENDs: each puts a list into the one below
        deep = b']' * depth + b'a' * (depth - 1)
        with open(os.path.join(root, 'refcoco', 'refs(unc).p'), 'wb') as f:
            f.write(data.replace(binint, deep))
    return edit
