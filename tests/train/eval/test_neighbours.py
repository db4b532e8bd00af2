"""The non-learned predictor of hidden tokens from visible ones, on targets with known structure."""
import numpy as np
import torch

from train.eval.motion_probe import Moments, ridge_fit
from train.eval.neighbours import NeighbourRidge, neighbour_features


def test_features_are_the_visible_neighbours():
    grid = (2, 3, 3)
    target = torch.arange(18, dtype=torch.float32).reshape(1, 18, 1)          # token k holds k
    mask = torch.zeros(1, 18, dtype=torch.bool)
    mask[0, [4, 1, 13]] = True                                                # hide the centre of slice 0, ...
    f = neighbour_features(target, mask, grid)[0]                             # (18, 3C + 3) with C = 1
    # token 4 (slice 0, centre): visible 4-neighbours 3, 5, 7 (1 hidden); previous slice none; next 13 hidden
    assert f[4].tolist() == [(3 + 5 + 7) / 3, 0.0, 0.0, 1.0, 0.0, 0.0]
    # token 10 (slice 1, row 0, col 1): neighbours 9, 11, 13 hidden -> 9, 11; previous slice: token 1, hidden
    assert f[10].tolist() == [(9 + 11) / 2, 0.0, 0.0, 1.0, 0.0, 0.0]
    # token 12 (slice 1, row 1, col 0): previous slice's token 3 visible
    assert f[12][1].item() == 3.0 and f[12][4].item() == 1.0


def test_the_ridge_recovers_a_target_its_neighbours_determine():
    # a target that is the same on every token of a slice (random per clip and slice): a hidden token
    # is its visible neighbours' mean, exactly; the ridge from the features finds that map
    rng = np.random.default_rng(0)
    grid, C = (2, 4, 4), 3
    level = torch.from_numpy(rng.normal(size=(64, 2, 1, 1, C))).float()
    target = level.expand(64, 2, 4, 4, C).reshape(64, 32, C).contiguous()
    mask = torch.from_numpy(rng.random((64, 32)) < 0.5)
    x = neighbour_features(target, mask, grid)
    m = Moments.zeros(x.shape[-1], C)
    keep = mask & (x[..., 3 * C] > 0)        # hidden tokens with a visible neighbour
    m.add(x[keep].double().numpy(), target[keep].double().numpy())
    w, b = ridge_fit(m, 1e-6)
    predict = NeighbourRidge(torch.from_numpy(w).float(), torch.from_numpy(b).float(), grid, {})
    test = torch.zeros(1, 32, dtype=torch.bool)
    test[0, [5, 22]] = True                  # one hidden token per slice, every neighbour visible
    pred = predict(target[:1], test)
    assert pred.shape == (1, 2, C) and torch.allclose(pred, target[:1][test].reshape(1, 2, C), atol=1e-3)
