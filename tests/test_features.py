"""Feature networks: the FeatureNet interface, the FID Inception-v3 and the LeNet classifiers."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import shared_files
from torch import nn

from ganforge.data.idx import read_idx_pair
from ganforge.data.mnist import mnist_sample
from ganforge.errors import DataError, GanforgeError
from ganforge.features import FEATURES, FeatureNet, get_feature_net
from ganforge.features import inception_weights as inception
from ganforge.features.inception import FIDInceptionV3, inception_net, prepare_inception_input
from ganforge.features.inception_weights import (
    ENV_VAR,
    WEIGHTS_FILE,
    WEIGHTS_SHA256,
    converted_path,
    load_inception,
)
from ganforge.features.lenet import (
    LeNet,
    accuracy,
    classifier_path,
    hold_out,
    lenet_net,
    load_classifier,
    random_shift,
    train_classifier,
)

MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# --- the common interface -------------------------------------------------------------------

class _Tiny(nn.Module):
    """Features = the mean of each channel, logits = features times 2: easy to check by hand."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return 2 * f


def _tiny_net(batch_size: int = 3) -> FeatureNet:
    return FeatureNet("tiny", _Tiny(), dim=2, num_classes=2, prepare=lambda x: x,
                      batch_size=batch_size)


def test_feature_net_batches_and_checks_its_input() -> None:
    net = _tiny_net(batch_size=3)
    x = torch.rand(7, 2, 4, 4)  # 7 = two full batches and a partial one
    before = x.clone()
    f, logits = net.features_and_logits(x)
    assert f.shape == (7, 2) and logits.shape == (7, 2)
    assert f.dtype == torch.float32 and f.device.type == "cpu"
    torch.testing.assert_close(f, x.mean(dim=(2, 3)))
    torch.testing.assert_close(net.logits(x), 2 * x.mean(dim=(2, 3)))
    assert torch.equal(x, before)  # the caller's images are never modified

    as_bytes = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(net.features(as_bytes), as_bytes.float().div(255).mean(dim=(2, 3)))
    assert net.features(torch.rand(0, 2, 4, 4)).shape == (0, 2)

    with pytest.raises(GanforgeError, match=r"\[0, 1\]") as err:
        net.features(x * 2 - 1)  # generator outputs not mapped from [-1, 1]
    assert "(x + 1) / 2" in _one_line(err)
    with pytest.raises(GanforgeError, match="N, C, H, W"):
        net.features(torch.rand(2, 4, 4))
    with pytest.raises(GanforgeError, match="batch_size"):
        _tiny_net(batch_size=0)


def test_registry_names_and_unknown_name() -> None:
    assert set(FEATURES.names()) == {"inception", "lenet-mnist", "lenet-fashion"}
    with pytest.raises(GanforgeError, match="unknown feature network 'vgg'.*inception"):
        get_feature_net("vgg")


# --- FID Inception-v3 -----------------------------------------------------------------------

def _random_inception(seed: int = 0, logits_bias: bool = False) -> FIDInceptionV3:
    """Random weights scaled so activations neither vanish nor explode over ~90 layers."""
    g = torch.Generator().manual_seed(seed)
    model = FIDInceptionV3(logits_bias=logits_bias)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2, generator=g)
                m.bias.uniform_(-0.1, 0.1, generator=g)
                m.running_mean.uniform_(-0.1, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
        model.fc.weight.normal_(0.0, 0.02, generator=g)
        model.fc.bias.uniform_(-1.0, 1.0, generator=g)
    return model.eval()


def test_inception_parameter_count() -> None:
    # torchvision's Inception3 without the auxiliary classifier and with 1000 classes has
    # 23,834,568 parameters; the FID graph's blocks have the same weights (their changes are
    # all in parameter-free pooling) and only the classifier is wider: 1008 instead of 1000
    # outputs add 8 * 2048 weights + 8 biases = 16,392, giving 23,850,960.
    model = FIDInceptionV3()
    assert sum(p.numel() for p in model.parameters()) == 23_834_568 + 8 * 2048 + 8
    assert sum(p.numel() for p in model.parameters()) == 23_850_960
    assert tuple(model.fc.weight.shape) == (1008, 2048)
    names = set(model.state_dict())
    # names of pytorch-fid's weight file, so that its state dict maps one to one
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_var",
                "Mixed_5b.branch1x1.conv.weight", "Mixed_6e.branch7x7dbl_5.bn.bias",
                "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight", "fc.bias"):
        assert key in names
    assert not any(k.startswith("AuxLogits") for k in names)


def test_prepare_inception_input() -> None:
    x = torch.stack([torch.zeros(1, 28, 28), torch.ones(1, 28, 28)])
    y = prepare_inception_input(x)
    assert y.shape == (2, 3, 299, 299)
    assert torch.all(y[0] == -1) and torch.all(y[1] == 1)
    rgb = torch.rand(1, 3, 299, 299)
    torch.testing.assert_close(prepare_inception_input(rgb), rgb * 2 - 1)  # no resize at 299
    with pytest.raises(GanforgeError, match="channels"):
        prepare_inception_input(torch.rand(1, 2, 28, 28))


def test_inception_shapes_and_grey_input() -> None:
    model = _random_inception()
    net = inception_net(model, batch_size=2)
    assert (net.dim, net.num_classes, net.name) == (2048, 1008, "inception")

    f, logits = net.features_and_logits(torch.rand(3, 3, 299, 299))
    assert f.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(f).all() and f.abs().max() > 1e-3  # the random net is alive
    # default logits are pool_3 @ W without the bias, the Inception Score's convention
    torch.testing.assert_close(logits, f @ model.fc.weight.t(), rtol=1e-4, atol=1e-4)

    grey = torch.rand(2, 1, 28, 28)
    f_grey = net.features(grey)
    assert f_grey.shape == (2, 2048) and net.logits(grey).shape == (2, 1008)
    torch.testing.assert_close(f_grey, net.features(grey.repeat(1, 3, 1, 1)))

    biased = inception_net(_random_inception(logits_bias=True), batch_size=2)
    torch.testing.assert_close(biased.logits(grey), net.logits(grey) + model.fc.bias,
                               rtol=1e-4, atol=1e-4)


def _trust(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``path`` the file whose digest the loader expects (tests have no real weights)."""
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def _save_pth(tmp_path: Path, state: dict[str, torch.Tensor],
              monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / WEIGHTS_FILE
    torch.save(state, path)
    return _trust(path, monkeypatch)


def test_inception_pth_converted_once_to_safetensors(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    pth = _save_pth(tmp_path, _random_inception(seed=1).state_dict(), monkeypatch)
    images = torch.rand(2, 1, 28, 28)

    first = load_inception(pth, batch_size=2)
    assert converted_path().is_file()
    expected = first.features(images)

    fresh = load_inception(converted_path(), batch_size=2)
    assert fresh.info["weights"] == str(converted_path())
    assert torch.equal(fresh.features(images), expected)

    # with nothing configured, the earlier conversion is used
    assert torch.equal(load_inception(batch_size=2).features(images), expected)

    # the same .pth again: read from the conversion, not unpickled a second time
    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load called again")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setenv(ENV_VAR, str(pth))
    via_env = get_feature_net("inception", batch_size=2)
    assert torch.equal(via_env.features(images), expected)


def test_inception_legacy_file_without_batch_counters(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = {k: v for k, v in _random_inception(seed=2).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    net = load_inception(_save_pth(tmp_path, state, monkeypatch))
    assert torch.equal(net.module.fc.weight, state["fc.weight"])


def test_inception_refuses_wrong_state_dicts(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the checks behind the digest: each file here is made the "expected" one first
    state = _random_inception().state_dict()

    missing = dict(state)
    del missing["Mixed_6b.branch7x7_2.conv.weight"]
    with pytest.raises(GanforgeError, match="missing") as err:
        load_inception(_save_pth(tmp_path, missing, monkeypatch))
    assert "Mixed_6b.branch7x7_2.conv.weight" in _one_line(err)
    assert not converted_path().exists()  # a refused file is never cached

    imagenet_head = dict(state)  # torchvision's ImageNet model has 1000 classes, not 1008
    imagenet_head["fc.weight"] = torch.zeros(1000, 2048)
    imagenet_head["fc.bias"] = torch.zeros(1000)
    with pytest.raises(GanforgeError, match="wrong shape") as err:
        load_inception(_save_pth(tmp_path, imagenet_head, monkeypatch))
    assert "fc.weight" in _one_line(err)

    extra = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
    with pytest.raises(GanforgeError, match="unexpected.*AuxLogits"):
        load_inception(_save_pth(tmp_path, extra, monkeypatch))

    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(GanforgeError, match="state dict"):
        load_inception(_trust(not_a_state_dict, monkeypatch))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(GanforgeError, match="cannot read") as err:
        load_inception(_trust(garbage, monkeypatch))
    _one_line(err)


def test_inception_without_weights_says_where_to_get_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(GanforgeError) as err:
        get_feature_net("inception")
    text = _one_line(err)
    assert ENV_VAR in text and WEIGHTS_FILE in text and "pytorch-fid" in text

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere.pth"))
    with pytest.raises(GanforgeError, match=f"nowhere.pth.*{ENV_VAR}.*not found") as err:
        load_inception()
    _one_line(err)


def test_the_expected_digest_is_pytorch_fids_file() -> None:
    # torch.hub names files NAME-<first 8 hex digits of the sha256>.pth, so the published
    # name pins the start of the digest; the full digest is the one torch-fidelity and others pin
    assert WEIGHTS_FILE.endswith(f"-{WEIGHTS_SHA256[:8]}.pth") and len(WEIGHTS_SHA256) == 64
    int(WEIGHTS_SHA256, 16)


def test_inception_refuses_any_other_file_before_unpickling_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    # a well-formed FID state dict, but not the published file: refused on its digest alone
    pth = tmp_path / WEIGHTS_FILE
    torch.save(_random_inception(seed=4).state_dict(), pth)

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load called on an unverified file")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(GanforgeError, match="not pytorch-fid's") as err:
        load_inception(pth)
    text = _one_line(err)
    assert f"expected {WEIGHTS_SHA256}" in text and hashlib.sha256(
        pth.read_bytes()).hexdigest()[:16] in text
    assert not converted_path().exists()
    monkeypatch.setenv(ENV_VAR, str(pth))
    with pytest.raises(GanforgeError, match=WEIGHTS_SHA256):
        get_feature_net("inception")


def test_inception_accepts_only_its_own_stamped_conversion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _random_inception(seed=5).state_dict().items()}
    foreign = tmp_path / "inception.safetensors"  # the right tensors, but no ganforge stamp
    save_file(state, str(foreign))
    with pytest.raises(GanforgeError, match=f"not ganforge's conversion.*{WEIGHTS_SHA256}") as e:
        load_inception(foreign)
    _one_line(e)
    save_file(state, str(foreign), metadata={"format": inception.CONVERTED_FORMAT,
                                             "source_sha256": "0" * 64})
    with pytest.raises(GanforgeError, match="not ganforge's conversion"):
        load_inception(foreign)

    # a conversion left in the cache from some other file is not used either
    pth = _save_pth(tmp_path, state, monkeypatch)
    load_inception(pth)
    assert converted_path().is_file()
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", "f" * 64)
    with pytest.raises(GanforgeError, match="not ganforge's conversion"):
        load_inception()


# torch-fidelity's Inception is a port independent of ganforge's (and of torchvision). Its
# package __init__ imports torchvision, which does not install beside this torch; the module
# itself needs only torch and three torch-fidelity helpers. CI installs it with --no-deps into
# its own folder, $GANFORGE_REFERENCE_PATH (0.4.0's wheel also ships a top-level `tests`
# package, kept out of site-packages so), and sets GANFORGE_REQUIRE_REFERENCES=1 so that this
# comparison cannot quietly skip there.
REFERENCE_VERSION = "0.4.0"


@pytest.fixture
def torch_fidelity_inception(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """torch_fidelity.feature_extractor_inceptionv3, imported without torch_fidelity/__init__."""
    # locate the package, running nothing: in $GANFORGE_REFERENCE_PATH, else on sys.path
    folder = os.environ.get("GANFORGE_REFERENCE_PATH")
    spec = (importlib.machinery.PathFinder.find_spec("torch_fidelity", [folder]) if folder
            else importlib.util.find_spec("torch_fidelity"))
    if spec is None or not spec.submodule_search_locations:
        why = (f"torch-fidelity not found (pip install --no-deps --target DIR torch-fidelity=="
               f"{REFERENCE_VERSION} and set GANFORGE_REFERENCE_PATH=DIR): it is the reference "
               "port to compare with")
        if os.environ.get("GANFORGE_REQUIRE_REFERENCES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    before = set(sys.modules)
    # a bare stand-in for the package: its submodules import from their own folder, and the
    # torchvision-importing __init__ never runs
    stub = types.ModuleType("torch_fidelity")
    stub.__path__ = list(spec.submodule_search_locations)
    monkeypatch.setitem(sys.modules, "torch_fidelity", stub)
    module = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    yield module
    for name in set(sys.modules) - before:
        if name.startswith("torch_fidelity."):
            del sys.modules[name]


def test_inception_matches_torch_fidelity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          torch_fidelity_inception: types.ModuleType) -> None:
    model = _random_inception(seed=3)
    pth = _save_pth(tmp_path, model.state_dict(), monkeypatch)
    theirs = torch_fidelity_inception.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased", "logits"],
        feature_extractor_weights_path=str(pth))
    gen = torch.Generator().manual_seed(0)
    # 299 x 299, so that no resizing happens (torch-fidelity resizes as TF 1.x does, pytorch-fid
    # and ganforge as torch does); then only the architectures are compared
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8, generator=gen)
    their_f, their_logits, their_biased = theirs(images)
    with torch.no_grad():
        ours = load_inception(pth).module
        # torch-fidelity scales by (x - 128) / 128 where the FID reference uses x / 255 * 2 - 1:
        # feed both the same network input
        f = ours.embed((images.float() - 128) / 128)
    assert f.abs().mean() > 1e-2  # a live network: the pools' quirks reach the features
    torch.testing.assert_close(f, their_f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.head(f), their_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.fc(f), their_biased, rtol=1e-4, atol=1e-4)


# --- LeNet classifiers ----------------------------------------------------------------------

def test_random_shift_moves_each_image_within_range() -> None:
    x = torch.rand(16, 1, 28, 28) + 0.1  # no zeros, so the zero fill is visible
    shifted = random_shift(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[i, :, dy:dy + 28, dx:dx + 28], shifted[i])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 3  # offsets are drawn per image, not once per batch
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_lenet_rejects_other_image_shapes() -> None:
    net = lenet_net(LeNet(), "lenet-test")
    assert net.features(torch.rand(2, 1, 28, 28)).shape == (2, 128)
    with pytest.raises(GanforgeError, match="28, 28"):
        net.features(torch.rand(2, 3, 28, 28))


def test_lenet_trains_on_the_sample_and_loads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    images_path, labels_path = shared_files("mnist", *MNIST_TEST)
    # no mirrors at all: the shared folder is read-only data and must not get temporary files
    monkeypatch.delenv("GANFORGE_MIRRORS", raising=False)
    info = train_classifier("mnist", data_dir=str(images_path.parent), epochs=2, quiet=True,
                            download=False)
    assert info["train_source"].startswith("mnist-sample") and info["n_train"] == 5000
    assert info["epochs"] == 2 and info["n_test"] == 10_000
    assert info["test_accuracy"] > 0.90, info  # chance is 10%; two epochs give ~96%
    assert Path(info["path"]) == classifier_path("mnist") and classifier_path("mnist").is_file()

    net = load_classifier("mnist")
    assert (net.dim, net.num_classes, net.name) == (128, 10, "lenet-mnist")
    assert net.info["test_accuracy"] == info["test_accuracy"]
    x, y = read_idx_pair(images_path, labels_path)
    images = torch.from_numpy(x).unsqueeze(1)
    assert net.features(images[:64]).shape == (64, 128)
    # the stored weights are the trained ones: the reloaded net scores exactly the same
    assert accuracy(net, images, torch.from_numpy(y).long()) == info["test_accuracy"]
    assert get_feature_net("lenet-mnist").info == net.info


def test_missing_classifier_tells_how_to_train_one() -> None:
    with pytest.raises(GanforgeError) as err:
        load_classifier("mnist")
    assert "ganforge classifier train --dataset mnist" in _one_line(err)
    with pytest.raises(GanforgeError) as err:
        get_feature_net("lenet-fashion")
    assert "--dataset fashion-mnist" in _one_line(err)
    with pytest.raises(GanforgeError, match="valid: mnist, fashion-mnist"):
        load_classifier("cifar10")


def test_classifier_without_data_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # MNIST always has the embedded sample (tests/test_classes.py trains on it with a held-out
    # part); Fashion-MNIST without files has nothing to train or test on
    monkeypatch.delenv("GANFORGE_MIRRORS", raising=False)
    with pytest.raises(DataError, match=r"\(train\)"):
        train_classifier("fashion-mnist", data_dir=str(tmp_path), quiet=True, download=False)
    assert not classifier_path("fashion-mnist").exists()


def test_hold_out_is_a_fixed_disjoint_fifth() -> None:
    data = mnist_sample()
    train, test = hold_out(data)
    assert (train.images.shape[0], test.images.shape[0]) == (4000, 1000)
    assert (train.info["split"], test.info["split"]) == ("train", "held-out")
    # disjoint and together all of it: every image index appears exactly once
    tags = torch.arange(5000)
    tagged = type(data)(name="t", shape=data.shape, images=data.images, labels=tags)
    a, b = hold_out(tagged)
    assert sorted(torch.cat([a.labels, b.labels]).tolist()) == list(range(5000))
    assert torch.equal(hold_out(tagged)[1].labels, b.labels)  # the same split every time
    assert not torch.equal(hold_out(tagged, seed=1)[1].labels, b.labels)
    # labels travel with their images
    i = int(b.labels[0])
    assert torch.equal(b.images[0], data.images[i]) and int(test.labels[0]) == int(data.labels[i])
