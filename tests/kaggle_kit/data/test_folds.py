import numpy as np
import pandas as pd

from competitions.ell import TARGETS
from kaggle_kit.data.folds import kfold, multilabel_stratified, stratified_group
from kaggle_kit.data.load import load_train
from kaggle_kit.registry import get_competition


def test_multilabel_folds_are_seeded_and_stratified(ell_dir):
    df = load_train(get_competition("ell"), ell_dir)
    a = multilabel_stratified(df, list(TARGETS), 4, seed=42)
    b = multilabel_stratified(df, list(TARGETS), 4, seed=42)
    c = multilabel_stratified(df, list(TARGETS), 4, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(a) == {0, 1, 2, 3}
    sizes = np.bincount(a)
    assert sizes.max() - sizes.min() <= 0.02 * len(df)
    # every (target, level) appears in each fold at close to its overall rate
    for target in TARGETS:
        overall = df[target].value_counts(normalize=True)
        for fold in range(4):
            share = df.loc[a == fold, target].value_counts(normalize=True).reindex(overall.index, fill_value=0)
            assert np.abs(share - overall).max() < 0.02, (target, fold)


def test_multilabel_beats_random_kfold_on_balance(ell_dir):
    df = load_train(get_competition("ell"), ell_dir)

    def imbalance(folds):
        return max(abs(df.loc[folds == f, t].mean() - df[t].mean()) for f in range(4) for t in TARGETS)

    stratified = imbalance(multilabel_stratified(df, list(TARGETS), 4, seed=0))
    random_ = np.mean([imbalance(kfold(df, list(TARGETS), 4, seed=s)) for s in range(3)])
    assert stratified < random_


def test_stratified_group_never_splits_a_group():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"anchor": rng.integers(0, 40, 400).astype(str),
                       "score": rng.choice([0, 0.25, 0.5, 0.75, 1.0], 400)})
    folds = stratified_group("anchor")(df, ["score"], 5, seed=1)
    assert (folds >= 0).all()
    assert df.assign(fold=folds).groupby("anchor")["fold"].nunique().max() == 1
    assert np.array_equal(folds, stratified_group("anchor")(df, ["score"], 5, seed=1))
