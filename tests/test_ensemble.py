"""Ensembles: weights, masked voting, metadata, and a 2-model run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clstm_ppo.agent.network import CLSTMActorCritic
from clstm_ppo.agent.policy import EnsemblePolicy
from clstm_ppo.cli import main
from clstm_ppo.config import AgentConfig
from clstm_ppo.errors import CheckpointError
from clstm_ppo.train.ensemble import ensemble_weights, load_ensemble
from tiny import tiny_flags

AGENT = AgentConfig(lstm_hidden=8, feature_dim=8, policy_hidden=16)


def test_weights_sum_to_one_and_follow_validation_ranks() -> None:
    scores = [0.31, 0.52, 0.40, float("nan")]
    weights = ensemble_weights(scores, temperature=0.05)
    assert sum(weights) == pytest.approx(1.0)
    order = np.argsort(weights)
    assert list(order) == [3, 0, 2, 1]  # NaN counts as the worst
    assert ensemble_weights([0.2, 0.9], 1e6) == pytest.approx([0.5, 0.5], abs=1e-6)
    assert ensemble_weights([0.2, 0.25], 1e-3)[1] == pytest.approx(1.0)
    ratio = ensemble_weights([0.30, 0.35], 0.05)
    assert ratio[1] / ratio[0] == pytest.approx(np.e)


def test_voting_respects_masks_and_weights() -> None:
    torch.manual_seed(0)
    members = [CLSTMActorCritic(3, 5, AGENT, n_actions=7) for _ in range(3)]
    policy = EnsemblePolicy(members, [0.2, 0.5, 0.3])
    gen = torch.Generator().manual_seed(1)
    batch = 64
    state = policy.initial_state(batch, torch.device("cpu"))
    for step in range(5):
        market = torch.randn(batch, 4, 3, generator=gen)
        portfolio = torch.randn(batch, 5, generator=gen)
        mask = torch.rand(batch, 7, generator=gen) > 0.6
        mask[torch.arange(batch), torch.randint(0, 7, (batch,), generator=gen)] = True
        starts = torch.full((batch,), 1.0 if step == 0 else 0.0)
        previous = state
        action, state, confidence = policy.act(market, portfolio, mask, state, starts)
        assert mask[torch.arange(batch), action].all()  # never a masked action
        assert ((confidence > 0) & (confidence <= 1 + 1e-6)).all()
        # The vote by hand: weighted sum of each member's masked probabilities.
        votes = torch.zeros(batch, 7)
        for member, weight, member_state in zip(members, policy.weights, previous, strict=True):
            with torch.no_grad():
                dist, _, _ = member.evaluate(
                    market[None], portfolio[None], mask[None], member_state, starts[None]
                )
            votes += weight * dist.probs
        torch.testing.assert_close(confidence, votes.max(-1).values)
        assert torch.equal(action, votes.argmax(-1))


def test_bad_ensemble_file_is_one_line_error(tmp_path) -> None:
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": []}))
    with pytest.raises(CheckpointError, match="not a clstm-ppo ensemble"):
        load_ensemble(tmp_path)
    with pytest.raises(CheckpointError, match="not a readable ensemble"):
        load_ensemble(tmp_path / "missing.json")


def test_two_model_ensemble_trains_and_evaluates_end_to_end(tmp_path, capsys) -> None:
    flags = tiny_flags(tmp_path)
    code = main(["train", "--train-ensemble", "--num-ensemble-models", "2",
                 "--episodes-per-ensemble-model", "8", *flags])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "ensemble validation" in out and "member 1" in out
    folder = tmp_path / "clstm_ppo_ensemble"
    metadata = json.loads((folder / "ensemble.json").read_text())
    assert [m["seed"] for m in metadata["members"]] == [0, 1]
    assert sum(metadata["weights"]) == pytest.approx(1.0)
    assert metadata["config_hash"] and metadata["provenance"]["data"]["source"] == "bundled"
    for member in metadata["members"]:
        assert {"composite", "win_rate", "profit_rate"} <= set(member["validation"])
    policy, loaded = load_ensemble(folder)  # round trip
    assert loaded["weights"] == metadata["weights"]
    assert policy.weights == pytest.approx(metadata["weights"])
    assert "composite" in metadata["validation"]


def test_bad_ensemble_flags_are_one_line_errors(tmp_path, capsys) -> None:
    base = ["train", "--train-ensemble", "--run-dir", str(tmp_path)]
    assert main([*base, "--num-ensemble-models", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--num-ensemble-models" in err and "\n" not in err
    assert main([*base, "--num-procs", "2"]) == 2
    assert "--train-ensemble" in capsys.readouterr().err
