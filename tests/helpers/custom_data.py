"""Small labelled photo sets as users bring them, for the custom-data tools.

``write_coco_set`` writes a COCO instances file (masks as polygons and as
RLE), the photos and a sentences file (JSON Lines or CSV);
``write_labelme_set`` writes a LabelMe folder (polygons, a rectangle, a
two-part object sharing a group_id, sentences in labels and descriptions).
Both return what the written set should give: for every sentence the mask
its object has, computed here from the input and not by the converter.
``plant`` breaks the set in the ways issue #25 lists, one per location, and
the result names the locations the converter must report.
"""
import csv
import json
import os
import os.path as osp
from typing import Dict, List

import numpy as np

#: photo sizes (width, height) of the COCO set
COCO_SIZES = [(40, 30), (36, 44), (50, 32), (30, 30), (44, 38), (38, 26),
              (32, 48), (46, 34), (34, 40), (42, 36)]


def write_photo(path: str, width: int, height: int, seed: int,
                exif_orientation: int = 1) -> np.ndarray:
    """Writes a noise photo (PNG or JPEG by extension); returns its stored
    RGB pixels (height x width x 3)."""
    from PIL import Image
    os.makedirs(osp.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(
        0, 256, size=(height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    kwargs = {}
    if exif_orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs['exif'] = exif.tobytes()
    if path.lower().endswith(('.jpg', '.jpeg')):
        kwargs['quality'] = 95
    img.save(path, **kwargs)
    return pixels


def rect_mask(height: int, width: int, x0: int, y0: int, x1: int,
              y1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def decode(seg, height: int, width: int) -> np.ndarray:
    """pycocotools' decoding of a COCO segmentation of the input."""
    from pycocotools import mask as mask_utils
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    else:
        rle = dict(seg, counts=seg['counts'].encode('ascii'))
    return mask_utils.decode(rle)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask))
    return dict(size=list(mask.shape), counts=rle['counts'].decode('ascii'))


def write_coco_set(root: str, fmt: str = 'jsonl', plant: bool = False) -> dict:
    """Writes ``root/export/{instances.json, images/}`` and
    ``root/sentences.<fmt>``; returns the paths, ``masks`` {sentence: mask}
    and ``images`` {sentence: stored pixels}, and with ``plant`` the
    ``planted`` {what: (location, words the message must hold)}."""
    images_dir = osp.join(root, 'export', 'images')
    images, annotations, rows = [], [], []
    masks: Dict[str, np.ndarray] = {}
    pixels: Dict[str, np.ndarray] = {}
    for k, (w, h) in enumerate(COCO_SIZES):
        image_id = 100 + k
        name = f'photo_{k:02d}.png'
        stored = write_photo(osp.join(images_dir, name), w, h, seed=k)
        images.append(dict(id=image_id, file_name=name, width=w, height=h))
        for j, (x0, y0, x1, y1) in enumerate(
                [(2, 2, w // 2, h // 2), (w // 2 + 2, h // 3, w - 3, h - 2)]):
            ann_id = image_id * 10 + j
            mask = rect_mask(h, w, x0, y0, x1, y1)
            # the first object as a polygon, the second as RLE
            seg = [[x0, y0, x1, y0, x1, y1, x0, y1]] if j == 0 else _rle(mask)
            annotations.append(dict(id=ann_id, image_id=image_id,
                                    category_id=j + 1, segmentation=seg,
                                    bbox=[x0, y0, x1 - x0, y1 - y0],
                                    iscrowd=0, area=int(mask.sum())))
            for s in range(1 + (k + j) % 2):
                text = f'the {"left" if j == 0 else "right"} block {ann_id} ' \
                       f'take {s}'
                rows.append(dict(image=name, ann_id=ann_id, sentence=text))
                masks[text] = decode(seg, h, w)
                pixels[text] = stored
    # an image with no sentence: left out of the written set
    write_photo(osp.join(images_dir, 'unused.png'), 20, 20, seed=99)
    images.append(dict(id=999, file_name='unused.png', width=20, height=20))
    instances = dict(images=images, annotations=annotations,
                     categories=[dict(id=1, name='left'),
                                 dict(id=2, name='right')])
    planted = {}
    lines: List[str] = []
    if plant:
        rows.append(dict(image='photo_01.png', ann_id=99999,
                         sentence='a block that is not there'))
        planted['annotation id that does not exist'] = (
            f'sentences.{fmt}:{len(rows) + 1 if fmt == "csv" else len(rows)}',
            ['99999', 'does not exist'])
        rows.append(dict(image='photo_02.png', ann_id='',
                         sentence='a sentence with no annotation'))
        planted['sentence with no annotation'] = (
            f'sentences.{fmt}:{len(rows) + 1 if fmt == "csv" else len(rows)}',
            ['no annotation'])
        annotations[6]['segmentation'] = [[2, 2, 300, 2, 300, 20, 2, 20]]
        planted['polygon outside its image'] = (
            f'annotation id {annotations[6]["id"]}', ['outside'])
        os.remove(osp.join(images_dir, 'photo_05.png'))
        planted['image file missing'] = ('image id 105', ['photo_05.png',
                                                          'not found'])
        rows.append(dict(image='photo_04.png', ann_id=88888, split='dev',
                         sentence='two problems on one line'))
        where = f'sentences.{fmt}:{len(rows) + 1 if fmt == "csv" else len(rows)}'
        planted['unknown split'] = (where, ["split 'dev'"])
        planted['second annotation that does not exist'] = (
            where, ['88888', 'does not exist'])
        rows.append(dict(image='photo_03.png', ann_id=1000,
                         sentence='the left block of another photo'))
        planted['annotation of another image'] = (
            f'sentences.{fmt}:{len(rows) + 1 if fmt == "csv" else len(rows)}',
            ['1000', 'belongs to image 100'])
        if fmt == 'jsonl':
            lines.append('{"image": "photo_04.png", "ann_id": 1040, ')
            planted['line that is not JSON'] = (
                f'sentences.jsonl:{len(rows) + 1}', ['not a JSON object'])
    os.makedirs(osp.join(root, 'export'), exist_ok=True)
    with open(osp.join(root, 'export', 'instances.json'), 'w') as f:
        json.dump(instances, f)
    sentences = osp.join(root, f'sentences.{fmt}')
    with open(sentences, 'w', newline='') as f:
        if fmt == 'csv':
            writer = csv.DictWriter(f, fieldnames=['image', 'ann_id',
                                                   'sentence', 'split'])
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                f.write(json.dumps(row) + '\n')
            for line in lines:
                f.write(line + '\n')
    return dict(instances=osp.join(root, 'export', 'instances.json'),
                images=images_dir, sentences=sentences, masks=masks,
                pixels=pixels, planted=planted, rows=rows)


def write_labelme_set(folder: str, plant: bool = False,
                      num_photos: int = 8) -> dict:
    """Writes a LabelMe folder (photos in it and in a subfolder); returns
    ``masks`` {sentence: mask}, ``sizes`` {sentence: (h, w)} and, with
    ``plant``, ``planted`` {what: (location, words)}."""
    masks: Dict[str, np.ndarray] = {}
    sizes = {}
    planted = {}
    for k in range(num_photos):
        w, h = 36 + 2 * k, 28 + 3 * (k % 4)
        sub = 'day2' if k % 3 == 2 else ''
        image_name = f'IMG_{k:03d}.jpg'
        write_photo(osp.join(folder, sub, image_name), w, h, seed=50 + k)
        cat = [[3.0, 3.0], [w / 2, 3.0], [w / 3, h - 4.0]]
        box = [[w / 2 + 2, h / 2], [w - 2.0, h - 2.0]]
        part_a = [[2.0, h - 8.0], [8.0, h - 8.0], [8.0, h - 2.0], [2.0, h - 2.0]]
        part_b = [[w - 8.0, 2.0], [w - 2.0, 2.0], [w - 2.0, 8.0]]
        shapes = [
            dict(label='cat', points=cat, shape_type='polygon', group_id=None,
                 description=f'the grey cat {k}\nthe cat lying down {k}',
                 flags={}),
            dict(label=f'the box on the right {k}', points=box,
                 shape_type='rectangle', group_id=None, description='',
                 flags={}),
            dict(label='fence', points=part_a, shape_type='polygon',
                 group_id=1, description=f'the broken fence {k}', flags={}),
            dict(label='fence', points=part_b, shape_type='polygon',
                 group_id=1, description='', flags={}),
        ]
        cat_poly = [v for p in cat for v in p]
        (x0, y0), (x1, y1) = box
        box_poly = [x0, y0, x1, y0, x1, y1, x0, y1]
        fence = [[v for p in part_a for v in p], [v for p in part_b for v in p]]
        for text, seg in ((f'the grey cat {k}', [cat_poly]),
                          (f'the cat lying down {k}', [cat_poly]),
                          (f'the box on the right {k}', [box_poly]),
                          (f'the broken fence {k}', fence)):
            masks[text] = decode(seg, h, w)
            sizes[text] = (h, w)
        doc = dict(version='5.4.1', flags={}, shapes=shapes,
                   imagePath=image_name, imageData=None, imageHeight=h,
                   imageWidth=w)
        json_path = osp.join(folder, sub, f'IMG_{k:03d}.json')
        if plant and k == 1:
            doc['shapes'][0]['points'] = [[3.0, 3.0], [w + 40.0, 3.0],
                                          [w / 3, h - 4.0]]
            planted['polygon outside its image'] = (f'{json_path}: shape 0',
                                                    ['outside'])
        if plant and k == 3:
            doc['shapes'].append(dict(label='', points=cat,
                                      shape_type='polygon', group_id=None,
                                      description='', flags={}))
            planted['shape without a sentence'] = (f'{json_path}: shape 4',
                                                   ['no sentence'])
            doc['shapes'].append(dict(label='a line', points=cat[:2],
                                      shape_type='line', group_id=None,
                                      description='', flags={}))
            planted['shape that is not a region'] = (f'{json_path}: shape 5',
                                                     ["'line'"])
        if plant and k == 4:
            doc['imagePath'] = 'IMG_missing.jpg'
            planted['image file missing'] = (json_path, ['IMG_missing.jpg',
                                                         'not found'])
        if plant and k == 6:
            doc['imageWidth'] = w + 10
            planted['photo of another size'] = (json_path, [f'{w} x {h}'])
        with open(json_path, 'w') as f:
            json.dump(doc, f)
        if plant and k == 7:
            with open(json_path, 'w') as f:
                f.write(json.dumps(doc)[:60])
            planted['truncated LabelMe file'] = (json_path,
                                                 ['not valid JSON'])
    return dict(folder=folder, masks=masks, sizes=sizes, planted=planted)
