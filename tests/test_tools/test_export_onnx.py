"""tools/deployment/export_onnx.py and the ONNX Runtime backend of the
inference API: the exported graph gives PyTorch's logits, routing and masks."""
import os.path as osp

import numpy as np
import pytest
import torch

from helpers.tool_runner import load_tool
from sera_mm.apis import inference_referring, init_model, sample_routing

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

exporter = load_tool('deployment/export_onnx.py')
demo = load_tool('demo.py')

SERA_TINY = 'configs/synthetic/sera-tiny_synthetic.py'
DETRIS_TINY = 'configs/synthetic/detris-tiny_synthetic.py'
ATOL = 1e-4


def _random_checkpoint(config: str, path: str, seed: int = 0) -> str:
    """Saves the weights of ``config``'s model as its constructors draw them
    (no ``init_weights``: the zero-initialised expert branches would make
    the experts equal) and returns ``path``."""
    torch.manual_seed(seed)
    model = init_model(config, None)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def sera_export(tmp_path_factory):
    """A tiny SERA checkpoint with random weights and its export by the
    command line with ``--check`` (the documented commands)."""
    folder = tmp_path_factory.mktemp('onnx_sera')
    ckpt = _random_checkpoint(SERA_TINY, str(folder / 'sera.pth'))
    onnx_file = str(folder / 'sera.onnx')
    assert exporter.main([SERA_TINY, ckpt, onnx_file, '--check']) == 0
    return ckpt, onnx_file


def test_check_of_the_tiny_sera_export(sera_export):
    ckpt, onnx_file = sera_export
    model = init_model(SERA_TINY, ckpt)
    report = exporter.check(model, onnx_file)
    names = set(report['max_abs_diff'])
    assert 'mask_logits' in names
    assert {'routing.fusion.level0.weights', 'routing.backbone.adapters.1.weights'} <= names
    assert max(report['max_abs_diff'].values()) <= ATOL
    assert report['indices_equal'] and report['mask_pixels_differing'] == 0
    assert report['passed']


def test_onnx_backend_matches_pytorch_through_the_api(sera_export):
    ckpt, onnx_file = sera_export
    model = init_model(SERA_TINY, ckpt)
    onnx_model = init_model(SERA_TINY, onnx_file, backend='onnxruntime')
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (90, 130, 3), dtype=np.uint8),
              rng.integers(0, 256, (140, 70, 3), dtype=np.uint8)]
    sentences = ['the big blue square', 'a green triangle at the bottom right']
    # a list: one batched call, which the batch-1 graph answers sample by sample
    ours = inference_referring(model, images, sentences, return_routing=True)
    theirs = inference_referring(onnx_model, images, sentences, return_routing=True)
    for a, b, image in zip(ours, theirs, images):
        assert b.pred_sem_seg.data.shape[-2:] == image.shape[:2]
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert torch.allclose(a.seg_logits.data, b.seg_logits.data, atol=1e-3)
        assert a.routing.keys() == b.routing.keys()
        for level_a, level_b in zip(a.routing['fusion'], b.routing['fusion']):
            assert level_a['chosen'] == level_b['chosen']
            assert level_a['top_k'] == level_b['top_k'] == 2
            np.testing.assert_allclose(level_a['weights'], level_b['weights'], atol=ATOL)
        for block_a, block_b in zip(a.routing['adapter'], b.routing['adapter']):
            np.testing.assert_allclose(block_a['weights'], block_b['weights'], atol=ATOL)
    assert onnx_model.router_experts() == model.router_experts()


def test_exported_top_k_routing_follows_the_input(tmp_path):
    """The Top-k choice is computed in the graph, not frozen at the traced
    input: inputs whose PyTorch choices differ get the same choices in ONNX
    Runtime."""
    torch.manual_seed(1)
    model = init_model(SERA_TINY, None)
    router = model.neck.fusions[0].router
    with torch.no_grad():  # a router whose choice swings with the input
        router.fc2.weight.mul_(50.)
    onnx_file = str(tmp_path / 'swing.onnx')
    exporter.export(model, onnx_file, dynamic_batch=True)
    pairs = [(exporter.example_image((100 + 20 * i, 120), seed=10 + i), f'thing number {i}')
             for i in range(6)]
    image, tokens = exporter.model_inputs(model, pairs)
    wrapper = exporter.ExportableSegmentor(model).eval()
    with torch.no_grad():
        outputs = wrapper(image, tokens)
    expected = dict(zip(wrapper.output_names, outputs))
    onnx_model = init_model(model.cfg, onnx_file, backend='onnxruntime')
    got = onnx_model.session.run(['routing.fusion.level0.indices', 'mask_logits'],
                                 dict(image=image.numpy(), tokens=tokens.numpy()))
    want = expected['routing.fusion.level0.indices'].sort(1).values
    assert len({tuple(row) for row in want.tolist()}) > 1, 'the inputs should route apart'
    np.testing.assert_array_equal(np.sort(got[0], 1), want.numpy())
    np.testing.assert_allclose(got[1], expected['mask_logits'].numpy(), atol=ATOL, rtol=0)


def test_exported_dynamic_conv_is_the_heads_own_in_float64():
    torch.manual_seed(4)
    head = init_model(DETRIS_TINY, None).decode_head
    x = torch.randn(3, head.channels, 9, 13, dtype=torch.float64)
    sentence = torch.randn(3, head.kernel_proj.in_features, dtype=torch.float64)
    with torch.no_grad():
        want = head.double().dynamic_conv(x, sentence)
        with exporter.exported_dynamic_conv(head):
            got = head.dynamic_conv(x, sentence)
    assert got.dtype == torch.float32 and got.shape == (3, 1, 9, 13)
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)
    assert 'dynamic_conv' not in vars(head)  # the head's own method again


def test_tiny_detris_export_has_no_routing(tmp_path):
    torch.manual_seed(2)
    model = init_model(DETRIS_TINY, None)
    onnx_file = str(tmp_path / 'detris.onnx')
    assert exporter.export(model, onnx_file) == ['mask_logits']
    report = exporter.check(model, onnx_file)
    assert list(report['max_abs_diff']) == ['mask_logits']
    assert report['max_abs_diff']['mask_logits'] <= ATOL
    assert report['mask_pixels_differing'] == 0 and report['passed']
    onnx_model = init_model(DETRIS_TINY, onnx_file, backend='onnxruntime')
    assert onnx_model.router_experts() == {}
    image = exporter.example_image((80, 96), seed=5)
    result = inference_referring(onnx_model, image, 'the red one', return_routing=True)
    assert result.routing is None
    assert sample_routing(onnx_model, None) is None


def test_demo_writes_the_same_overlay_from_the_exported_file(sera_export, tmp_path):
    import cv2
    ckpt, onnx_file = sera_export
    image = str(tmp_path / 'photo.png')
    cv2.imwrite(image, exporter.example_image((150, 200), seed=7))
    outs = {}
    for backend, weights in (('pytorch', ckpt), ('onnxruntime', onnx_file)):
        outs[backend] = str(tmp_path / f'{backend}.png')
        assert demo.main([image, 'the red circle', SERA_TINY, weights, '--out', outs[backend],
                          '--backend', backend]) == 0
    ours, theirs = cv2.imread(outs['pytorch']), cv2.imread(outs['onnxruntime'])
    assert ours.shape[:2] == (150, 200)
    np.testing.assert_array_equal(ours, theirs)


def test_img_size_other_than_the_pipeline_is_refused(sera_export, tmp_path):
    ckpt, _ = sera_export
    with pytest.raises(SystemExit, match='--img-size 224: the test pipeline .* makes 112 x 112'):
        exporter.main([SERA_TINY, ckpt, str(tmp_path / 'x.onnx'), '--img-size', '224'])
    assert not osp.exists(tmp_path / 'x.onnx')


def test_backend_refuses_other_inputs(sera_export, tmp_path):
    ckpt, onnx_file = sera_export
    with pytest.raises(FileNotFoundError, match='ONNX model not found'):
        init_model(SERA_TINY, str(tmp_path / 'missing.onnx'), backend='onnxruntime')
    with pytest.raises(ValueError, match="backend must be 'pytorch' or 'onnxruntime'"):
        init_model(SERA_TINY, ckpt, backend='tensorrt')
    with pytest.raises(ValueError, match='cannot load ONNX model'):
        init_model(SERA_TINY, ckpt, backend='onnxruntime')  # a .pth is no ONNX file
    # the config says 224 x 224 inputs, the file takes 112 x 112
    onnx_model = init_model(SERA_TINY, onnx_file, backend='onnxruntime', cfg_options={
        'test_dataloader.dataset.pipeline.1.scale': 224})
    with pytest.raises(ValueError, match=r'takes \(112, 112\) images, the test pipeline '
                       r'made \(224, 224\)'):
        inference_referring(onnx_model, exporter.example_image((60, 60), 0), 'a')
    with pytest.raises(RuntimeError, match='an exported model only predicts'):
        onnx_model.loss(torch.zeros(1, 3, 112, 112), [])


def test_web_page_segmenter_serves_the_exported_file(sera_export, tmp_path):
    """tools/webui.py's request handler on the ONNX Runtime backend: the
    masks and routing of the checkpoint, several sentences per request."""
    import cv2
    from PIL import Image
    webui = load_tool('webui.py')
    ckpt, onnx_file = sera_export
    photo = str(tmp_path / 'photo.png')
    cv2.imwrite(photo, exporter.example_image((120, 180), seed=8))
    request = (photo, 'photo.png', 'the red circle\nthe square on the left')
    ours = webui.Segmenter(init_model(SERA_TINY, ckpt), str(tmp_path / 'pt'))(*request)
    theirs = webui.Segmenter(init_model(SERA_TINY, onnx_file, backend='onnxruntime'),
                             str(tmp_path / 'ort'))(*request)
    assert len(theirs['masks']) == 2 and theirs['size'] == (180, 120)
    for a, b in zip(ours['masks'], theirs['masks']):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    for a, b in zip(ours['routings'], theirs['routings']):
        assert [level['chosen'] for level in a['fusion']] == \
            [level['chosen'] for level in b['fusion']]
    assert webui.parse_args([SERA_TINY, onnx_file, '--backend', 'onnxruntime']).backend == \
        'onnxruntime'


def test_exporter_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match='error: checkpoint not found: .*nothing.pth'):
        exporter.main([SERA_TINY, str(tmp_path / 'nothing.pth'), str(tmp_path / 'x.onnx')])
    with pytest.raises(SystemExit, match='must end with .onnx'):
        exporter.main([SERA_TINY, str(tmp_path / 'nothing.pth'), str(tmp_path / 'x.pt')])


@pytest.mark.parametrize('bias, empty', [(8., True), (-8., False)])
def test_presence_head_is_exported_and_its_rule_applied_by_the_backend(tmp_path, bias, empty):
    """A model with a presence head exports ``no_target_logits``; the
    backend's predictions carry PyTorch's ``no_target_score`` and empty the
    masks by ``test_cfg.no_target_threshold`` as PyTorch does."""
    # mask threshold 0: every pixel is foreground unless the sample is "no target"
    options = {'model.presence_head': dict(type='PresenceHead', in_channels=128,
                                           text_channels=128, channels=16),
               'model.test_cfg.threshold': 0.}
    torch.manual_seed(5)
    model = init_model(DETRIS_TINY, None, cfg_options=options)
    with torch.no_grad():  # a probability near sigmoid(bias) for every input
        model.presence_head.mlp[-1].weight.mul_(0.01)
        model.presence_head.mlp[-1].bias.fill_(bias)
    onnx_file = str(tmp_path / 'gres.onnx')
    assert exporter.export(model, onnx_file) == ['mask_logits', 'no_target_logits']
    report = exporter.check(model, onnx_file)
    assert report['max_abs_diff']['no_target_logits'] <= ATOL and report['passed']
    onnx_model = init_model(model.cfg, onnx_file, backend='onnxruntime')
    image = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    ours = inference_referring(model, image, 'the big blue square')
    theirs = inference_referring(onnx_model, image, 'the big blue square')
    assert float(theirs.no_target_score) == pytest.approx(float(ours.no_target_score), abs=ATOL)
    assert (float(ours.no_target_score) > 0.5) == empty
    assert torch.equal(ours.pred_sem_seg.data, theirs.pred_sem_seg.data)
    assert bool(theirs.pred_sem_seg.data.any()) != empty
