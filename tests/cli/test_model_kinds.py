"""Every model kind on the user's own data (issue 15, item 1): `pyrovae train --model KIND` on a CSV or
.npy file, the kind recorded so `load_run` rebuilds it, and every senseless combination refused with
one line that says why."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pyrovae.api import build_data, load_run, train
from pyrovae.config import load_config
from pyrovae.data.files import load_columns, load_file, load_labelled
from pyrovae.errors import ConfigError, DataError
from pyrovae.models.m2 import M2
from tests.cli.cli_helpers import assert_one_error_line, invoke


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A noisy circle as plain columns (.npy and .csv), and as an M2 file with a label column."""
    root = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 120)
    points = np.c_[np.cos(angle), np.sin(angle)] + 0.05 * rng.standard_normal((120, 2))
    np.save(root / "circle.npy", points)
    pd.DataFrame(points, columns=["a", "b"]).to_csv(root / "circle.csv", index=False)
    labels = np.where(rng.random(120) < 0.25, np.where(angle < np.pi, 3.0, 7.0), np.nan)  # 25 % labelled
    pd.DataFrame({"a": points[:, 0], "b": points[:, 1], "label": labels}).to_csv(root / "labelled.csv", index=False)
    np.save(root / "one.npy", points[:, :1])
    return root, points, labels


def test_column_files_model_every_column(files):
    root, points, _ = files
    for name in ("circle.npy", "circle.csv"):
        data = load_columns(root / name)
        assert data.condition_dim == 0 and torch.allclose(data.observed, torch.as_tensor(points, dtype=torch.float32))
    cvae = load_file(root / "circle.npy", "cvae")  # a σ-CVAE file: the last column is the response
    assert cvae.condition_dim == 1 and cvae.observed_dim == 1


def test_label_column_classes_and_unlabelled_points(files):
    root, points, labels = files
    data = load_labelled(root / "labelled.csv")
    observed = ~np.isnan(labels)
    assert data.labelled.numpy().tolist() == observed.tolist()
    assert data.params["classes"] == [3.0, 7.0]  # the two values, in sorted order, become classes 0 and 1
    assert data.labels[data.labelled].reshape(-1).tolist() == [0.0 if v == 3 else 1.0 for v in labels[observed]]
    assert torch.allclose(data.observed, torch.as_tensor(points, dtype=torch.float32))


@pytest.mark.parametrize("content, words", [
    ("a,b\n1,2\n3,4\n5,6\n", ["label"]),
    ("a,label\n1,\n2,\n3,\n", ["at least two label values"]),
    ("a,label\n1,0\n2,1\n3,1\n", ["both labelled and unlabelled"]),
    ("a,label\n1,0\n,1\n3,\n", ["column 'a'"]),
])
def test_bad_label_files(tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=words[0]):
        load_labelled(path)


@pytest.mark.parametrize("kind, extra, cls", [
    ("vae", ["--noise", "network", "--algorithm", "joint"], "SigmaCVAE"),
    ("cholesky", ["--sigma0", "0.3"], "SigmaCVAE"),
    ("linear", ["--sigma0", "1.2"], "SigmaCVAE"),
    ("m2", ["--sigma0", "0.1", "--epochs", "2", "--encoder-widths", "8,8"], "M2"),
])
def test_each_kind_trains_on_a_user_file_and_reloads(files, tmp_path, kind, extra, cls):
    root, _, _ = files
    source = {"m2": "labelled.csv", "linear": "one.npy"}.get(kind, "circle.csv")
    out = tmp_path / kind
    length = [] if kind == "m2" else ["--max-steps", "20", "-K", "5"]  # M2 counts --epochs (in extra)
    result = invoke("train", "--model", kind, "--data-file", root / source, *length, "--quiet", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model"] == kind
    model, data, cfg = load_run(out)
    assert type(model).__name__ == cls and cfg.model == kind
    if kind == "cholesky":  # the latent dimension is the data's width, σ_ε the flag's
        assert model.latent_dim == 2 and model.decoder.sigma_eps == pytest.approx(0.3)
    if kind == "linear":
        assert model.latent_dim == 1 and model.decoder.sigma_eps == pytest.approx(1.2)
    if kind == "m2":
        assert isinstance(model, M2) and model.num_classes == 2 and float(model.sigma) == pytest.approx(0.1)


def test_m2_repetitions_train_as_one_batch_and_each_is_its_run_alone(files, tmp_path):
    """`train --model m2 --reps 2`: the seeds train as one batch (train_m2_batch); rep i's weights are those of
    `train` with its seed, and the summary reports every run."""
    from pyrovae.api import derive_seeds

    root, _, _ = files
    out = tmp_path / "reps"
    args = ["--model", "m2", "--data-file", root / "labelled.csv", "--epochs", "2", "--encoder-widths", "8,8",
            "--decoder-widths", "8,8", "--sigma0", "0.1", "--seed", "5", "--quiet"]
    result = invoke("train", *args, "--reps", "2", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vectorized"] and [r["status"] for r in summary["runs"]] == ["finished", "finished"]
    assert summary["summary"]["neg_elbo"]["n"] == 2
    for i, seed in enumerate(derive_seeds(5, 2)):
        alone = invoke("train", *args[:-3], "--seed", str(seed), "--quiet", "--out", tmp_path / f"alone-{i}")
        assert alone.exit_code == 0, alone.output
        batched, _, _ = load_run(out / f"rep-{i:02d}")
        single, _, _ = load_run(tmp_path / f"alone-{i}")
        for key, value in single.state_dict().items():
            torch.testing.assert_close(batched.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    longer = [a if a != "2" else "3" for a in args]  # --epochs 3: the batch trains on from its checkpoint
    again = invoke("train", *longer, "--reps", "2", "--out", out)
    assert again.exit_code == 0, again.output
    assert [len(pd.read_csv(out / f"rep-{i:02d}" / "history.csv")) for i in range(2)] == [3, 3]
    assert all(r["resumed"] for r in json.loads((out / "summary.json").read_text())["runs"])
    fresh = invoke("train", *longer, "--reps", "2", "--out", tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output
    for i in range(2):
        on, straight = load_run(out / f"rep-{i:02d}")[0], load_run(tmp_path / "fresh" / f"rep-{i:02d}")[0]
        assert all(torch.equal(v, straight.state_dict()[k]) for k, v in on.state_dict().items())
    other = invoke("train", *longer, "--lr", "0.01", "--reps", "2", "--out", out)
    assert other.exit_code != 0 and "different settings" in other.output
    fewer = invoke("train", *args, "--reps", "2", "--out", out)
    assert fewer.exit_code != 0 and "holds an M2 run of 3 epochs, more than the 2 asked for" in fewer.output
    again = invoke("train", *args, "--lr", "0.01", "--reps", "2", "--out", out, "--restart")
    assert again.exit_code == 0, again.output
    assert [len(pd.read_csv(out / f"rep-{i:02d}" / "history.csv")) for i in range(2)] == [2, 2]


def test_an_unconditional_model_of_a_conditional_data_set_models_every_column():
    data = build_data(load_config(model="vae", n=50))
    assert data.condition_dim == 0 and data.observed_dim == 3  # two-moon's x and both y columns
    assert "sigma" not in data.truth  # τ was the noise of y alone


def test_a_run_written_before_model_kinds_is_a_cvae(tmp_path):
    out = tmp_path / "old"
    train(load_config(n=30, max_steps=5, K=5), out=out, plots=False)
    config = json.loads((out / "config.json").read_text())
    for key in ("model", "noise", "gamma", "alpha", "epochs"):
        del config[key]
    (out / "config.json").write_text(json.dumps(config))
    model, _, cfg = load_run(out)
    assert cfg.model == "cvae" and type(model).__name__ == "SigmaCVAE"
    train(load_config(n=30, max_steps=10, K=5), out=out, plots=False)  # and it resumes: same settings


@pytest.mark.parametrize("args, words", [
    (["--model", "m2"], ["needs labels", "two-moon"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "--algorithm", "calibrated"], ["M2", "calibrated"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "--noise", "learned"], ["σ fixed", "--noise learned"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "--elbo", "meanfield"], ["--elbo trace"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "--max-steps", "500"], ["--epochs", "--max-steps does not"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "-K", "10"], ["--epochs", "-K does not apply"]),
    (["--model", "m2", "--dataset", "discrete-semicircle", "--tol", "0"], ["--tol does not apply"]),
    (["--model", "linear", "--latent-dim", "2"], ["one latent dimension"]),
    (["--model", "linear", "--dataset", "yacoby-circle"], ["one output", "--model cholesky"]),
    (["--model", "cholesky", "--latent-dim", "2"], ["as many latent dimensions as data columns (3)"]),
    (["--model", "cholesky", "--noise", "learned"], ["tied to its decoder"]),
    (["--model", "cholesky", "--algorithm", "joint"], ["tied to its decoder", "joint"]),
    (["--model", "vae", "--noise", "fixed", "--algorithm", "joint"], ["learns σ by gradient"]),
    (["--noise", "learned", "--algorithm", "calibrated"], ["needs --noise calibrated"]),
    (["--noise", "learned", "--algorithm", "fixed"], ["needs --noise fixed"]),
    (["--gamma", "2"], ["gamma", "no labels"]),
    (["--algorithm", "joint", "-C", "0.5"], ["'joint' does not calibrate", "-C does not apply"]),
    (["--algorithm", "calibrated", "-C", "1.96"], ["robust calibration has no tolerance C", "--calibration paper"]),
    (["--epochs", "5"], ["--max-steps"]),
    (["--model", "gan"], ["unknown model 'gan'"]),
    (["--noise", "loud"], ["unknown observation model 'loud'"]),
])
def test_senseless_combinations_are_one_line(tmp_path, args, words):
    length = ["--epochs", "1"] if "m2" in args else ["--max-steps", "2"]  # M2 counts epochs
    assert_one_error_line(invoke("train", *args, "--n", "20", *length, "--quiet", "--out", tmp_path / "r"), *words)


def test_the_same_refusals_in_python():
    with pytest.raises(ConfigError, match="tied to its decoder"):
        load_config(model="cholesky", algorithm="calibrated")
    with pytest.raises(ConfigError, match="needs labels"):
        build_data(load_config(model="m2", n=20))


def test_an_interrupted_m2_run_resumes_from_its_training_checkpoint(tmp_path, interrupt_at_block):
    """M2 trains on the engine, so `train` keeps its checkpoint in `training/`: a run stopped in its third epoch
    resumes there and ends with the uninterrupted run's weights; asked for fewer epochs than it holds, the
    directory refuses in one line."""
    import pyrovae.inference.m2_training as m2t

    cfg = load_config(model="m2", dataset="discrete-semicircle", n=200, epochs=4, checkpoint_every=1,
                      encoder_widths=(8,), decoder_widths=(8,), seed=3)
    straight = train(cfg, out=tmp_path / "straight", plots=False).model
    disarm = interrupt_at_block(m2t.M2Trainer, "_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "killed", plots=False)
    assert (tmp_path / "killed" / "training").is_dir()
    disarm()
    resumed = train(cfg, out=tmp_path / "killed", plots=False)
    assert len(resumed.history) == 4 and resumed.metrics["resumed"]
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="holds an M2 run of 4 epochs, more than the 3 asked for"):
        train(cfg.replace(epochs=3), out=tmp_path / "killed", plots=False)
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["epochs"] == 4  # left as it was


def test_an_m2_batch_trains_on_after_its_runs_changed_and_a_diverged_run_keeps_no_weights(files, tmp_path, monkeypatch):
    """`train --model m2 --reps`: a batch checkpoint of another set of runs (here: rep-02 added later and trained
    alone) is not resumed but replaced, so asking the three runs for more epochs works; a continuation in which
    rep-00 diverges leaves rep-00 without weights, so its shorter run is not read back as the longer one; and
    `--restart` clears a run's own engine checkpoint (`training/`) too."""
    import pyrovae.inference.m2_training as m2t
    from pyrovae.runs import has_checkpoint

    root, _, _ = files
    out = tmp_path / "reps"
    base = ["--model", "m2", "--data-file", root / "labelled.csv", "--encoder-widths", "8,8", "--decoder-widths", "8,8",
            "--sigma0", "0.1", "--seed", "5", "--quiet", "--out", out]
    for reps, epochs in (("2", "2"), ("3", "2"), ("3", "3")):
        result = invoke("train", *base, "--epochs", epochs, "--reps", reps)
        assert result.exit_code == 0, result.output
    assert [len(pd.read_csv(out / f"rep-{i:02d}" / "history.csv")) for i in range(3)] == [3, 3, 3]
    real = m2t.m2_replicate_loss

    def first_diverges(*args, **kwargs):
        losses = real(*args, **kwargs)
        return torch.cat([losses[:1] * float("nan"), losses[1:]])

    monkeypatch.setattr(m2t, "m2_replicate_loss", first_diverges)
    invoke("train", *base, "--epochs", "4", "--reps", "3")
    monkeypatch.setattr(m2t, "m2_replicate_loss", real)
    assert json.loads((out / "rep-00" / "metrics.json").read_text())["status"] == "nan"
    assert not has_checkpoint(out / "rep-00") and has_checkpoint(out / "rep-01")
    from pyrovae.api import train_batch

    cfg = load_config(model="m2", dataset="discrete-semicircle", n=200, epochs=2, encoder_widths=(8,),
                      decoder_widths=(8,), seed=3)
    train(cfg, out=tmp_path / "alone", plots=False)
    assert has_checkpoint(tmp_path / "alone" / "training")
    train_batch([cfg, cfg.replace(seed=4)], [tmp_path / "alone", tmp_path / "other"], plots=False, restart=True)
    assert not has_checkpoint(tmp_path / "alone" / "training")
