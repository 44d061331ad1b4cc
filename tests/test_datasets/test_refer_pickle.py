"""The restricted unpickler of REFER split files."""
import pickle

import pytest

from sera_mm.datasets import load_refer_pickle


class _CreatesFile:
    """Unpickling this calls open(path, 'w'), which creates the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'pwned'
    payload = pickle.dumps([{'ref_id': 1, 'x': _CreatesFile(str(marker))}],
                           protocol=2)
    # The payload is real: plain pickle runs it.
    probe = tmp_path / 'probe'
    pickle.loads(pickle.dumps(_CreatesFile(str(probe)))).close()
    assert probe.exists()

    bad = tmp_path / 'refs(unc).p'
    bad.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_refer_pickle(str(bad))
    assert str(bad) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize('protocol', [0, 1, 2, 3, 4, 5])
def test_plain_refs_load_with_every_protocol(tmp_path, protocol):
    refs = [dict(ref_id=1, ann_id=2, image_id=3, split='train',
                 sentences=[dict(sent_id=4, sent='the red one', raw='The red one',
                                 tokens=['the', 'red', 'one'])],
                 sent_ids=[4], category_id=1, score=0.5, flag=True, none=None,
                 box=(1.0, 2.0))]
    path = tmp_path / 'refs.p'
    path.write_bytes(pickle.dumps(refs, protocol=protocol))
    assert load_refer_pickle(str(path)) == refs


def test_python2_byte_strings_load_as_str(tmp_path):
    # What Python 2 writes for [{'ref_id': 1, 'split': 'val'}] at protocol 2:
    # keys and values as SHORT_BINSTRING ('U'), no global referenced.
    data = (b'\x80\x02]q\x00}q\x01(U\x06ref_idq\x02K\x01U\x05splitq\x03'
            b'U\x03valq\x04ua.')
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(data)
    assert load_refer_pickle(str(path)) == [{'ref_id': 1, 'split': 'val'}]


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(pickle.dumps([{'a': 1}] * 10, protocol=2)[:-7])
    with pytest.raises(pickle.UnpicklingError, match='refs\\(unc\\).p'):
        load_refer_pickle(str(path))


def test_python2_utf8_byte_strings_decode_as_utf8(tmp_path):
    # Python 2's protocol-2 pickle of [{'sent': 'caf\xc3\xa9 na\xc3\xafve'}]
    # (a UTF-8 byte string): must load as 'café naïve', not latin-1 mojibake.
    data = (b'\x80\x02]q\x00}q\x01U\x04sentq\x02U\x0ccaf\xc3\xa9 na\xc3\xafveq\x03'
            b'sa.')
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(data)
    assert load_refer_pickle(str(path)) == [{'sent': 'café naïve'}]


def test_python2_non_utf8_byte_strings_fall_back_to_latin1(tmp_path):
    # One latin-1 string ('caf\xe9') and one UTF-8 string in the same file:
    # each string is decoded on its own, UTF-8 first.
    data = (b'\x80\x02]q\x00(}q\x01U\x04sentq\x02U\x04caf\xe9q\x03s}q\x04'
            b'U\x04sentq\x05U\x05\xc3\xa9t\xc3\xa9q\x06se.')
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(data)
    assert load_refer_pickle(str(path)) == [
        {'sent': 'café'}, {'sent': 'été'}]


def test_deeply_nested_python2_pickle_names_the_file(tmp_path):
    # 100000 nested lists around one latin-1 byte string: the per-string
    # decoding must not end in a bare RecursionError.
    depth = 100000
    data = b'\x80\x02' + b']' * depth + b'U\x01\xe9a' + b'a' * (depth - 1) + b'.'
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match='nested too deeply') as e:
        load_refer_pickle(str(path))
    assert str(path) in str(e.value)
