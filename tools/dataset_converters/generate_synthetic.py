"""Writes the synthetic REFER or gRefCOCO set (see sera_mm/datasets/synthetic.py).

Examples::

    # the CPU demo set (both flavours share data/synthetic/images/)
    python tools/dataset_converters/generate_synthetic.py --out data/synthetic
    python tools/dataset_converters/generate_synthetic.py --out data/synthetic \
        --flavour no_position
    # gRefCOCO's layout (grefsyn/grefs(unc).json): sentences naming one
    # object, several or none, sharing the images
    python tools/dataset_converters/generate_synthetic.py --out data/synthetic \
        --format grefcoco
    # annotations only, RefCOCO's size, for the index-building benchmark
    python tools/dataset_converters/generate_synthetic.py \
        --out /tmp/refcoco_scale --refcoco-scale --no-images

Running it again with the same arguments does nothing; with other arguments
it refuses to touch an existing set unless --force.
"""
import argparse
import sys
import time

from sera_mm.datasets.synthetic import (DEFAULT_NUM_IMAGES, FLAVOURS,
                                        REF_FORMATS, REFCOCO_SCALE,
                                        REFCOCO_SENTENCE_WEIGHTS,
                                        generate_synthetic_refer)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='data/synthetic',
                   help='root of the set (data_root of the configs)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--flavour', choices=list(FLAVOURS), default='full',
                   help="'no_position' writes refsyn+/ without position words")
    for split in DEFAULT_NUM_IMAGES:
        p.add_argument(f'--num-{split}', type=int, default=None,
                       help=f'images of split {split} '
                            f'(default {DEFAULT_NUM_IMAGES[split]})')
    p.add_argument('--refcoco-scale', action='store_true',
                   help='RefCOCO-sized counts (~20k images, 50k refs, '
                        '142k sentences); combine with --no-images')
    p.add_argument('--min-size', type=int, default=96)
    p.add_argument('--max-size', type=int, default=192)
    p.add_argument('--format', choices=list(REF_FORMATS), default='refer',
                   help="'refer': refs(unc).p, one object per sentence; "
                        "'grefcoco': g<folder>/grefs(unc).json, sentences "
                        'naming one object, several or none')
    p.add_argument('--image-format', choices=['jpg', 'png'], default='jpg')
    p.add_argument('--no-images', action='store_true',
                   help='write annotations only')
    p.add_argument('--force', action='store_true',
                   help='replace a different set found in --out')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = dict(REFCOCO_SCALE if args.refcoco_scale else DEFAULT_NUM_IMAGES)
    for split in counts:
        value = getattr(args, f'num_{split}')
        if value is not None:
            counts[split] = value
    extra = dict(sentence_count_weights=REFCOCO_SENTENCE_WEIGHTS) \
        if args.refcoco_scale else {}
    start = time.time()
    try:
        result = generate_synthetic_refer(
            args.out, num_images=counts, seed=args.seed, flavour=args.flavour,
            image_size_range=(args.min_size, args.max_size),
            write_images=not args.no_images, image_format=args.image_format,
            force=args.force, progress=True, ref_format=args.format, **extra)
    except FileExistsError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    state = 'already there, nothing written' if result['skipped'] else \
        f'written in {time.time() - start:.1f} s'
    print(f"{args.out} ({args.flavour}, {args.format}): {state}")
    for split, c in result['counts'].items():
        gres = f"  (multi-target {c['multi']}, no target {c['no_target']})" \
            if 'multi' in c else ''
        print(f"  {split:6s} images {c['images']:6d}  refs {c['refs']:6d}  "
              f"sentences {c['sentences']:6d}{gres}")
    print(f"  data_root='{args.out}/', ann_file='{result['ann_file']}', "
          f"split_file='{result['split_file']}', "
          f"data_prefix=dict(img_path='{result['img_prefix']}')")
    return 0


if __name__ == '__main__':
    sys.exit(main())
