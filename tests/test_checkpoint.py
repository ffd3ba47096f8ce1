import pickle

import pytest
import torch

from ganforge import checkpoint
from ganforge.errors import GanforgeError


def test_nested_state_round_trips(tmp_path):
    state = {"step": 7, "w": torch.arange(6.0).view(2, 3), "opt": {0: {"m": torch.ones(2)}},
             "betas": (0.5, 0.9), "none": None, "names": ["a", "b"], "flag": True}
    path = checkpoint.save(tmp_path / "c.safetensors", state)
    back = checkpoint.load(path)
    assert back["step"] == 7 and back["betas"] == (0.5, 0.9) and back["none"] is None
    assert back["names"] == ["a", "b"] and back["flag"] is True
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["opt"][0]["m"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_pickle_is_refused_without_being_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "final.safetensors"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(GanforgeError, match="not a ganforge checkpoint") as e:
        checkpoint.load(bad)
    assert "\n" not in str(e.value)
    assert not marker.exists()
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1)}, torch_file)
    with pytest.raises(GanforgeError, match="never loaded"):
        checkpoint.load(torch_file)


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "x.safetensors"
    save_file({"w": torch.ones(2)}, f)
    with pytest.raises(GanforgeError, match="without ganforge metadata"):
        checkpoint.load(f)
