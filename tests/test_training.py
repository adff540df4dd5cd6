"""Training recipe: leakage, repeatability, early stopping, checkpoints, permuted-label control."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from clnm_kedro.networks import (
    build_network,
    fit_validation_indices,
    load_checkpoint,
    model_from_state,
    plot_training_curves,
    predict_probabilities,
    resolve_config,
    save_checkpoint,
    train_network,
)
from clnm_kedro.networks import training as training_module
from clnm_kedro.networks.data import batches_per_epoch, epoch_batches
from clnm_kedro.networks.prefetch import prefetched
from clnm_kedro.networks.random_streams import initialised_network
from float_compare import assert_same_numbers

SIZE = 32


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads; one avoids spin-waiting on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**training: object) -> dict:
    return {
        "network": {"compact_channels": [8, 16, 32], "hidden_dim": 16},
        "training": {
            "epochs": 3,
            "batch_size": 8,
            "min_epochs": 1,
            "progress_bar": False,
            **training,
        },
    }


def _cohort(
    n_train: int = 40,
    n_external: int = 8,
    n_folds: int = 4,
    seed: int = 0,
    contrast: float = 70.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Noisy crops with a disc (the nodule) that is brighter in CLNM-positive patients."""
    rng = np.random.default_rng(seed)
    n = n_train + n_external
    clnm = np.zeros(n, dtype=int)
    clnm[rng.permutation(n)[: int(0.35 * n)]] = 1
    yy, xx = np.mgrid[:SIZE, :SIZE]
    crops = np.empty((n, 2, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        for view in range(2):
            cy, cx = rng.uniform(0.35, 0.65, 2) * SIZE
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (rng.uniform(0.15, 0.25) * SIZE) ** 2
            image = rng.normal(110, 30, (SIZE, SIZE)) + disc * (20 + contrast * clnm[i])
            crops[i, view] = np.clip(image, 0, 254).astype(np.uint8)
    split = np.array(["train"] * n_train + ["external"] * n_external)
    fold = np.where(split == "train", np.arange(n) % n_folds, -1)
    splits = pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "center": np.where(split == "train", "A", "B"),
            "clnm": clnm,
            "split": split,
            "fold": fold,
        }
    )
    return crops, splits


def test_one_optimisation_step_lowers_the_loss_on_a_fixed_batch() -> None:
    crops, splits = _cohort(n_train=16, n_external=0)
    torch.manual_seed(0)
    model = build_network({"network": {"compact_channels": [8, 16, 32], "dropout": 0.0}})
    x = torch.from_numpy(crops).float() / 255
    y = torch.tensor(splits["clnm"].to_numpy(), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    assert after < before


def test_validation_is_one_training_fold_and_never_external() -> None:
    _, splits = _cohort()
    splits.loc[splits["split"] == "external", "fold"] = 1  # a wrong fold must not matter
    fit, validation = fit_validation_indices(splits, validation_fold=1)
    external = set(np.flatnonzero(splits["split"].eq("external")))
    assert external.isdisjoint(fit) and external.isdisjoint(validation)
    training_rows = splits.index[splits["split"].eq("train")]
    assert set(validation) == set(training_rows[splits.loc[training_rows, "fold"].eq(1)])
    assert set(fit) | set(validation) == set(training_rows)
    with pytest.raises(ValueError, match="folds present"):
        fit_validation_indices(splits, validation_fold=7)
    one_class = splits.copy()
    one_class.loc[one_class["fold"].eq(2), "clnm"] = 0
    with pytest.raises(ValueError, match="validation fold 2 hold"):
        fit_validation_indices(one_class, validation_fold=2)


def test_no_external_patient_reaches_the_network(monkeypatch) -> None:
    crops, splits = _cohort()
    external = splits["split"].eq("external").to_numpy()
    crops[external] = 255  # only external crops are all-white (training crops stop at 254)
    splits.loc[external, "fold"] = 0  # same fold number as the validation fold
    splits["clnm"] = splits["clnm"].astype(float)
    splits.loc[external, "clnm"] = np.nan  # external labels are not needed for training
    seen: dict[str, list[tuple[int, int]]] = {"train": [], "eval": []}
    real_build = training_module.build_network

    def spying_build(config: dict) -> torch.nn.Module:
        model = real_build(config)

        def record(module: torch.nn.Module, args: tuple[torch.Tensor]) -> None:
            white = (args[0] == 1.0).flatten(2).all(-1).any(-1)
            seen["train" if module.training else "eval"].append(
                (args[0].shape[0], int(white.sum()))
            )

        model.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(training_module, "build_network", spying_build)
    epochs = 2
    result = train_network(crops, splits, {**_config(epochs=epochs), "augment": False}, seed=0)
    n_fit, n_validation = 30, 10
    assert sum(size for size, _ in seen["train"]) == epochs * n_fit
    assert sum(size for size, _ in seen["eval"]) == epochs * n_validation
    assert sum(white for _, white in seen["train"] + seen["eval"]) == 0
    external_ids = set(splits.loc[external, "patient_id"])
    assert external_ids.isdisjoint(result.fit_patient_ids + result.validation_patient_ids)
    assert len(result.validation_patient_ids) == n_validation


def _assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_two_cpu_runs_with_one_seed_give_identical_weights() -> None:
    crops, splits = _cohort()
    config = _config(epochs=2)  # augmentation on (default), dropout on
    first = train_network(crops, splits, config, seed=5, device="cpu")
    second = train_network(crops, splits, config, seed=5, device="cpu")
    _assert_same_state(first.state_dict, second.state_dict)
    pd.testing.assert_frame_equal(
        first.history.drop(columns="seconds"), second.history.drop(columns="seconds")
    )
    other = train_network(crops, splits, config, seed=6, device="cpu")
    assert any(not torch.equal(first.state_dict[k], other.state_dict[k]) for k in first.state_dict)
    assert not torch.are_deterministic_algorithms_enabled()  # global setting restored


def test_the_thread_count_of_the_process_changes_no_weight_and_no_prediction() -> None:
    """On the CPU a network trains and predicts with one thread and PyTorch's own kernels
    whatever the process's thread count (``thread_independent_numerics``): the same weights,
    bit for bit, with 1 and 3 threads (without it, oneDNN's and PyTorch's convolution
    gradients split their sums by thread and the weights differ in the last bits)."""
    crops, splits = _cohort()
    config = _config(epochs=2)
    results = {}
    for threads in (1, 3):
        torch.set_num_threads(threads)
        result = train_network(crops, splits, config, seed=5, device="cpu")
        probabilities = predict_probabilities(result.network(), crops)
        assert torch.get_num_threads() == threads  # the process's own count is restored
        assert torch.backends.mkldnn.enabled  # and so are oneDNN and NNPACK
        assert torch._C._get_nnpack_enabled()
        results[threads] = result, probabilities
    (one, p_one), (three, p_three) = results[1], results[3]
    _assert_same_state(one.state_dict, three.state_dict)
    np.testing.assert_array_equal(p_one, p_three)


def test_loader_worker_processes_feed_the_same_batches() -> None:
    crops, splits = _cohort()
    direct = train_network(crops, splits, _config(epochs=1), seed=5, device="cpu")
    workers = train_network(
        crops, splits, _config(epochs=1, loader_workers=1), seed=5, device="cpu"
    )
    _assert_same_state(direct.state_dict, workers.state_dict)


def test_the_next_batch_made_on_another_core_gives_the_plain_loop_weights(monkeypatch) -> None:
    """On the CPU the next batch is gathered and augmented in a background thread while this
    one trains: the same batches, augmented from the same generator in the same order, so the
    same weights as the plain loop (a reordered draw would give other augmentations)."""
    crops, splits = _cohort()
    config = _config(epochs=2)
    made: list[int] = []
    real = training_module.prefetched

    def counted(items: Iterator) -> Iterator:
        for item in real(items):
            made.append(1)
            yield item

    monkeypatch.setattr(training_module, "prefetched", counted)
    ahead = train_network(crops, splits, config, seed=5, device="cpu")
    assert made  # the background thread made the batches
    monkeypatch.setattr(training_module, "prefetched", lambda items: items)
    plain = train_network(crops, splits, config, seed=5, device="cpu")
    for key, value in plain.state_dict.items():
        assert_same_numbers(ahead.state_dict[key], value, err_msg=key)


def test_prefetched_keeps_the_order_raises_where_the_error_is_and_stops_when_closed() -> None:
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("bad crop 2")

    seen = []
    with pytest.raises(RuntimeError, match="bad crop 2"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [1]

    produced = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    stream = prefetched(endless(), depth=2)
    assert next(stream) == 0
    stream.close()  # the consumer stops (an error in the training step): the thread ends
    assert not [t for t in threading.enumerate() if t.name == "clnm-batch-prefetch"]
    assert len(produced) <= 4
    with pytest.raises(ValueError, match="at least 1"):
        next(prefetched(iter([1]), depth=0))


def test_history_callback_and_schedule() -> None:
    crops, splits = _cohort()
    calls: list[tuple[int, dict]] = []
    result = train_network(
        crops,
        splits,
        _config(epochs=5, warmup_epochs=2),
        seed=1,
        on_epoch_end=lambda epoch, metrics: calls.append((epoch, metrics)),
    )
    history = result.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds"]
    assert [epoch for epoch, _ in calls] == history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert calls[0][1].keys() == {"train_loss", "val_loss", "val_auc", "lr", "seconds"}
    assert result.best_val_auc == history["val_auc"].max()
    assert history.loc[history["epoch"] == result.best_epoch, "val_auc"].item() == (
        result.best_val_auc
    )
    lr = history["lr"].to_numpy()
    assert lr[0] < lr[1] and lr[-1] < lr[1]  # warm-up, then cosine decay
    assert result.config == resolve_config(_config(epochs=5, warmup_epochs=2))
    figure = plot_training_curves(history, result.best_epoch)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2
    marked = [line for line in figure.axes[1].lines if line.get_label().startswith("kept")]
    assert marked and marked[0].get_xdata()[0] == result.best_epoch
    figure.savefig(io.BytesIO(), format="png")


def test_early_stopping_keeps_the_best_epoch(monkeypatch) -> None:
    crops, splits = _cohort()
    aucs = iter([0.6, 0.7, 0.65, 0.65, 0.9, 0.9])
    monkeypatch.setattr(training_module, "roc_auc_score", lambda *args: next(aucs))
    result = train_network(crops, splits, _config(epochs=6, early_stopping_patience=2), seed=0)
    assert len(result.history) == 4  # epochs 3 and 4 brought nothing better: stop
    assert (result.best_epoch, result.best_val_auc) == (2, 0.7)


def test_no_checkpoint_is_kept_and_no_stop_before_min_epochs(monkeypatch) -> None:
    crops, splits = _cohort()
    aucs = iter([0.95, 0.6, 0.62, 0.61, 0.6, 0.6])
    monkeypatch.setattr(training_module, "roc_auc_score", lambda *args: next(aucs))
    config = _config(epochs=6, early_stopping_patience=1, min_epochs=2)
    result = train_network(crops, splits, config, seed=0)
    assert (result.best_epoch, result.best_val_auc) == (3, 0.62)  # epoch 1 is not eligible
    assert len(result.history) == 4


def test_equal_validation_auc_keeps_the_lower_validation_loss(monkeypatch) -> None:
    crops, splits = _cohort()
    monkeypatch.setattr(training_module, "roc_auc_score", lambda *args: 0.7)
    result = train_network(crops, splits, _config(epochs=4), seed=0)
    history = result.history
    assert result.best_epoch == history.loc[history["val_loss"].idxmin(), "epoch"]


def test_checkpoint_round_trip_gives_the_same_weights_and_outputs(tmp_path) -> None:
    crops, splits = _cohort()
    result = train_network(
        crops, splits, _config(epochs=1, imbalance="balanced_sampler", schedule="one_cycle"), seed=2
    )
    path = tmp_path / "models" / "dl_dual.pt"
    save_checkpoint(result, path)
    model, config = load_checkpoint(path)
    assert config == result.config
    _assert_same_state(model.state_dict(), result.state_dict)  # the weights: bit for bit
    # Their outputs: a reloaded network is another code path (docs of float_compare).
    assert_same_numbers(
        predict_probabilities(model, crops), predict_probabilities(result.network(), crops)
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a clnm_kedro network checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_bad_inputs_are_rejected_with_clear_messages() -> None:
    crops, splits = _cohort()
    with pytest.raises(ValueError, match="uint8"):
        train_network(crops.astype(np.float32), splits, _config(), seed=0)
    with pytest.raises(ValueError, match="47 rows but roi_crops holds 48"):
        train_network(crops, splits.iloc[:-1], _config(), seed=0)
    with pytest.raises(ValueError, match="Unknown network parameter section"):
        train_network(crops, splits, {"optimiser": {}}, seed=0)
    with pytest.raises(ValueError, match=r"training\.schedule"):
        train_network(crops, splits, _config(schedule="step"), seed=0)
    with pytest.raises(ValueError, match=r"training\.view_loss_weight"):
        train_network(crops, splits, _config(view_loss_weight=-0.5), seed=0)
    unlabelled = splits.copy()
    unlabelled["clnm"] = unlabelled["clnm"].astype(float)
    unlabelled.loc[3, "clnm"] = np.nan
    with pytest.raises(ValueError, match="P003"):
        train_network(crops, unlabelled, _config(), seed=0)
    duplicated = splits.copy()
    duplicated.loc[5, "patient_id"] = "P004"
    with pytest.raises(ValueError, match="P004"):
        train_network(crops, duplicated, _config(), seed=0)


def test_epoch_batches_cover_rows_once_or_balance_classes() -> None:
    rows = np.arange(10, 43)  # 33 rows: a last batch of one joins the batch before
    labels = np.zeros(50)
    labels[40:] = 1
    batches = epoch_batches(rows, labels, 8, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [8, 8, 8, 9]
    assert len(batches) == batches_per_epoch(33, 8)
    assert sorted(torch.cat(batches).tolist()) == rows.tolist()
    generator = torch.Generator().manual_seed(0)
    drawn = torch.cat(
        [torch.cat(epoch_batches(np.arange(50), labels, 8, generator, True)) for _ in range(40)]
    )
    assert 0.4 < labels[drawn.numpy()].mean() < 0.6  # 20% positives drawn about half the time


@pytest.mark.slow
def test_permuted_labels_leave_validation_auc_near_chance() -> None:
    crops, splits = _cohort(n_train=200, n_external=0, seed=3)
    config = _config(epochs=6, batch_size=16, early_stopping_patience=100)
    real = train_network(crops, splits, config, seed=0)
    assert real.best_val_auc > 0.85  # the signal is learnable
    chance = []
    for permutation_seed in range(4):  # one permutation's AUC on 50 patients is noisy
        permuted = splits.copy()
        labels = permuted["clnm"].to_numpy()
        permuted["clnm"] = np.random.default_rng(permutation_seed).permutation(labels)
        chance.append(train_network(crops, permuted, config, seed=0).history["val_auc"].mean())
    assert abs(np.mean(chance) - 0.5) < 0.12, chance


def _view_head_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("view_heads.")}


def test_each_view_of_the_dual_network_is_supervised_on_its_own() -> None:
    """With ``view_loss_weight`` > 0 each view's classifier learns; with 0 it stays untouched."""
    crops, splits = _cohort()
    network = initialised_network(  # the initial weights of seed 0
        lambda: build_network(resolve_config(_config())), 0, torch.device("cpu")
    )
    initial = _view_head_weights(network.state_dict())
    supervised = _view_head_weights(
        train_network(crops, splits, _config(view_loss_weight=0.5), seed=0).state_dict
    )
    fused_only = train_network(crops, splits, _config(view_loss_weight=0.0), seed=0)
    assert sorted(initial) == sorted(supervised)
    assert len(initial) == 4  # one linear layer (weight, bias) per view
    for name, value in _view_head_weights(fused_only.state_dict).items():
        assert torch.equal(value, initial[name])  # no gradient reached them
        assert not torch.equal(supervised[name], initial[name])
    # the view classifiers never change what the network predicts
    network = fused_only.network()
    x = torch.rand(5, 2, SIZE, SIZE) * 255
    fused, per_view = network(x, with_view_logits=True)
    assert per_view.shape == (5, 2)
    assert torch.equal(fused, network(x))


def test_single_view_network_has_no_view_classifier() -> None:
    crops, splits = _cohort()
    config = _config(view_loss_weight=0.5)
    config["network"]["kind"] = "longitudinal"
    result = train_network(crops, splits, config, seed=0)
    assert not _view_head_weights(result.state_dict)
    logit, per_view = result.network()(torch.rand(3, 1, SIZE, SIZE), with_view_logits=True)
    assert logit.shape == (3,) and per_view.shape == (3, 0)


def test_a_dual_checkpoint_without_view_classifiers_still_loads() -> None:
    """Weights saved before the per-view classifiers existed predict as before."""
    crops, splits = _cohort()
    result = train_network(crops, splits, _config(epochs=1), seed=0)
    older = {k: v for k, v in result.state_dict.items() if not k.startswith("view_heads.")}
    x = torch.rand(4, 2, SIZE, SIZE) * 255
    assert torch.equal(model_from_state(older, result.config)(x), result.network()(x))
    broken = {k: v for k, v in older.items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match="do not fit the network"):
        model_from_state(broken, result.config)
