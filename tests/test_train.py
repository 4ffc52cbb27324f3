"""Models, the training loop, checkpoints and the train / demo commands."""
import json

import numpy as np
import pytest

import tinyapprox as ta
from tinyapprox import data, models, nn, optim, train
from tinyapprox.experiments import cli
from tinyapprox import functional as F

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def small():
    (x, y), (tx, ty) = data.load("fashion-mnist", limit=512)
    return x, y, tx[:256], ty[:256]


def _run(small, epochs=2, seed=0, checkpoint=None, resume=False, model_name="lenet-300-100", stop_after=None):
    x, y, tx, ty = small
    model = models.get(model_name, seed=seed)
    loader = data.DataLoader(x, y, batch_size=64, shuffle=True, seed=seed)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    hist = train.fit(model, loader, F.cross_entropy, opt, stop_after or epochs, val=(tx, ty), scheduler=sched,
                     verbose=False, checkpoint=checkpoint, resume=resume)
    return model, hist


def test_model_sizes_match_the_papers():
    assert models.lenet_300_100().num_parameters() == 266_610
    assert models.lenet5().num_parameters() == 431_080
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        models.get("vgg")


def test_models_map_images_to_ten_logits():
    x = ta.tensor(np.zeros((2, 1, 28, 28), np.float32))
    for name in ("lenet-300-100", "lenet5", "small-convnet"):
        assert models.get(name)(x).shape == (2, 10)


def test_same_seed_same_weights_after_training(small):
    a, ha = _run(small, epochs=1)
    b, hb = _run(small, epochs=1)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
    assert ha["loss"] == hb["loss"]
    c, _ = _run(small, epochs=1, seed=1)
    assert not np.array_equal(a.parameters()[1].data, c.parameters()[1].data)


def test_training_and_validation_top1_share_the_tie_rule(small):
    x, y, _, _ = small
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, seed=0))
    model[1].weight.data[...] = 0
    model[1].bias.data[...] = 0                       # every logit equal: every sample a tie
    hist = train.fit(model, data.DataLoader(x, y, batch_size=64), F.cross_entropy,
                     optim.SGD(model.parameters(), lr=0.0), 1, val=(x, y), verbose=False)
    assert hist["top1"] == hist["val_top1"] == [0.0]


def test_training_reduces_the_loss(small):
    _, hist = _run(small, epochs=3)
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist.last("val_top1") > 0.5
    assert set(hist.epochs[0]) >= {"loss", "top1", "val_top1", "val_top5", "seconds", "lr"}
    assert hist["lr"] == [0.05, 0.025, 0.0125]


def test_checkpoint_resume_reproduces_uninterrupted_run(small, tmp_path):
    ref, ref_hist = _run(small, epochs=3)
    ckpt = tmp_path / "ckpt.npz"
    _run(small, epochs=3, checkpoint=ckpt, stop_after=1)
    resumed, hist = _run(small, epochs=3, checkpoint=ckpt, resume=True)
    for (name, pa), (_, pb) in zip(ref.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
    assert [e["loss"] for e in hist.epochs] == ref_hist["loss"]
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_with_batchnorm_and_dropout_generators(small, tmp_path):
    def build():
        rng = np.random.default_rng(3)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32, seed=rng), nn.BatchNorm1d(32), nn.ReLU(),
                             nn.Dropout(0.3, seed=4), nn.Linear(32, 10, seed=rng))

    x, y, tx, ty = small

    def run(epochs, ckpt=None, resume=False):
        model = build()
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loader = data.DataLoader(x, y, batch_size=64, shuffle=True, seed=5)
        train.fit(model, loader, F.cross_entropy, opt, epochs, verbose=False, checkpoint=ckpt, resume=resume)
        return model

    ref = run(2)
    ckpt = tmp_path / "c.npz"
    run(1, ckpt)
    resumed = run(2, ckpt, resume=True)
    for (k, va), (_, vb) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)


def test_non_finite_loss_names_the_step(small):
    x, y, _, _ = small
    model = models.lenet_300_100()
    opt = optim.SGD(model.parameters(), lr=1e30)
    loader = data.DataLoader(x, y, batch_size=64, shuffle=False, seed=0)
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1, step \d+"):
        train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False)


def test_evaluate_and_predict_agree(small):
    _, _, tx, ty = small
    model = models.lenet_300_100(seed=2)
    logits = train.predict(model, tx)
    result = train.evaluate(model, tx, ty)
    assert logits.shape == (len(tx), 10)
    assert result["top1"] == pytest.approx(np.mean(logits.argmax(1) == ty))
    assert result["top1"] <= result["top5"] <= 1 and result["n"] == len(tx)


def test_save_and_load_model_round_trip(tmp_path):
    a, b = models.lenet5(seed=0), models.lenet5(seed=1)
    train.save_model(a, tmp_path / "m.npz")
    train.load_model(b, tmp_path / "m.npz")
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    with pytest.raises(ValueError, match="expected shape"):
        train.load_model(models.get("small-convnet"), tmp_path / "m.npz", strict=False)


def test_state_dict_strict_keys():
    m = models.lenet_300_100()
    state = m.state_dict()
    state.pop("1.bias")
    with pytest.raises(KeyError, match=r"missing keys \['1.bias'\]"):
        m.load_state_dict(state)


def test_train_command_quick(tmp_path, capsys):
    assert cli.main(["train", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test top-1" in out
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["epochs"]) == 1
    assert (tmp_path / "training_curve.png").stat().st_size > 1000
    model = train.load_model(models.lenet_300_100(), tmp_path / "model.npz")
    assert model.num_parameters() == 266_610


def test_demo_command(capsys):
    assert cli.main(["demo"]) == 0
    assert "dy/da" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a zip file", b"PK\x03\x04 truncated", b""])
def test_corrupt_model_or_checkpoint_file_is_refused_clearly(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"load_model: .*bad.npz is not a readable .npz"):
        train.load_model(models.lenet_300_100(), path)
    model = models.lenet_300_100()
    with pytest.raises(ValueError, match=r"load_checkpoint: .*bad.npz is not a readable .npz"):
        train.load_checkpoint(path, model, optim.SGD(model.parameters(), lr=0.1))


def test_checkpoint_without_meta_is_refused(tmp_path):
    model = models.lenet_300_100()
    train.save_model(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="has no 'meta' entry"):
        train.load_checkpoint(tmp_path / "m.npz", model, optim.SGD(model.parameters(), lr=0.1))


def test_a_mask_of_the_wrong_shape_is_refused_when_loading():
    from tinyapprox import prune

    model = models.lenet_300_100()
    prune.magnitude(model, amount=0.5)
    state = model.state_dict()
    key = "1.weight.transform0.PruneMask.mask"
    state[key] = np.ones((3, 3), dtype=state[key].dtype)
    with pytest.raises(ValueError, match=r"load_state_dict: the transforms of 1.weight do not fit its shape \(300, 784\)"):
        models.lenet_300_100().load_state_dict(state)
